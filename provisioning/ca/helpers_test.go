package ca

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	_ "github.com/lib/pq"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest/testdb"
	"github.com/tpmline/tpmline/fixtures/fixturestest/testpki"
	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ekcert"
)

// One simulator per process (go-tpm-tools): every test that touches it holds tpmMu for its whole run.
var (
	tpmMu  sync.Mutex
	simTPM transport.TPMCloser
	vendor *fixtures.Manufacturer
)

func TestMain(m *testing.M) {
	pki, err := testpki.Shared()
	if err != nil {
		fmt.Fprintln(os.Stderr, "making the test PKI:", err)
		os.Exit(1)
	}
	vendor = pki.Vendor
	if simTPM, err = fixtures.Open("sim", fixtures.WithManufacturer(vendor)); err != nil {
		fmt.Fprintln(os.Stderr, "opening the simulator:", err)
		os.Exit(1)
	}
	code := m.Run()
	simTPM.Close()
	os.Exit(code)
}

// testPKI is the shared test PKI's identity CA (root, issuing) and station access CA, as this package's
// key pairs.
func testPKI(t testing.TB) (root, issuing, access *KeyPair) {
	t.Helper()
	p := testpki.New(t)
	kp := func(k *testpki.KeyPair) *KeyPair { return &KeyPair{Cert: k.Cert, Key: k.Key} }
	return kp(p.Root), kp(p.Issuing), kp(p.Access)
}

// env is one CA: a fresh store, the test PKI, a controllable clock.
type env struct {
	v     *Verifier
	store *Store
	url   string
	now   time.Time
	root  *KeyPair
}

func sqliteURL(t testing.TB) string {
	return testdb.SQLiteURL(t, "ca.db")
}

func newEnv(t testing.TB, dbURL string) *env {
	t.Helper()
	if dbURL == "" {
		dbURL = sqliteURL(t)
	}
	root, iss, _ := testPKI(t)
	st, err := OpenStore(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{store: st, url: dbURL, now: clock.Now().UTC(), root: root}
	e.v = &Verifier{
		Store:      st,
		Issuer:     &Issuer{CA: iss.Cert, Key: iss.Key, Root: root.Cert, Organization: "tpmline test", Now: func() time.Time { return e.now }},
		EKVerifier: &ekcert.Verifier{Roots: []*x509.Certificate{vendor.Root()}, Intermediates: []*x509.Certificate{vendor.Intermediate()}},
		Now:        func() time.Time { return e.now },
	}
	return e
}

// reopen closes the store and opens it again: what a CA restart does.
func (e *env) reopen(t testing.TB) {
	t.Helper()
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := OpenStore(context.Background(), e.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store, e.v.Store = st, st
}

// pgURL gives a PostgreSQL URL with a fresh schema of its own (dropped at the end).
func pgURL(t testing.TB) string { return testdb.PostgresURL(t, "ca_test") }

// bothEngines runs f as a subtest on each store engine: SQLite (url "", a fresh file) and PostgreSQL (a
// fresh database).
func bothEngines(t *testing.T, f func(t *testing.T, engine, url string)) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			url := ""
			if engine == "postgres" {
				url = pgURL(t)
			}
			f(t, engine, url)
		})
	}
}

// board is the simulator acting as one board: its EK, IAK and IDevID loaded, and its round-1 request.
type board struct {
	t               testing.TB
	tpm             transport.TPM
	ek, iak, idevid *provisioning.Key
	ekCert          []byte
	req             *provisioning.EnrollRequest
}

var ekIndex = map[provisioning.EKAlg]uint32{provisioning.EKRSA2048: 0x01C00002, provisioning.EKP256: 0x01C0000A}

// newBoard takes the simulator for the rest of the test.
func newBoard(t testing.TB, serial string, ekAlg provisioning.EKAlg, keyAlg provisioning.KeyAlg) *board {
	t.Helper()
	tpmMu.Lock()
	b := &board{t: t, tpm: simTPM}
	t.Cleanup(func() {
		provisioning.FlushTransients(simTPM)
		tpmMu.Unlock()
	})
	if err := provisioning.FlushTransients(b.tpm); err != nil {
		t.Fatal(err)
	}
	certs, err := provisioning.ReadEKCertificates(b.tpm)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range certs {
		if c.Index == ekIndex[ekAlg] {
			b.ekCert = c.Data
		}
	}
	if b.ekCert == nil {
		t.Fatalf("no EK certificate at %#x", ekIndex[ekAlg])
	}
	if b.ek, err = provisioning.CreateEK(b.tpm, ekAlg); err != nil {
		t.Fatal(err)
	}
	if b.iak, err = provisioning.CreateIAK(b.tpm, keyAlg); err != nil {
		t.Fatal(err)
	}
	if b.idevid, err = provisioning.CreateIDevID(b.tpm, keyAlg); err != nil {
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

// request returns a copy of the round-1 request to tamper with.
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

// rawCertify runs TPM2_Certify of object by signer over nonce without any of the device-side checks.
func rawCertify(t testing.TB, tpm transport.TPM, signer, object *provisioning.Key, nonce []byte) (attest, sig []byte) {
	t.Helper()
	rsp, err := (tpm2.Certify{
		ObjectHandle:   tpm2.AuthHandle{Handle: object.Handle, Name: object.Name, Auth: tpm2.PasswordAuth(nil)},
		SignHandle:     tpm2.AuthHandle{Handle: signer.Handle, Name: signer.Name, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
	}).Execute(tpm)
	if err != nil {
		t.Fatal(err)
	}
	return rsp.CertifyInfo.Bytes(), tpm2.Marshal(rsp.Signature)
}

// createPrimary makes an endorsement-hierarchy primary from tmpl.
func createPrimary(t testing.TB, tpm transport.TPM, tmpl tpm2.TPMTPublic) *provisioning.Key {
	t.Helper()
	rsp, err := (tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tmpl),
	}).Execute(tpm)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	return &provisioning.Key{Handle: rsp.ObjectHandle, Name: rsp.Name, Public: *pub, PublicBytes: tpm2.Marshal(*pub)}
}

// secondIAK is another real restricted signing key in the same TPM (different unique field).
func secondIAK(t testing.TB, tpm transport.TPM, alg provisioning.KeyAlg) *provisioning.Key {
	t.Helper()
	tmpl, err := provisioning.IAKTemplate(alg)
	if err != nil {
		t.Fatal(err)
	}
	switch tmpl.Type {
	case tpm2.TPMAlgECC:
		tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: []byte("IAK2")}, Y: tpm2.TPM2BECCParameter{Buffer: []byte("IAK2")}})
	case tpm2.TPMAlgRSA:
		tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: []byte("IAK2")})
	}
	return createPrimary(t, tpm, tmpl)
}

// tamperPublic unmarshals a public area, applies f and marshals it again.
func tamperPublic(t testing.TB, b []byte, f func(p *tpm2.TPMTPublic)) []byte {
	t.Helper()
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		t.Fatal(err)
	}
	f(p)
	return tpm2.Marshal(*p)
}

func wantCode(t testing.TB, err error, code provisioning.ErrorCode) {
	t.Helper()
	var pe *provisioning.Error
	if !errors.As(err, &pe) {
		t.Fatalf("got error %v, want a *provisioning.Error with code %s", err, code)
	}
	if pe.Code != code {
		t.Fatalf("got %s (%s), want %s", pe.Code, pe.Message, code)
	}
	if strings.ContainsAny(pe.Message, "\n\r") {
		t.Fatalf("error message spans lines: %q", pe.Message)
	}
}

func hexs(b []byte) string { return hex.EncodeToString(b) }

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}
