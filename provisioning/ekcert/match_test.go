package ekcert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func rsaPublic(n []byte, bits int, exp uint32) *tpm2.TPMTPublic {
	return &tpm2.TPMTPublic{
		Type:       tpm2.TPMAlgRSA,
		NameAlg:    tpm2.TPMAlgSHA256,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{KeyBits: tpm2.TPMKeyBits(bits), Exponent: exp}),
		Unique:     tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: n}),
	}
}

func eccPublic(curve tpm2.TPMECCCurve, x, y []byte) *tpm2.TPMTPublic {
	return &tpm2.TPMTPublic{
		Type:       tpm2.TPMAlgECC,
		NameAlg:    tpm2.TPMAlgSHA256,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{CurveID: curve}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: x},
			Y: tpm2.TPM2BECCParameter{Buffer: y},
		}),
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

func certOf(t *testing.T, ek string) *x509.Certificate {
	t.Helper()
	c, err := Parse(readEK(t, ek))
	if err != nil {
		t.Fatal(err)
	}
	return c.X509
}

// The swtpm board's EK public areas, read from the TPM, against the certificates read from its NV.
func TestMatchPublicSwtpm(t *testing.T) {
	pubs := map[string]*tpm2.TPMTPublic{}
	certs := map[string]*x509.Certificate{}
	for _, name := range []string{"ek-rsa2048", "ek-secp384r1"} {
		b, err := tpm2.Unmarshal[tpm2.TPM2BPublic](readFile(t, filepath.Join("testdata/swtpm", name+".tpm2bpublic")))
		if err != nil {
			t.Fatal(err)
		}
		pub, err := b.Contents()
		if err != nil {
			t.Fatal(err)
		}
		c, err := Parse(readFile(t, filepath.Join("testdata/swtpm", name+".nv")))
		if err != nil {
			t.Fatal(err)
		}
		pubs[name], certs[name] = pub, c.X509
	}
	for name, pub := range pubs {
		if err := MatchPublic(certs[name], pub); err != nil {
			t.Errorf("%s: the TPM's own EK: %v", name, err)
		}
	}
	if err := MatchPublic(certs["ek-rsa2048"], pubs["ek-secp384r1"]); !errors.Is(err, ErrMismatch) {
		t.Errorf("RSA cert, ECC public: %v", err)
	}
	if err := MatchPublic(certs["ek-secp384r1"], pubs["ek-rsa2048"]); !errors.Is(err, ErrMismatch) {
		t.Errorf("ECC cert, RSA public: %v", err)
	}
	if err := MatchPublic(certOf(t, "infineon-rsa-1.der"), pubs["ek-rsa2048"]); !errors.Is(err, ErrMismatch) {
		t.Errorf("another TPM's RSA cert: %v", err)
	}
	if err := MatchPublic(certOf(t, "st-ecc-1.der"), pubs["ek-secp384r1"]); !errors.Is(err, ErrMismatch) {
		t.Errorf("a P-256 cert against a P-384 EK: %v", err)
	}
}

func TestMatchPublicRSA(t *testing.T) {
	for _, ek := range []string{"infineon-rsa-1.der", "st-rsa-1.der", "nuvoton-rsa-1.der", "google-rsa-1.pem"} {
		t.Run(ek, func(t *testing.T) {
			cert := certOf(t, ek)
			key := cert.PublicKey.(*rsa.PublicKey)
			n := key.N.FillBytes(make([]byte, key.Size()))
			if key.E != 65537 {
				t.Fatalf("exponent %d: the cases below assume 65537", key.E)
			}
			for _, tc := range []struct {
				name string
				pub  *tpm2.TPMTPublic
				ok   bool
			}{
				{"exponent 0 means 65537", rsaPublic(n, 2048, 0), true},
				{"explicit 65537", rsaPublic(n, 2048, 65537), true},
				{"first modulus byte flipped", rsaPublic(flip(n, 0), 2048, 0), false},
				{"last modulus byte flipped", rsaPublic(flip(n, len(n)-1), 2048, 0), false},
				{"exponent 3", rsaPublic(n, 2048, 3), false},
				{"key bits 3072", rsaPublic(n, 3072, 0), false},
				{"modulus one byte short", rsaPublic(n[1:], 2048, 0), false},
				{"modulus with a leading zero", rsaPublic(append([]byte{0}, n...), 2048, 0), false},
				{"type ECC", eccPublic(tpm2.TPMECCNistP256, n[:32], n[32:64]), false},
				{"type RSA, ECC parameters", &tpm2.TPMTPublic{
					Type:       tpm2.TPMAlgRSA,
					Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{CurveID: tpm2.TPMECCNistP256}),
					Unique:     tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: n}),
				}, false},
				{"empty public area", &tpm2.TPMTPublic{}, false},
			} {
				err := MatchPublic(cert, tc.pub)
				if tc.ok && err != nil {
					t.Errorf("%s: %v", tc.name, err)
				}
				if !tc.ok && !errors.Is(err, ErrMismatch) {
					t.Errorf("%s: %v, want ErrMismatch", tc.name, err)
				}
			}
		})
	}
}

func TestMatchPublicECC(t *testing.T) {
	for _, ek := range []string{"infineon-ecc-1.der", "st-ecc-1.der", "intel-ecc-1.der", "google-ecc-1.pem"} {
		t.Run(ek, func(t *testing.T) {
			cert := certOf(t, ek)
			raw, err := cert.PublicKey.(*ecdsa.PublicKey).Bytes()
			if err != nil {
				t.Fatal(err)
			}
			x, y := raw[1:33], raw[33:]
			for _, tc := range []struct {
				name string
				pub  *tpm2.TPMTPublic
				ok   bool
			}{
				{"same point", eccPublic(tpm2.TPMECCNistP256, x, y), true},
				{"X flipped", eccPublic(tpm2.TPMECCNistP256, flip(x, 31), y), false},
				{"Y flipped", eccPublic(tpm2.TPMECCNistP256, x, flip(y, 0)), false},
				{"X and Y swapped", eccPublic(tpm2.TPMECCNistP256, y, x), false},
				{"P-384", eccPublic(tpm2.TPMECCNistP384, x, y), false},
				{"BN-256", eccPublic(tpm2.TPMECCBNP256, x, y), false},
				{"X too long", eccPublic(tpm2.TPMECCNistP256, append([]byte{0}, x...), y), false},
				{"X missing", eccPublic(tpm2.TPMECCNistP256, nil, y), false},
				{"type RSA", rsaPublic(raw[1:], 512, 0), false},
			} {
				err := MatchPublic(cert, tc.pub)
				if tc.ok && err != nil {
					t.Errorf("%s: %v", tc.name, err)
				}
				if !tc.ok && !errors.Is(err, ErrMismatch) {
					t.Errorf("%s: %v, want ErrMismatch", tc.name, err)
				}
			}
		})
	}
}

// A TPM may drop a leading zero byte of a coordinate; the point is the same. No real ECC EK here has
// one, so make a key that has.
func TestMatchPublicShortCoordinate(t *testing.T) {
	for range 1 << 16 {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := key.PublicKey.Bytes()
		x, y := raw[1:33], raw[33:]
		if x[0] != 0 || y[0] == 0 { // Y must be full length for the negative case below
			continue
		}
		cert := &x509.Certificate{PublicKey: &key.PublicKey}
		if err := MatchPublic(cert, eccPublic(tpm2.TPMECCNistP256, x[1:], y)); err != nil {
			t.Errorf("X without its leading zero: %v", err)
		}
		if err := MatchPublic(cert, eccPublic(tpm2.TPMECCNistP256, x[1:], y[1:])); !errors.Is(err, ErrMismatch) {
			t.Errorf("Y shifted: %v", err)
		}
		return
	}
	t.Fatal("no key with a leading zero in X in 65536 tries")
}

func TestMatchPublicNil(t *testing.T) {
	if err := MatchPublic(nil, &tpm2.TPMTPublic{}); !errors.Is(err, ErrMismatch) {
		t.Errorf("nil cert: %v", err)
	}
	if err := MatchPublic(certOf(t, "st-ecc-1.der"), nil); !errors.Is(err, ErrMismatch) {
		t.Errorf("nil public: %v", err)
	}
}
