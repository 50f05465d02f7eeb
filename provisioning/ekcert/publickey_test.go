package ekcert

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

// TestPublicKey has one case per refusal of PublicKey, and reads keys through every tolerated encoding.
func TestPublicKey(t *testing.T) {
	mk := func(pub, priv any) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "EK"},
			NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der := mk(&ek.PublicKey, ek)
	k, applied, err := PublicKey(cat(nvHeader(len(der)+2), der, []byte{0xFF, 0xFF}))
	if err != nil || !ek.PublicKey.Equal(k) || len(applied) != 2 {
		t.Fatalf("NV-stored certificate: %v, %v", applied, err)
	}
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"refused by Normalise", cat(der, []byte("x"))},
		{"TBSCertificate is not a SEQUENCE", []byte{0x30, 0x03, 0x02, 0x01, 0x05}},
		{"TBSCertificate truncated before the key", []byte{0x30, 0x07, 0x30, 0x05, 0x02, 0x01, 0x05, 0x02, 0x00}},
		{"an Ed25519 key", mk(edPub, edPriv)},
	} {
		if _, _, err := PublicKey(tc.raw); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
		}
	}
}
