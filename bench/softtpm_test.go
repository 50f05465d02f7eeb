package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest/testpki"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ca"
	"github.com/tpmline/tpmline/provisioning/ekcert"
)

func testVerifier(t *testing.T, vendor *fixtures.Manufacturer) *ca.Verifier {
	t.Helper()
	pki := testpki.New(t)
	root, iss := pki.Root, pki.Issuing
	st, err := ca.OpenStore(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "ca.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &ca.Verifier{Store: st, Issuer: &ca.Issuer{CA: iss.Cert, Key: iss.Key, Root: root.Cert, Organization: "bench"},
		EKVerifier: &ekcert.Verifier{Roots: []*x509.Certificate{vendor.Root()}, Intermediates: []*x509.Certificate{vendor.Intermediate()}}}
}

// The real CA verifier, every check on, accepts a soft board's evidence and issues both certificates.
func TestSoftBoardEnrollsWithRealVerifier(t *testing.T) {
	vendor, err := fixtures.NewManufacturer("Bench TPM Vendor")
	if err != nil {
		t.Fatal(err)
	}
	v := testVerifier(t, vendor)
	ctx := context.Background()
	for i, serial := range []string{"SOFT0001", "SOFT0002"} {
		b, err := NewSoftBoard(vendor, serial, nil)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := v.Enroll(ctx, "bench", b.EnrollRequest("bench"))
		if err != nil {
			t.Fatalf("board %d: enroll: %v", i, err)
		}
		ans, err := b.Answer(ch)
		if err != nil {
			t.Fatal(err)
		}
		certs, err := v.Activate(ctx, "bench", ans)
		if err != nil {
			t.Fatalf("board %d: activate: %v", i, err)
		}
		if len(certs.IAKCert) == 0 || len(certs.IDevIDCert) == 0 {
			t.Fatalf("board %d: certificates missing", i)
		}
	}
}

// What a TPM refuses, the model refuses: a credential made over another key's Name, or tampered with.
func TestSoftBoardActivationFailsLikeATPM(t *testing.T) {
	vendor, err := fixtures.NewManufacturer("Bench TPM Vendor")
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSoftBoard(vendor, "SOFT0003", nil)
	if err != nil {
		t.Fatal(err)
	}
	ekPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](b.EKPublic)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tpm2.ImportEncapsulationKey(ekPub)
	if err != nil {
		t.Fatal(err)
	}
	secret := bytes.Repeat([]byte{7}, 32)
	blob, enc, err := tpm2.CreateCredential(rand.Reader, key, b.iakName, secret)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.ActivateCredential(blob, enc)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("activate = %x, %v; want %x", got, err, secret)
	}
	other, err := provisioning.PublicName(b.IDevIDPublic)
	if err != nil {
		t.Fatal(err)
	}
	blob2, enc2, err := tpm2.CreateCredential(rand.Reader, key, other.Buffer, secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ActivateCredential(blob2, enc2); !errors.Is(err, errIntegrity) {
		t.Fatalf("credential over another Name: %v, want an integrity failure", err)
	}
	blob[len(blob)-1] ^= 1
	if _, err := b.ActivateCredential(blob, enc); !errors.Is(err, errIntegrity) {
		t.Fatalf("tampered credential: %v, want an integrity failure", err)
	}
}

// The attestation parses as a TPM's does (magic, type, nonce, Name) with provisioning's own parser.
func TestSoftBoardCertifyParses(t *testing.T) {
	vendor, err := fixtures.NewManufacturer("Bench TPM Vendor")
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSoftBoard(vendor, "SOFT0004", nil)
	if err != nil {
		t.Fatal(err)
	}
	nonce := bytes.Repeat([]byte{9}, 32)
	attest, _, err := b.Certify(nonce, nil)
	if err != nil {
		t.Fatal(err)
	}
	info, err := provisioning.ParseCertifyInfo(attest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(info.Attest.ExtraData.Buffer, nonce) || !bytes.Equal(info.Certify.Name.Buffer, b.idevidName) {
		t.Fatal("attestation does not carry the nonce and the IDevID's Name")
	}
}
