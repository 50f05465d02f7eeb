package station_test

import (
	"context"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
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

	mustPass(t, st.Provision(ctx, station.Job{Batch: "B1", Serial: "SN-0002", TPM: "sim:12"}))
	first := st.Provision(ctx, station.Job{Batch: "B1", Serial: "SN-0001", TPM: "sim:11"})
	mustPass(t, first)

	out, err := st.Retire(ctx, station.RetireJob{Serial: "SN-0001", Kind: records.EventBoardRMA, Reason: "field return: no boot",
		CRLReason: 5, TPM: "sim:11"})
	if err != nil {
		t.Fatal(err)
	}
	if !out.OK() || len(out.Revoked) != 2 || out.Board.State != records.StateStopped || out.Board.ReasonCode != records.ReasonRMA {
		t.Fatalf("rma outcome %+v (revoke: %v, tpm: %s)", out, out.RevokeErr, out.TPMNotReason)
	}
	tpm, _ := bench.open("sim:11")
	held, err := provisioning.Inspect(tpm, station.DefaultProfile().Layout())
	if err != nil || held.IAK != nil || held.IDevID != nil || held.IAKCert != nil || held.IDevIDCert != nil {
		t.Fatalf("TPM after the RMA still holds %+v (%v)", held, err)
	}
	// Asked again, the CA keeps the first revocation.
	again, err := c.client().RevokeBoard(ctx, &provisioning.RevokeBoardRequest{Serial: "SN-0001", Reason: 5})
	if err != nil || len(again.Revoked) != 0 || len(again.Already) != 2 {
		t.Fatalf("second revoke: %+v %v", again, err)
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
	crlFile := filepath.Join(t.TempDir(), "ca.crl")
	if err := os.WriteFile(crlFile, crl, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
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

	// The same EK under another serial: a clone, here and at the CA.
	mustFail(t, st.Provision(ctx, station.Job{Batch: "B1", Serial: "SN-0009", TPM: "sim:11", Rework: true}), station.ReasonClone, records.StateStopped)
	other, inv2 := newStation(t, "sqlite://"+filepath.Join(t.TempDir(), "inv2.db"), c, useBench)
	openBatch(t, inv2, "B9")
	mustFail(t, other.Provision(ctx, station.Job{Batch: "B9", Serial: "SN-0009", TPM: "sim:11", Rework: true}),
		station.ReasonCAPrefix+string(provisioning.CodeEKSerialConflict), records.StateStopped)

	// A board off the fixture: revoked, and recorded as not cleared.
	off, err := st.Retire(ctx, station.RetireJob{Serial: "SN-0002", Kind: records.EventBoardDeprovisioned, Reason: "scrapped"})
	if err != nil || off.RevokeErr != nil || off.TPMCleared || !strings.Contains(off.TPMNotReason, "not on the fixture") {
		t.Fatalf("deprovision off the fixture: %+v %v", off, err)
	}
	kinds := map[string]int{}
	if err := inv.ListEvents(ctx, inventory.EventFilter{}, func(e *inventory.Event) error { kinds[e.Kind]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for k, n := range map[string]int{records.EventBoardRMA: 1, records.EventBoardDeprovisioned: 1, records.EventBoardCertsRevoked: 2,
		records.EventBoardTPMCleared: 1, records.EventBoardTPMNotCleared: 1} {
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
