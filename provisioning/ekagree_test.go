package provisioning_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ekcert"
)

// TestStationAndCAAgreeOnEKCertEncodings: the station's early EK check (CheckEKMatchesCert) and the CA's
// reading of the certificate (ekcert.Parse, what ca.Verifier runs) accept and refuse the same encodings.
// The rows marked "disagreed" are the certificates on which they differed before both went through
// ekcert's one normaliser: the station skipped a 5-byte header whatever its size said and ignored what
// followed the DER; the CA knew only the 7-byte header. Both now take either header when its size is the
// certificate's, and padding of one filler byte, and nothing else.
func TestStationAndCAAgreeOnEKCertEncodings(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "EK"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<33, 0),
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{{2, 23, 133, 8, 1}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pt, _ := key.PublicKey.Bytes()
	ek := tpm2.ECCEKTemplate
	ek.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: pt[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: pt[33:]}})

	size := len(der) + 2
	nvHeader := append([]byte{0x10, 0x01, 0x00, byte(size >> 8), byte(size), 0x10, 0x02}, der...)
	octet, _ := asn1.Marshal(der)
	short := func(n int) []byte { return []byte{0x10, 0x01, 0x00, byte(n >> 8), byte(n)} }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name      string
		raw       []byte
		accept    bool
		disagreed bool
	}{
		{"bare DER", der, true, false},
		{"TCG NV header", nvHeader, true, false},
		{"TCG NV header and 0xFF padding", cat(nvHeader, bytes.Repeat([]byte{0xFF}, 300)), true, false},
		{"0x00 padding", cat(der, make([]byte, 64)), true, false},
		{"OCTET STRING wrapper", octet, true, false},
		{"short NV header (no TCG_FULL_CERT tag) and 0xFF padding", cat(short(len(der)), der, bytes.Repeat([]byte{0xFF}, 100)), true, true},
		{"short NV header with a wrong size", cat(short(len(der)-10), der), false, true},
		{"text after the DER", cat(der, []byte("serial=SN1")), false, true},
		{"mixed 0xFF and 0x00 filler", cat(der, []byte{0xFF, 0xFF, 0x00, 0xFF}), false, true},
		{"a second certificate after the first", cat(der, der), false, true},
		{"truncated", der[:len(der)-1], false, false},
	} {
		stationErr := provisioning.CheckEKMatchesCert(tc.raw, &ek)
		_, caErr := ekcert.Parse(tc.raw)
		if (stationErr == nil) != tc.accept || (caErr == nil) != tc.accept {
			t.Errorf("%s (disagreed before: %v): station %v, CA %v; want both to accept=%v", tc.name, tc.disagreed, stationErr, caErr, tc.accept)
		}
	}
}
