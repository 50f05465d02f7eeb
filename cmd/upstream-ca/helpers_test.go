package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ca"
	"github.com/tpmline/tpmline/provisioning/ekcert"
)

// The simulator plays the board the serve test enrolls; its EK certificates come from a test TPM vendor.
var (
	simTPM transport.TPMCloser
	vendor *fixtures.Manufacturer
)

func TestMain(m *testing.M) {
	var err error
	if vendor, err = fixtures.NewManufacturer("Test TPM Vendor"); err != nil {
		fmt.Fprintln(os.Stderr, "making the test TPM vendor:", err)
		os.Exit(1)
	}
	if simTPM, err = fixtures.Open("sim", fixtures.WithManufacturer(vendor)); err != nil {
		fmt.Fprintln(os.Stderr, "opening the simulator:", err)
		os.Exit(1)
	}
	code := m.Run()
	simTPM.Close()
	os.Exit(code)
}

// board is the simulator acting as one board with an RSA-2048 EK and P-256 keys.
type board struct {
	tpm             transport.TPM
	ek, iak, idevid *provisioning.Key
	ekCert          []byte
	req             *provisioning.EnrollRequest
}

func newBoard(t testing.TB, serial string) *board {
	t.Helper()
	b := &board{tpm: simTPM}
	t.Cleanup(func() { provisioning.FlushTransients(simTPM) })
	if err := provisioning.FlushTransients(b.tpm); err != nil {
		t.Fatal(err)
	}
	certs, err := provisioning.ReadEKCertificates(b.tpm)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range certs {
		if c.Index == 0x01C00002 { // RSA-2048 EK certificate, TCG EK Credential Profile 2.2.1.4
			b.ekCert = c.Data
		}
	}
	if b.ekCert == nil {
		t.Fatal("the simulator has no RSA-2048 EK certificate")
	}
	if b.ek, err = provisioning.CreateEK(b.tpm, provisioning.EKRSA2048); err != nil {
		t.Fatal(err)
	}
	if b.iak, err = provisioning.CreateIAK(b.tpm, provisioning.KeyP256); err != nil {
		t.Fatal(err)
	}
	if b.idevid, err = provisioning.CreateIDevID(b.tpm, provisioning.KeyP256); err != nil {
		t.Fatal(err)
	}
	info, err := provisioning.ReadTPMInfo(b.tpm)
	if err != nil {
		t.Fatal(err)
	}
	b.req = &provisioning.EnrollRequest{
		Version: provisioning.ProtocolVersion, Serial: serial, Product: "widget-1",
		EKCert: b.ekCert, EKPublic: b.ek.PublicBytes, IAKPublic: b.iak.PublicBytes, IDevIDPublic: b.idevid.PublicBytes,
		TPM: info,
	}
	return b
}

func (b *board) request() *provisioning.EnrollRequest {
	r := *b.req
	return &r
}

// answer runs ActivateCredential and Certify as an honest device does.
func (b *board) answer(t testing.TB, ch *provisioning.Challenge) *provisioning.ActivateRequest {
	t.Helper()
	secret, err := provisioning.ActivateCredential(b.tpm, b.ek, b.iak, ch.CredentialBlob, ch.EncryptedSecret)
	if err != nil {
		t.Fatal(err)
	}
	attest, sig, err := provisioning.Certify(b.tpm, b.iak, b.idevid, ch.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	return &provisioning.ActivateRequest{Version: provisioning.ProtocolVersion, SessionID: ch.SessionID, Secret: secret, CertifyInfo: attest, CertifySignature: sig}
}

// mustEKHash is the EK identity the CA computes, from the key in the board's EK certificate (the CA has
// checked it equals the TPM's EK).
func mustEKHash(t testing.TB, b *board) []byte {
	t.Helper()
	c, err := ekcert.Parse(b.ekCert)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ca.EKPublicSHA256(c.X509.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func hexs(b []byte) string { return hex.EncodeToString(b) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// syncBuffer is the serve process's log, written by its goroutines while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
