package station_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/fixtures/fixturestest/testpki"
	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ca"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station"
)

// benchTPMs is the fixture's one slot with the in-process simulator (one per process) as the board on it:
// the board stays on the fixture between runs, so what one run persists the next one finds; another
// address puts another part on the slot (the previous one is taken off). Closing a run's handle leaves the
// board on the fixture.
type benchTPMs struct {
	mu   sync.Mutex
	m    *fixtures.Manufacturer
	addr string
	tpm  transport.TPMCloser
}

type keepOpen struct{ transport.TPM }

func (keepOpen) Close() error { return nil }

func (b *benchTPMs) open(addr string) (transport.TPMCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tpm != nil && b.addr == addr {
		return keepOpen{b.tpm}, nil
	}
	b.closeLocked()
	seed, err := strconv.ParseInt(strings.TrimPrefix(addr, "sim:"), 10, 64)
	if err != nil {
		return nil, err
	}
	t, err := fixtures.Open("sim", fixtures.WithManufacturer(b.m), fixtures.WithSimSeed(seed))
	if err != nil {
		return nil, err
	}
	b.addr, b.tpm = addr, t
	return keepOpen{t}, nil
}

func (b *benchTPMs) closeLocked() {
	if b.tpm != nil {
		_ = b.tpm.Close()
		b.tpm = nil
	}
}

func (b *benchTPMs) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closeLocked()
}

// TestRMAThenReprovision: a provisioned board is RMA'd on the fixture (its certificates revoked at the CA,
// its keys and certificate indices removed from the TPM, each step an audit event), then provisioned again
// by a rework with new keys and certificates; the old certificates are in the CA's CRL (openssl reads it),
// the new ones are not; its EK under another serial is still refused, at this station and at the CA from
// a station whose inventory never saw the board; a board off the fixture is recorded as not cleared; and
// the inventory still agrees with its audit chain.
func TestRMAThenReprovision(t *testing.T) {
	ctx := context.Background()
	m, err := fixtures.NewManufacturer("Sim Vendor RMA")
	if err != nil {
		t.Fatal(err)
	}
	fc := fixturestest.StartCA(t, fixturestest.CAOptions{VendorRoots: []*x509.Certificate{m.Root()}, VendorIntermediates: []*x509.Certificate{m.Intermediate()}})
	c := &testCA{URL: fc.URL, ClientTLS: fc.ClientTLS, Store: fc.Store, Root: fc.PKI.Root.Cert, Issuing: fc.PKI.Issuing.Cert}
	bench := &benchTPMs{m: m}
	defer bench.close()
	useBench := func(cfg *station.Config) { cfg.Open = bench.open }
	st, inv := newStation(t, "sqlite://"+filepath.Join(t.TempDir(), "inv.db"), c, useBench)
	openBatch(t, inv, "B1")

	firstSN2 := st.Provision(ctx, station.Job{Batch: "B1", Serial: "SN-0002", TPM: "sim:12"})
	mustPass(t, firstSN2)
	first := st.Provision(ctx, station.Job{Batch: "B1", Serial: "SN-0001", TPM: "sim:11"})
	mustPass(t, first)

	// The CA's checks on a station's revoke, one each: another station's board, an unknown serial, a
	// reason a full CRL does not carry, a malformed serial.
	st9 := testpki.MustIssue(t, testpki.Spec{CommonName: "station-9", Usage: x509.ExtKeyUsageClientAuth}, fc.PKI.Access)
	for _, x := range []struct {
		client *provisioning.Client
		req    provisioning.RevokeBoardRequest
		code   provisioning.ErrorCode
	}{
		{provisioning.NewClient(fc.URL, fc.PKI.ClientTLS(st9)), provisioning.RevokeBoardRequest{Serial: "SN-0002", Reason: 5}, provisioning.CodeRevokeRefused},
		{c.client(), provisioning.RevokeBoardRequest{Serial: "SN-7777", Reason: 5}, provisioning.CodeBoardUnknown},
		{c.client(), provisioning.RevokeBoardRequest{Serial: "SN-0002", Reason: 8}, provisioning.CodeBadRequest},
		{c.client(), provisioning.RevokeBoardRequest{Serial: "SN 0002\n", Reason: 5}, provisioning.CodeBadRequest},
		{c.client(), provisioning.RevokeBoardRequest{Serial: strings.Repeat("S", provisioning.MaxSerialLen+1), Reason: 5}, provisioning.CodeTooLarge},
	} {
		_, err := x.client.RevokeBoard(ctx, &x.req)
		var pe *provisioning.Error
		if !errors.As(err, &pe) || pe.Code != x.code {
			t.Fatalf("revoke %+v: %v, want %s", x.req, err, x.code)
		}
	}
	if r, err := fc.Store.RevocationOf(ctx, strings.ToLower(firstSN2.IDevIDCertSerial)); err != nil || r != nil {
		t.Fatalf("a refused revoke revoked SN-0002's certificate: %+v %v", r, err)
	}
	// Another board's TPM on the fixture (SN-0001's, provisioned) is left as it is, and recorded as not
	// cleared; SN-0002's certificates are revoked all the same.
	wrong, err := st.Retire(ctx, station.RetireJob{Serial: "SN-0002", Kind: records.EventBoardDeprovisioned, Reason: "scrapped",
		CRLReason: 5, TPM: "sim:11"})
	if err != nil || wrong.TPMCleared || !strings.Contains(wrong.TPMNotReason, "is not board SN-0002's") || len(wrong.Revoked) != 2 {
		t.Fatalf("deprovision with another board's TPM on the fixture: %+v %v", wrong, err)
	}
	tpm, _ := bench.open("sim:11")
	if held, err := provisioning.Inspect(tpm, station.DefaultProfile().Layout()); err != nil || !held.Provisioned() {
		t.Fatalf("SN-0001's TPM was touched by SN-0002's deprovision: %+v %v", held, err)
	}
	out, err := st.Retire(ctx, station.RetireJob{Serial: "SN-0001", Kind: records.EventBoardRMA, Reason: "field return: no boot",
		CRLReason: 5, TPM: "sim:11"})
	if err != nil {
		t.Fatal(err)
	}
	if !out.OK() || len(out.Revoked) != 2 || out.Board.State != records.StateStopped || out.Board.ReasonCode != records.ReasonRMA {
		t.Fatalf("rma outcome %+v (revoke: %v, tpm: %s)", out, out.RevokeErr, out.TPMNotReason)
	}
	held, err := provisioning.Inspect(tpm, station.DefaultProfile().Layout())
	if err != nil || held.IAK != nil || held.IDevID != nil || held.IAKCert != nil || held.IDevIDCert != nil {
		t.Fatalf("TPM after the RMA still holds %+v (%v)", held, err)
	}
	// Not provisioned again without a rework.
	mustFail(t, st.Provision(ctx, station.Job{Batch: "B1", Serial: "SN-0001", TPM: "sim:11"}), station.ReasonStopped, records.StateStopped)

	second := st.Provision(ctx, station.Job{Batch: "B1", Serial: "SN-0001", TPM: "sim:11", Rework: true, Supervisor: "qa1"})
	mustPass(t, second)
	if second.IAKCertSerial == first.IAKCertSerial || second.IDevIDCertSerial == first.IDevIDCertSerial {
		t.Fatalf("rework reissued the same certificates: %s %s", second.IAKCertSerial, second.IDevIDCertSerial)
	}

	// The CRL as a relying party reads it: the first certificates revoked, the new ones not.
	crl, err := ca.CRL(ctx, fc.Store, &ca.KeyPair{Cert: fc.PKI.Issuing.Cert, Key: fc.PKI.Issuing.Key}, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is not installed (make test installs it)")
	}
	crlFile := filepath.Join(t.TempDir(), "ca.crl")
	if err := os.WriteFile(crlFile, crl, 0o600); err != nil {
		t.Fatal(err)
	}
	text, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", crlFile, "-noout", "-text").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl crl: %v\n%s", err, text)
	}
	listed := strings.ToUpper(strings.ReplaceAll(string(text), ":", ""))
	for _, s := range []string{first.IAKCertSerial, first.IDevIDCertSerial} {
		if !strings.Contains(listed, "SERIAL NUMBER "+strings.ToUpper(s)) {
			t.Fatalf("old certificate %s not in the CRL:\n%s", s, text)
		}
	}
	for _, s := range []string{second.IAKCertSerial, second.IDevIDCertSerial} {
		if strings.Contains(listed, strings.ToUpper(s)) {
			t.Fatalf("new certificate %s is in the CRL:\n%s", s, text)
		}
	}
	if !strings.Contains(string(text), "Cessation Of Operation") {
		t.Fatalf("CRL does not carry the reason:\n%s", text)
	}
	// OCSP as a relying party asks it: the first IDevID revoked, the new one good.
	ocspURL := servePublic(t, fc)
	certs, err := inv.ListCertificates(ctx, "SN-0001")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, cert := range certs {
		if cert.Kind != records.KindIDevID {
			continue
		}
		checked++
		want := map[int]string{1: ": revoked", 2: ": good"}[cert.Attempt]
		if out := ocspCheck(t, fc, ocspURL, cert.DER); want == "" || !strings.Contains(out, want) || !strings.Contains(out, "Response verify OK") {
			t.Fatalf("OCSP for the attempt-%d IDevID, want %q:\n%s", cert.Attempt, want, out)
		}
	}
	if checked != 2 {
		t.Fatalf("the inventory holds %d IDevID certificates of SN-0001, want the old and the new", checked)
	}

	// The same EK under another serial: a clone, here and at the CA.
	mustFail(t, st.Provision(ctx, station.Job{Batch: "B1", Serial: "SN-0009", TPM: "sim:11", Rework: true}), station.ReasonClone, records.StateStopped)
	other, inv2 := newStation(t, "sqlite://"+filepath.Join(t.TempDir(), "inv2.db"), c, useBench)
	openBatch(t, inv2, "B9")
	mustFail(t, other.Provision(ctx, station.Job{Batch: "B9", Serial: "SN-0009", TPM: "sim:11", Rework: true}),
		station.ReasonCAPrefix+string(provisioning.CodeEKSerialConflict), records.StateStopped)

	// A board off the fixture: revoked, and recorded as not cleared.
	off, err := st.Retire(ctx, station.RetireJob{Serial: "SN-0002", Kind: records.EventBoardDeprovisioned, Reason: "scrapped"})
	if err != nil || off.RevokeErr != nil || len(off.Already) != 2 || off.TPMCleared || !strings.Contains(off.TPMNotReason, "not on the fixture") {
		t.Fatalf("deprovision off the fixture: %+v %v", off, err)
	}
	kinds := map[string]int{}
	if err := inv.ListEvents(ctx, inventory.EventFilter{}, func(e *inventory.Event) error { kinds[e.Kind]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for k, n := range map[string]int{records.EventBoardRMA: 1, records.EventBoardDeprovisioned: 2, records.EventBoardCertsRevoked: 3,
		records.EventBoardTPMCleared: 1, records.EventBoardTPMNotCleared: 2} {
		if kinds[k] != n {
			t.Fatalf("%d %s events, want %d (%v)", kinds[k], k, n, kinds)
		}
	}
	// A station whose inventory does not hold the board cannot retire it.
	if _, err := other.Retire(ctx, station.RetireJob{Serial: "SN-0001", Kind: records.EventBoardRMA, Reason: "x"}); err == nil {
		t.Fatal("a station retired a board its inventory does not hold")
	}
	if _, _, err := inv.VerifyState(ctx, ""); err != nil {
		t.Fatalf("audit verify after RMA, rework and deprovision: %v", err)
	}
	if _, divs, _ := inv.VerifyState(ctx, ""); len(divs) != 0 {
		t.Fatalf("inventory diverges from its chain: %v", divs)
	}
}

// servePublic serves the CA's CRL and OCSP endpoints on loopback until the test ends and returns the
// OCSP URL.
func servePublic(t *testing.T, fc *fixturestest.CA) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	p := &ca.Public{Store: fc.Store, Issuing: &ca.KeyPair{Cert: fc.PKI.Issuing.Cert, Key: fc.PKI.Issuing.Key}}
	go func() { defer close(done); _ = p.ServePublic(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String() + ca.OCSPPath
}

// ocspCheck asks the OCSP responder at url about the certificate der with openssl, on the product clock.
func ocspCheck(t *testing.T, fc *fixturestest.CA, url string, der []byte) string {
	t.Helper()
	dir := t.TempDir()
	pemFile := func(name string, ders ...[]byte) string {
		var b []byte
		for _, d := range ders {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cert := pemFile("cert.pem", der)
	args := []string{"ocsp", "-issuer", pemFile("issuing.pem", fc.PKI.Issuing.Cert.Raw), "-cert", cert, "-url", url,
		"-CAfile", pemFile("chain.pem", fc.PKI.Issuing.Cert.Raw, fc.PKI.Root.Cert.Raw), "-no_nonce"}
	if clock.Shifted() {
		skew := time.Until(clock.Now()).Abs() + 24*time.Hour
		args = append(append(args, clock.OpenSSLAtTime()...), "-validity_period", strconv.FormatInt(int64(skew.Seconds()), 10))
	}
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
