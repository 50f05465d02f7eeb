package tpmwire

import (
	"crypto"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// FuzzPublicKey: no input panics PublicKey, and whatever it accepts that go-tpm also decodes to a key is
// the key go-tpm sees (differential against tpm2.Unmarshal + tpm2.Pub, recovered from go-tpm's panics).
func FuzzPublicKey(f *testing.F) {
	rk, ek := testKeys(f)
	pt, _ := ek.PublicKey.Bytes()
	f.Add(rsaPublic(2048, 0, rk.N.Bytes()))
	f.Add(eccPublic(eccP256, pt[1:33], pt[33:]))
	f.Add(tpm2.Marshal(tpm2.RSAEKTemplate))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := PublicKey(b)
		if err != nil {
			return
		}
		want, ok := goTPMKey(b)
		if !ok {
			return // PublicKey reads schemes by shape only; go-tpm refuses some it does not know
		}
		if k, ok := got.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(want) {
			t.Fatalf("PublicKey read %T %v, go-tpm %T %v", got, got, want, want)
		}
	})
}

func goTPMKey(b []byte) (k crypto.PublicKey, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		return nil, false
	}
	k, err = tpm2.Pub(*p)
	return k, err == nil
}
