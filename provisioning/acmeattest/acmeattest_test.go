package acmeattest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ca"
)

// TestPermanentIdentifier reads back what the CA's issuer writes into an IAK certificate.
func TestPermanentIdentifier(t *testing.T) {
	now := clock.Now()
	root, err := ca.NewCertificate(ca.CertSpec{Subject: pkix.Name{CommonName: "root"}, NotAfter: now.Add(time.Hour), IsCA: true}, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	is := &ca.Issuer{CA: root.Cert, Key: root.Key, Root: root.Cert}
	info := provisioning.TPMInfo{Manufacturer: "IBM", ManufacturerID: 0x49424D00, VendorString: "SW TPM", Firmware: "1.2.3.4"}
	for _, hmn := range []bool{false, true} {
		is.IAKHardwareModuleName = hmn
		der, err := is.IssueIAK(&key.PublicKey, ca.Board{Serial: "SN-42", TPM: info})
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		if got, err := PermanentIdentifier(c); err != nil || got != "SN-42" {
			t.Fatalf("PermanentIdentifier = %q, %v", got, err)
		}
	}
	if _, err := PermanentIdentifier(root.Cert); err == nil {
		t.Fatal("a certificate without a SAN named a board")
	}
}

// TestAttestationObjectEncoding checks the CBOR shape relying parties decode into generic maps (step-ca:
// map[string]any): text keys, alg a negative integer, x5c an array of byte strings.
func TestAttestationObjectEncoding(t *testing.T) {
	b, err := cbor.Marshal(attestationObject{Fmt: "tpm", AttStmt: Statement{Ver: "2.0", Alg: coseRS256, X5C: [][]byte{{1}, {2}}, Sig: []byte{3}, CertInfo: []byte{4}, PubArea: []byte{5}}})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := cbor.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	st, ok := m["attStmt"].(map[any]any)
	if m["fmt"] != "tpm" || !ok {
		t.Fatalf("attObj %#v", m)
	}
	if st["ver"] != "2.0" || st["alg"] != int64(-257) {
		t.Fatalf("attStmt ver/alg %#v %#v", st["ver"], st["alg"])
	}
	x5c, ok := st["x5c"].([]any)
	if !ok || len(x5c) != 2 {
		t.Fatalf("x5c %#v", st["x5c"])
	}
	for _, k := range []string{"sig", "certInfo", "pubArea"} {
		if _, ok := st[k].([]byte); !ok {
			t.Fatalf("%s is %T", k, st[k])
		}
	}
}

func TestCOSEAlgorithm(t *testing.T) {
	for _, tc := range []struct {
		alg  provisioning.KeyAlg
		want int64
	}{{provisioning.KeyRSA2048, coseRS256}, {provisioning.KeyP256, coseES256}, {provisioning.KeyP384, coseES384}} {
		tmpl, err := provisioning.IAKTemplate(tc.alg)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := coseAlgorithm(&tmpl); err != nil || got != tc.want {
			t.Fatalf("%s: %d %v", tc.alg, got, err)
		}
	}
	idevid, _ := provisioning.IDevIDTemplate(provisioning.KeyRSA2048) // NULL scheme: no COSE algorithm
	if _, err := coseAlgorithm(&idevid); err == nil {
		t.Fatal("a NULL-scheme key got a COSE algorithm")
	}
}
