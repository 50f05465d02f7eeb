package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/gdamore/tcell/v2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/fixtures/fixturestest/testdb"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/reports/signed"
	"github.com/tpmline/tpmline/station"
	"github.com/tpmline/tpmline/station/qa"
)

// TestEveryCountSurfaceAgrees is issue 17 point 1's test: one batch driven through the real station
// (simulator boards, the real CA over mutual TLS, a real inventory) with every outcome the line has
// (passes, a TPM failing a step, a failed board re-run to a pass, a clone scanned twice, a swapped part, a
// board stopped mid-flow, a board left in progress whose slot holds another TPM on resume), then
// the counts read back from every surface that shows them (the terminal's line view, QA view and
// close-batch dialog, `batch list`, `batch show`, and the PDF, CSV and JSON reports), each parsed from
// what the operator or QA would read, and compared with each other and with the numbers the outcomes
// make. A surface that counted on its own (a clone as failed, a refusal left out of done, a yield over
// passed+failed) would differ here.
func TestEveryCountSurfaceAgrees(t *testing.T) {
	for engine, dbURL := range map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return testdb.SQLiteURL(t, "inventory.db") },
		"postgres": func(t *testing.T) string { return testdb.PostgresURL(t, "counts") },
	} {
		t.Run(engine, func(t *testing.T) { everySurface(t, dbURL(t)) })
	}
}

// batchCounts are the numbers a surface shows; a surface that does not show one leaves it -1.
type batchCounts struct {
	Done, Passed, Failed, SetAside, Stopped, Refused, InProgress int
	Yield                                                        string
}

func unknownCounts() batchCounts { return batchCounts{-1, -1, -1, -1, -1, -1, -1, ""} }

// agrees compares the numbers a surface shows with the expected ones.
func (c batchCounts) agrees(want batchCounts) bool {
	eq := func(got, want int) bool { return got == -1 || got == want }
	return eq(c.Done, want.Done) && eq(c.Passed, want.Passed) && eq(c.Failed, want.Failed) && eq(c.SetAside, want.SetAside) &&
		eq(c.Stopped, want.Stopped) && eq(c.Refused, want.Refused) && eq(c.InProgress, want.InProgress) &&
		(c.Yield == "" || c.Yield == want.Yield)
}

// failingTPM is a board whose TPM answers one command with TPM_RC_FAILURE (a TPM in failure mode) while
// it is armed: the real simulator behind it answers everything else.
type failingTPM struct {
	transport.TPMCloser
	cc uint32
}

func (f failingTPM) Send(cmd []byte) ([]byte, error) {
	if len(cmd) >= 10 && binary.BigEndian.Uint32(cmd[6:10]) == f.cc {
		return []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x01}, nil // TPM_ST_NO_SESSIONS, size 10, TPM_RC_FAILURE
	}
	return f.TPMCloser.Send(cmd)
}

const ccActivateCredential = 0x147

func everySurface(t *testing.T, dbURL string) {
	ctx := context.Background()
	vendor, err := fixtures.NewManufacturer("Counts Vendor")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := fixtures.NewManufacturer("Unknown Vendor")
	if err != nil {
		t.Fatal(err)
	}
	ca := fixturestest.StartCA(t, fixturestest.CAOptions{DBURL: "sqlite://" + filepath.Join(t.TempDir(), "ca.db"),
		VendorRoots: []*x509.Certificate{vendor.Root()}, VendorIntermediates: []*x509.Certificate{vendor.Intermediate()}})
	inv, err := inventory.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inv.Close() })
	// Boards: "sim:N" a simulated part with seed N (the same N is the same TPM), "untrusted:N" a part of a
	// vendor the CA does not trust, "tpmfail:N" part N whose TPM fails credential activation.
	open := func(addr string) (transport.TPMCloser, error) {
		kind, seed, _ := strings.Cut(addr, ":")
		n, err := strconv.ParseInt(seed, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("test board address %q: %w", addr, err)
		}
		m := vendor
		if kind == "untrusted" {
			m = stranger
		}
		tpm, err := fixtures.Open("sim", fixtures.WithManufacturer(m), fixtures.WithSimSeed(n))
		if err != nil || kind != "tpmfail" {
			return tpm, err
		}
		return failingTPM{TPMCloser: tpm, cc: ccActivateCredential}, nil
	}
	st, err := station.New(station.Config{StationID: "st1", Inventory: inv, CA: ca.Client(), Open: open,
		Timed: func(t transport.TPM) station.TimedTPM { return fixtures.NewRecorder(t) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inv.OpenBatch(ctx, records.NewBatch{ID: "CNT1", Product: "default", WorkOrder: "WO-CNT1", Quantity: 10,
		Operator: "ana", Station: "st1"}); err != nil {
		t.Fatal(err)
	}
	run := func(serial, tpm string, wantCode string, wantState records.BoardState) {
		t.Helper()
		out := st.Provision(ctx, station.Job{Batch: "CNT1", Serial: serial, Slot: 1, TPM: tpm})
		code := ""
		if out.Failure != nil {
			code = out.Failure.Code
		}
		if code != wantCode || out.State != wantState {
			t.Fatalf("board %s on %s: %s %+v, want %s %q", serial, tpm, out.State, out.Failure, wantState, wantCode)
		}
	}
	// Three passes.
	run("CNT-1", "sim:1", "", records.StateProvisioned)
	run("CNT-2", "sim:2", "", records.StateProvisioned)
	run("CNT-3", "sim:3", "", records.StateProvisioned)
	// A TPM failure: the board's TPM fails credential activation; it stays failed.
	run("CNT-4", "tpmfail:4", station.ReasonTPMError, records.StateFailed)
	// A rework: the same failure, then the board re-run (its TPM back to health) passes.
	run("CNT-5", "tpmfail:5", station.ReasonTPMError, records.StateFailed)
	run("CNT-5", "sim:5", "", records.StateProvisioned)
	// A clone: CNT-1's TPM under another serial, refused (and scanned twice: the same board, one refusal).
	run("CNT-6", "sim:1", station.ReasonClone, records.StateStopped)
	run("CNT-6", "sim:1", station.ReasonClone, records.StateStopped)
	// A swapped board: CNT-2's label on a board with another TPM, refused.
	run("CNT-2", "sim:7", station.ReasonSwap, records.StateStopped)
	// A stopped board: the CA does not trust its TPM's vendor; the station stops it mid-flow.
	run("CNT-8", "untrusted:8", "ca_ek_untrusted", records.StateStopped)
	// A swapped board on resume: the CA is away while CNT-9 enrolls (it stays in progress); by the time the
	// station comes back its slot holds another TPM, so reconcile's resume meets another EK.
	down, err := station.New(station.Config{StationID: "st1", Inventory: inv, Open: open,
		CA:    provisioning.NewClient("https://127.0.0.1:1", ca.ClientTLS),
		Timed: func(t transport.TPM) station.TimedTPM { return fixtures.NewRecorder(t) }})
	if err != nil {
		t.Fatal(err)
	}
	if out := down.Provision(ctx, station.Job{Batch: "CNT1", Serial: "CNT-9", Slot: 2, TPM: "sim:9"}); out.State != records.StateInProgress {
		t.Fatalf("CNT-9 with the CA away: %s %+v", out.State, out.Failure)
	}
	rep, err := st.ReconcileReport(ctx, map[int]string{2: "sim:10"})
	if err != nil || len(rep) != 1 || rep[0].Resumed == nil {
		t.Fatalf("reconcile: %+v %v", rep, err)
	}
	if f := rep[0].Resumed.Failure; f == nil || f.Code != station.ReasonSwap {
		t.Fatalf("CNT-9 resumed on another TPM: %s %+v", rep[0].Resumed.State, f)
	}
	// The part in the slot is refused as a swapped part; CNT-9's record keeps its own TPM and stays in
	// progress, and once that TPM is back in the slot the next reconcile finishes it.
	if b, err := inv.GetBoardBySerial(ctx, "CNT-9"); err != nil || b.State != records.StateInProgress {
		t.Fatalf("CNT-9 after the refused resume: %+v %v", b, err)
	}
	if rep, err = st.ReconcileReport(ctx, map[int]string{2: "sim:9"}); err != nil || len(rep) != 1 || rep[0].Resumed == nil ||
		rep[0].Resumed.State != records.StateProvisioned {
		t.Fatalf("reconcile with CNT-9's own TPM back: %+v %v", rep, err)
	}

	// What these outcomes are by the definitions (records.Counts): 5 passed (CNT-1, 2, 3, 5, 9), 1 failed
	// (CNT-4), 1 stopped (CNT-8), 3 refused (the clone once however often scanned, the swapped CNT-2, the
	// part found in CNT-9's slot), 4 set aside, 10 done, 5/10 = 50 %.
	want := batchCounts{Done: 10, Passed: 5, Failed: 1, SetAside: 4, Stopped: 1, Refused: 3, InProgress: 0, Yield: "50.0%"}

	surfaces := map[string]batchCounts{}
	surfaces["batch list"], surfaces["batch show"] = cliCounts(t, dbURL)
	surfaces["report PDF cover"], surfaces["report PDF summary"], surfaces["report CSV"], surfaces["report JSON"] = reportCounts(t, inv, ca)
	surfaces["line view"], surfaces["QA view"], surfaces["close dialog"] = terminalCounts(t, st)

	for _, name := range []string{"line view", "QA view", "close dialog", "batch list", "batch show", "report PDF cover",
		"report PDF summary", "report CSV", "report JSON"} {
		got, ok := surfaces[name]
		if !ok {
			t.Errorf("%s: not read", name)
			continue
		}
		if !got.agrees(want) {
			t.Errorf("%s shows %+v, want %+v (-1: not shown)", name, got, want)
		}
		// And each agrees with every other (batch list shows every number).
		if list := surfaces["batch list"]; !got.agrees(list) {
			t.Errorf("%s shows %+v, batch list %+v", name, got, list)
		}
	}
}

func atoi(t *testing.T, what, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s: %q is not a number", what, s)
	}
	return n
}

// cliCounts runs `station batch list` and `station batch show` (the CLI's own command functions, in
// process) and parses their output.
func cliCounts(t *testing.T, dbURL string) (list, show batchCounts) {
	t.Helper()
	cli := func(args ...string) string {
		var out, errb bytes.Buffer
		if code := run(context.Background(), append([]string{"--db", dbURL, "--station-id", "st1"}, args...), &out, &errb); code != 0 {
			t.Fatalf("station %v: exit %d\n%s%s", args, code, out.String(), errb.String())
		}
		return out.String()
	}
	// BATCH PRODUCT STATE DONE PASSED FAILED SET-ASIDE STOPPED REFUSED IN-PROGRESS YIELD OPENED
	out := cli("batch", "list")
	m := regexp.MustCompile(`(?m)^CNT1\s+default\s+open\s+(\d+)/10\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("batch list has no row for CNT1:\n%s", out)
	}
	list = batchCounts{atoi(t, "list done", m[1]), atoi(t, "list passed", m[2]), atoi(t, "list failed", m[3]), atoi(t, "list set aside", m[4]),
		atoi(t, "list stopped", m[5]), atoi(t, "list refused", m[6]), atoi(t, "list in progress", m[7]), m[8]}
	out = cli("batch", "show", "CNT1")
	m = regexp.MustCompile(`(?m)^counts done (\d+)/10  passed (\d+)  failed (\d+)  set aside (\d+) \((\d+) stopped, (\d+) refused\)  in progress (\d+)  yield (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("batch show has no counts line:\n%s", out)
	}
	show = batchCounts{atoi(t, "show done", m[1]), atoi(t, "show passed", m[2]), atoi(t, "show failed", m[3]), atoi(t, "show set aside", m[4]),
		atoi(t, "show stopped", m[5]), atoi(t, "show refused", m[6]), atoi(t, "show in progress", m[7]), m[8]}
	return list, show
}

// reportCounts writes the batch's reports as `station report batch` does (qa.WriteBatchReportsWith, signed
// with the station's certificate) and reads the counts back: the PDF through poppler's pdftotext (cover
// and summary page), the CSV's count row, the JSON's summary.
func reportCounts(t *testing.T, inv *inventory.Store, ca *fixturestest.CA) (cover, summary, csvC, jsonC batchCounts) {
	t.Helper()
	if _, err := exec.LookPath("pdftotext"); err != nil {
		t.Fatal("pdftotext (poppler-utils) is needed to read the PDF report")
	}
	cert := ca.ClientTLS.Certificates[0]
	var chain []*x509.Certificate
	for _, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	sg := signed.Signer{Key: cert.PrivateKey.(crypto.Signer), Chain: chain}
	dir := t.TempDir()
	pdf, csvf, jsonf := filepath.Join(dir, "r.pdf"), filepath.Join(dir, "r.csv"), filepath.Join(dir, "r.json")
	if _, err := qa.WriteBatchReportsWith(context.Background(), inv, "CNT1", sg, pdf, csvf, jsonf, qa.ReportOptions{}); err != nil {
		t.Fatal(err)
	}

	txt, err := exec.Command("pdftotext", "-layout", "-enc", "UTF-8", pdf, "-").Output()
	if err != nil {
		t.Fatalf("pdftotext: %v", err)
	}
	text := string(txt)
	m := regexp.MustCompile(`done (\d+): (\d+) passed, (\d+) failed, (\d+) set aside, (\d+) in progress; yield (\S+)`).FindStringSubmatch(text)
	m2 := regexp.MustCompile(`(\d+) stopped, (\d+) refused before the inventory check`).FindStringSubmatch(text)
	if m == nil || m2 == nil {
		t.Fatalf("PDF cover has no counts:\n%s", text)
	}
	cover = batchCounts{atoi(t, "pdf done", m[1]), atoi(t, "pdf passed", m[2]), atoi(t, "pdf failed", m[3]), atoi(t, "pdf set aside", m[4]),
		atoi(t, "pdf stopped", m2[1]), atoi(t, "pdf refused", m2[2]), atoi(t, "pdf in progress", m[5]), m[6]}
	summary = unknownCounts()
	for _, f := range []struct {
		re  string
		dst *int
	}{
		{`Done\s+(\d+)/10`, &summary.Done}, {`Passed \(provisioned\)\s+(\d+)`, &summary.Passed}, {`Failed\s+(\d+)\s`, &summary.Failed},
		{`Set aside\s+(\d+) \(`, &summary.SetAside}, {`Set aside\s+\d+ \((\d+) stopped`, &summary.Stopped},
		{`Set aside\s+\d+ \(\d+ stopped, (\d+) refused\)`, &summary.Refused}, {`In progress\s+(\d+)`, &summary.InProgress},
	} {
		m := regexp.MustCompile(f.re).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("PDF summary page lacks %s:\n%s", f.re, text)
		}
		*f.dst = atoi(t, "pdf summary "+f.re, m[1])
	}
	if m := regexp.MustCompile(`Yield\s+(\S+%)`).FindStringSubmatch(text); m != nil {
		summary.Yield = m[1]
	} else {
		t.Fatalf("PDF summary page lacks the yield:\n%s", text)
	}

	b, err := os.ReadFile(csvf)
	if err != nil {
		t.Fatal(err)
	}
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatalf("report CSV: %v", err)
	}
	csvC = unknownCounts()
	for i := 0; i+1 < len(rows); i++ {
		if len(rows[i]) < 10 || rows[i][0] != "quantity" || rows[i][1] != "done" {
			continue
		}
		col := map[string]string{}
		for j, name := range rows[i] {
			if j < len(rows[i+1]) {
				col[name] = rows[i+1][j]
			}
		}
		csvC = batchCounts{atoi(t, "csv done", col["done"]), atoi(t, "csv passed", col["passed"]), atoi(t, "csv failed", col["failed"]),
			atoi(t, "csv set aside", col["set_aside"]), atoi(t, "csv stopped", col["stopped"]), atoi(t, "csv refused", col["refused"]),
			atoi(t, "csv in progress", col["in_progress"]), col["yield_percent"] + "%"}
	}
	if csvC.Done == -1 {
		t.Fatalf("report CSV has no count rows:\n%s", b)
	}

	b, err = os.ReadFile(jsonf)
	if err != nil {
		t.Fatal(err)
	}
	// The JSON's keys are snake_case; decode them by name.
	var raw struct {
		Summary map[string]any `json:"summary"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("report JSON: %v", err)
	}
	num := func(k string) int {
		v, ok := raw.Summary[k].(float64)
		if !ok {
			t.Fatalf("report JSON summary lacks %s: %v", k, raw.Summary)
		}
		return int(v)
	}
	jsonC = batchCounts{num("done"), num("provisioned"), num("failed"), num("set_aside"), num("stopped"), num("refused"), num("in_progress"), ""}
	if y, ok := raw.Summary["yield_percent"].(float64); ok {
		jsonC.Yield = strconv.FormatFloat(y, 'f', 1, 64) + "%"
	} else {
		t.Fatalf("report JSON summary has no yield: %v", raw.Summary)
	}
	return cover, summary, csvC, jsonC
}

// terminalCounts opens the real terminal (package tui) on the station and the batch, on a simulation
// screen wide enough that nothing is cut, and reads the counts from the line view's counters, the QA
// view's row for the batch and the close-batch dialog.
func terminalCounts(t *testing.T, st *station.Station) (line, qaView, closeDialog batchCounts) {
	t.Helper()
	term := startTerminal(t, st, "sim:99", 240, 50)
	waitFor := term.waitFor
	key := func(k tcell.Key) { term.key(k, 1) }

	waitFor("Continue batch CNT1")
	key(tcell.KeyEnter)
	s := waitFor("ready: scan a serial", "yield ")
	m := regexp.MustCompile(`done (\d+)/10(?: \(\d+ OVER\))?\s+passed (\d+)\s+failed (\d+)\s+set aside (\d+)\s+yield (\S+)`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("line view has no counters:\n%s", s)
	}
	line = unknownCounts()
	line.Done, line.Passed, line.Failed, line.SetAside, line.Yield = atoi(t, "line done", m[1]), atoi(t, "line passed", m[2]),
		atoi(t, "line failed", m[3]), atoi(t, "line set aside", m[4]), m[5]

	key(tcell.KeyF9)
	s = waitFor("QA: batches", "WO-CNT1")
	qaView = unknownCounts()
	for _, l := range strings.Split(s, "\n") {
		// batch product work-order state qty done passed failed set-aside in-progress yield opened
		// (a done count beyond the quantity carries an OVER mark; the box border is no field)
		f := strings.Fields(strings.ReplaceAll(strings.Trim(l, "║│ "), " OVER", ""))
		if len(f) >= 11 && f[0] == "CNT1" && f[2] == "WO-CNT1" {
			qaView.Done, qaView.Passed, qaView.Failed, qaView.SetAside, qaView.InProgress, qaView.Yield = atoi(t, "qa done", f[5]),
				atoi(t, "qa passed", f[6]), atoi(t, "qa failed", f[7]), atoi(t, "qa set aside", f[8]), atoi(t, "qa in progress", f[9]), f[10]
		}
	}
	if qaView.Done == -1 {
		t.Fatalf("QA view has no row for CNT1:\n%s", s)
	}
	key(tcell.KeyEscape)
	waitFor("ready: scan a serial")

	key(tcell.KeyF8)
	waitFor("Close batch CNT1")
	term.typeText("c")
	s = waitFor("Close batch CNT1?", "afterwards.")
	m = regexp.MustCompile(`done (\d+)/10: (\d+) passed, (\d+) failed, (\d+) set aside, (\d+) in progress, yield (\S+)\.`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("close dialog has no counts on one line:\n%s", s)
	}
	closeDialog = unknownCounts()
	closeDialog.Done, closeDialog.Passed, closeDialog.Failed, closeDialog.SetAside, closeDialog.InProgress, closeDialog.Yield =
		atoi(t, "close done", m[1]), atoi(t, "close passed", m[2]), atoi(t, "close failed", m[3]), atoi(t, "close set aside", m[4]),
		atoi(t, "close in progress", m[5]), m[6]
	key(tcell.KeyEscape) // Cancel: the batch stays open
	return line, qaView, closeDialog
}
