package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gdamore/tcell/v2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/reports/signed"
	"github.com/tpmline/tpmline/station"
	"github.com/tpmline/tpmline/station/qa"
	"github.com/tpmline/tpmline/tui"
)

// keptTPM is a simulated board whose TPM outlives each open (the station closes what it opens): the
// keys a provision persists are there for the RMA to evict.
type keptTPM struct{ transport.TPMCloser }

func (keptTPM) Close() error { return nil }

// TestTUIBoardRMA: on the real terminal (a simulation screen) over the real station, CA (mutual TLS) and
// inventory, a provisioned board is taken out of service from the rework dialog (F5): refused without a
// badge and without a reason; then RMA with the supervisor's badge and a reason revokes both
// certificates at the CA (keyCompromise, ticked) and clears the board's TPM, each step in the log, the
// slot shows it out of service, the audit trail has the three events with the supervisor, the batch
// report shows the RMA; a rework from the same dialog then provisions the board again with new
// certificates; deprovisioned from the dialog, the new ones are revoked cessationOfOperation; the
// inventory verifies against its chain.
func TestTUIBoardRMA(t *testing.T) {
	ctx := context.Background()
	vendor, err := fixtures.NewManufacturer("RMA Vendor")
	if err != nil {
		t.Fatal(err)
	}
	ca := fixturestest.StartCA(t, fixturestest.CAOptions{DBURL: "sqlite://" + filepath.Join(t.TempDir(), "ca.db"),
		VendorRoots: []*x509.Certificate{vendor.Root()}, VendorIntermediates: []*x509.Certificate{vendor.Intermediate()}})
	inv, err := inventory.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "inventory.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inv.Close() })
	tpm, err := fixtures.Open("sim", fixtures.WithManufacturer(vendor), fixtures.WithSimSeed(7))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tpm.Close() })
	open := func(addr string) (transport.TPMCloser, error) {
		if addr != "kept:7" {
			return nil, fmt.Errorf("no board at %s", addr)
		}
		return keptTPM{tpm}, nil
	}
	st, err := station.New(station.Config{StationID: "st1", Inventory: inv, CA: ca.Client(), Open: open})
	if err != nil {
		t.Fatal(err)
	}
	var _ tui.Retirer = st
	if _, err := inv.OpenBatch(ctx, records.NewBatch{ID: "TR1", Product: "default", WorkOrder: "WO-TR1", Quantity: 2,
		Operator: "ana", Station: "st1"}); err != nil {
		t.Fatal(err)
	}

	term := startTerminal(t, st, "kept:7", 200, 50)
	waitFor, key, typeText := term.waitFor, term.key, term.typeText
	certs := func() map[string]bool {
		t.Helper()
		cs, err := inv.ListCertificates(ctx, "TUI-1")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, c := range cs {
			out[c.SerialHex] = true
		}
		return out
	}

	waitFor("Continue batch TR1")
	key(tcell.KeyEnter, 1)
	waitFor("ready: scan a serial")
	typeText("TUI-1")
	key(tcell.KeyEnter, 1)
	waitFor("IAK and IDevID certified and written")
	first := certs()
	if len(first) != 2 {
		t.Fatalf("first provision: %d certificates", len(first))
	}

	// The dialog's focus order: badge, reason, key compromised, then Rework, RMA, Deprovision, Cancel.
	key(tcell.KeyF5, 1)
	waitFor("Rework TUI-1", "Deprovision")
	key(tcell.KeyTab, 4)
	key(tcell.KeyEnter, 1) // RMA without a badge
	waitFor("scan the supervisor's badge first")
	key(tcell.KeyTab, 3) // back round to the badge
	typeText("sup1")
	key(tcell.KeyTab, 4)
	key(tcell.KeyEnter, 1) // RMA without a reason
	waitFor("type the reason")
	key(tcell.KeyTab, 4)
	typeText("field return: no boot")
	key(tcell.KeyTab, 1)
	key(tcell.KeyEnter, 1) // key compromised
	key(tcell.KeyTab, 2)
	key(tcell.KeyEnter, 1) // RMA
	s := waitFor("RMA confirmed by supervisor sup1: field return: no boot", "stopped (rma: field return: no boot)",
		"2 certificate(s) revoked at the CA", "IAK and IDevID evicted, certificate indices undefined", "out of service (RMA)")
	if strings.Contains(s, "NOT") {
		t.Fatalf("a step was not done:\n%s", s)
	}
	for serial := range first {
		r, err := ca.Store.RevocationOf(ctx, serial)
		if err != nil || r == nil || r.Reason != 1 {
			t.Fatalf("certificate %s at the CA: %+v %v, want revoked keyCompromise", serial, r, err)
		}
	}
	b, err := inv.GetBoardBySerial(ctx, "TUI-1")
	if err != nil || b.State != records.StateStopped || b.ReasonCode != records.ReasonRMA {
		t.Fatalf("board after the RMA: %+v %v", b, err)
	}
	kinds := map[string]map[string]any{}
	if err := inv.ListEvents(ctx, inventory.EventFilter{Serial: "TUI-1"}, func(e *records.Event) error {
		var p map[string]any
		_ = json.Unmarshal(e.Payload, &p)
		kinds[e.Kind] = p
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{records.EventBoardRMA, records.EventBoardCertsRevoked, records.EventBoardTPMCleared} {
		if kinds[k] == nil {
			t.Fatalf("no %s event: %v", k, kinds)
		}
	}
	if kinds[records.EventBoardCertsRevoked]["supervisor"] != "sup1" || kinds[records.EventBoardTPMCleared]["supervisor"] != "sup1" {
		t.Fatalf("the supervisor is not in the audit trail: %v", kinds)
	}
	rep := reportJSON(t, inv, ca, "TR1")
	if !strings.Contains(rep, `"reason_code":"rma"`) || !strings.Contains(rep, "field return: no boot") {
		t.Fatalf("the batch report does not show the RMA:\n%s", rep)
	}

	// Retry (F3) is refused for a board out of service; a rework from the dialog provisions it again.
	key(tcell.KeyF3, 1)
	waitFor("only a rework (F5) takes it again")
	key(tcell.KeyF5, 1)
	waitFor("Rework TUI-1")
	typeText("sup1")
	key(tcell.KeyTab, 3)
	key(tcell.KeyEnter, 1)
	waitFor("TUI-1 (rework)", "IAK and IDevID certified and written")
	second := certs()
	if len(second) != 4 {
		t.Fatalf("after the rework: %d certificates, want the first two and two new", len(second))
	}
	b, err = inv.GetBoardBySerial(ctx, "TUI-1")
	if err != nil || b.State != records.StateProvisioned {
		t.Fatalf("board after the rework: %+v %v", b, err)
	}

	// Deprovisioned from the same dialog: the new certificates revoked cessationOfOperation, the TPM
	// cleared again.
	key(tcell.KeyF5, 1)
	waitFor("Rework TUI-1")
	typeText("sup2")
	key(tcell.KeyTab, 1)
	typeText("scrapped")
	key(tcell.KeyTab, 4)
	key(tcell.KeyEnter, 1)
	waitFor("Deprovision confirmed by supervisor sup2: scrapped", "stopped (deprovisioned: scrapped)", "out of service (Deprovision)")
	for serial := range second {
		if first[serial] {
			continue
		}
		r, err := ca.Store.RevocationOf(ctx, serial)
		if err != nil || r == nil || r.Reason != 5 {
			t.Fatalf("certificate %s after the deprovision: %+v %v, want revoked cessationOfOperation", serial, r, err)
		}
	}
	if b, err := inv.GetBoardBySerial(ctx, "TUI-1"); err != nil || b.ReasonCode != records.ReasonDeprovisioned {
		t.Fatalf("board after the deprovision: %+v %v", b, err)
	}
	if _, div, err := inv.VerifyState(ctx, ""); err != nil || len(div) != 0 {
		t.Fatalf("inventory against its chain: %v %v", err, div)
	}
}

// reportJSON writes batch's reports signed with the station's CA client key and returns the JSON one.
func reportJSON(t *testing.T, inv *inventory.Store, ca *fixturestest.CA, batch string) string {
	t.Helper()
	cert := ca.ClientTLS.Certificates[0]
	var chain []*x509.Certificate
	for _, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	dir := t.TempDir()
	jsonf := filepath.Join(dir, "r.json")
	if _, err := qa.WriteBatchReportsWith(context.Background(), inv, batch, signed.Signer{Key: cert.PrivateKey.(crypto.Signer), Chain: chain},
		filepath.Join(dir, "r.pdf"), filepath.Join(dir, "r.csv"), jsonf, qa.ReportOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(jsonf)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
