package signed

import (
	"crypto"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// FuzzParseTPMTPublic: an EK public area stored from a board never panics the report writer, and whatever
// the reports' reader accepts that go-tpm also decodes is the same key go-tpm sees.
func FuzzParseTPMTPublic(f *testing.F) {
	f.Add(marshalEKPublic(f, ecKey(f).Public()))
	f.Add(marshalEKPublic(f, testRSAKey(f).Public()))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseTPMTPublic(b)
		if err != nil {
			return
		}
		p, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
		if err != nil {
			return // the reports' reader is the more lenient one about schemes it does not use
		}
		want, err := tpm2.Pub(*p)
		if err != nil {
			return
		}
		if k, ok := got.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(want) {
			t.Fatalf("reports read %T %v, go-tpm %T %v", got, got, want, want)
		}
	})
}
