package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/internal/hsm"
	"github.com/tpmline/tpmline/internal/hsm/hsmtest"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station"
	"github.com/tpmline/tpmline/station/progress"
)

// TestStationTokenPulled: a station whose client key is on a SoftHSM2 token runs in one process (as the
// terminal does) against the real upstream-ca over mutual TLS, with swtpm boards. The token is pulled
// (its directory moved away, as the CA's TestPKCS11CA does) in the middle of the second board, at enroll:
// that board fails in one line naming the token and the next step, is not provisioned and stays in
// progress; the third board, started with the token still away, is turned away before the inventory
// sees it, in one line naming the board; the first board and the audit chain are untouched. With the token
// back, both boards provision (the second resuming), and the inventory verifies against its chain.
// `station provision` (a process per board) with the token away refuses the board in one line too.
func TestStationTokenPulled(t *testing.T) {
	ctx := context.Background()
	vendor := fixturestest.NewSwtpmVendor(t)
	ca := startUpstreamCA(t, vendorCAs(t, vendor))
	tk := hsmtest.New(t)
	tok, err := hsm.Open(tk.Config)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tok.Generate("line-1-client")
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "line-1"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	tok.Close()
	dir := t.TempDir()
	csr := filepath.Join(dir, "line-1.csr")
	if err := os.WriteFile(csr, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "line-1")
	mustRun(t, "upstream-ca", "station", "add", "--dir", ca.dir, "--name", "line-1", "--out", out, "--csr", csr)

	s := &station.Settings{StationID: "line-1", DB: "sqlite://" + filepath.Join(dir, "inventory.db"), CAURL: ca.url,
		CATrust: filepath.Join(out, "ca-trust.pem"), ClientCert: filepath.Join(out, "line-1.crt"),
		PKCS11: &station.PKCS11Key{Config: tk.Config, Key: "line-1-client"}}
	inv, err := inventory.Open(ctx, s.DB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inv.Close() })
	if _, err := inv.OpenBatch(ctx, records.NewBatch{ID: "TK1", Product: "default", WorkOrder: "WO-TK1", Quantity: 3,
		Operator: "ana", Station: "line-1"}); err != nil {
		t.Fatal(err)
	}
	client, err := caClient(s)
	if err != nil {
		t.Fatal(err)
	}
	var restore func()
	pullAt := ""
	st, err := newStation(s, inv, client, nil, func(step, phase string) {
		if step == pullAt && phase == "before" {
			restore, pullAt = tk.Remove(t), ""
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	line := st
	boards := map[string]string{}
	for _, sn := range []string{"TK-1", "TK-2", "TK-3"} {
		boards[sn] = fixturestest.NewSwtpmBoardFrom(t, vendor, fixtures.SwtpmBoardOptions{}).Addr()
	}
	provision := func(sn string) *station.Outcome {
		t.Helper()
		return line.Provision(ctx, station.Job{Batch: "TK1", Serial: sn, Slot: 1, TPM: boards[sn]})
	}
	state := func(sn string) records.BoardState {
		t.Helper()
		b, err := inv.GetBoardBySerial(ctx, sn)
		if err != nil || b == nil {
			return ""
		}
		return b.State
	}

	if o := provision("TK-1"); o.Failure != nil {
		t.Fatalf("TK-1 with the token in: %s", o.Failure.Line())
	}
	pullAt = progress.StepEnroll
	o := provision("TK-2")
	if o.Failure == nil || restore == nil {
		t.Fatalf("TK-2 with the token pulled at enroll: %+v", o)
	}
	if l := o.Failure.Line(); strings.Contains(l, "\n") || !strings.Contains(l, tk.Config.Token) || !strings.Contains(l, "retry the board") {
		t.Fatalf("TK-2's failure is not one line naming the token and the next step: %q", l)
	}
	if o.Failure.Code != station.ReasonStationKey || !o.Failure.Infra {
		t.Fatalf("TK-2: %s: failure names %s (infra %v), want the station key as the cause (%s, a station fault)", o.Failure.Line(), o.Failure.Code, o.Failure.Infra, station.ReasonStationKey)
	}
	t.Logf("TK-2: %s", o.Failure.Line())
	if got := state("TK-2"); got != records.StateInProgress {
		t.Fatalf("TK-2 after the token was pulled: %q, want in progress (not provisioned, resumable)", got)
	}
	o = provision("TK-3")
	if o.Failure == nil || o.Failure.Code != station.ReasonStationKey {
		t.Fatalf("TK-3 with the token away: %+v", o.Failure)
	}
	if l := o.Failure.Line(); strings.Contains(l, "\n") || !strings.Contains(l, "board TK-3") || !strings.Contains(l, tk.Config.Token) ||
		!strings.Contains(l, "put the station's key token back") {
		t.Fatalf("TK-3's refusal: %q", l)
	}
	t.Logf("TK-3: %s", o.Failure.Line())
	if got := state("TK-3"); got != "" {
		t.Fatalf("TK-3 was recorded (%s) with the token away", got)
	}
	// The same board through `station provision`, one process per board as a test executive runs it: the
	// process cannot open the token; one line names the board and what to do, exit 2, nothing recorded.
	c := tk.Config
	r := runBin(t, "station", "--db", s.DB, "--station-id", "line-1", "--ca", ca.url, "--ca-trust", s.CATrust, "--client-cert", s.ClientCert,
		"--pkcs11-module", c.Module, "--pkcs11-token", c.Token, "--pkcs11-pin-file", c.PINFile, "--pkcs11-key", "line-1-client",
		"provision", "--tpm", boards["TK-3"], "--serial", "TK-3", "--batch", "TK1")
	t.Logf("station provision TK-3: %s", r.stderr)
	if r.code != 2 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "board TK-3 not started") ||
		!strings.Contains(r.stderr, c.Token) || !strings.Contains(r.stderr, "put the token back") {
		t.Fatalf("station provision with the token away: %d %q", r.code, r.stderr)
	}
	if got := state("TK-3"); got != "" {
		t.Fatalf("TK-3 was recorded (%s) by station provision with the token away", got)
	}
	if got := state("TK-1"); got != records.StateProvisioned {
		t.Fatalf("TK-1 after the token was pulled: %q", got)
	}
	if _, div, err := inv.VerifyState(ctx, ""); err != nil || len(div) != 0 {
		t.Fatalf("inventory against its chain with the token away: %v %v", err, div)
	}

	restore()
	for _, sn := range []string{"TK-2", "TK-3"} {
		if o := provision(sn); o.Failure != nil || o.State != records.StateProvisioned {
			t.Fatalf("%s with the token back: %s %+v", sn, o.State, o.Failure)
		}
	}
	if _, div, err := inv.VerifyState(ctx, ""); err != nil || len(div) != 0 {
		t.Fatalf("inventory against its chain at the end: %v %v", err, div)
	}
}

// BenchmarkKeyGuard: what keyGuard's check costs each board (hsm.Signer.Ready, a round trip to the
// token) beside one signature with the same key on SoftHSM2 (a board's run makes several: the TLS
// handshakes and the audit head).
func BenchmarkKeyGuard(b *testing.B) {
	tk := hsmtest.New(b)
	tok, err := hsm.Open(tk.Config)
	if err != nil {
		b.Fatal(err)
	}
	defer tok.Close()
	key, err := tok.Generate("bench")
	if err != nil {
		b.Fatal(err)
	}
	digest := make([]byte, 32)
	b.Run("ready", func(b *testing.B) {
		for b.Loop() {
			if err := key.Ready(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sign", func(b *testing.B) {
		for b.Loop() {
			if _, err := key.Sign(rand.Reader, digest, crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
	})
}
