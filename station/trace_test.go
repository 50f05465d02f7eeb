package station_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// traceInventory logs every inventory call a run makes, with every journal op, and fails the n-th Journal
// call when told to (an inventory that goes away mid-board).
type traceInventory struct {
	station.Inventory
	mu          sync.Mutex
	log         []string
	failJournal int
}

func (t *traceInventory) add(s string) { t.mu.Lock(); t.log = append(t.log, s); t.mu.Unlock() }

func (t *traceInventory) failNth(n int) { t.mu.Lock(); t.failJournal = n; t.mu.Unlock() }

func (t *traceInventory) GetBatch(ctx context.Context, id string) (*records.Batch, error) {
	t.add("GetBatch")
	return t.Inventory.GetBatch(ctx, id)
}

func (t *traceInventory) ClaimBoard(ctx context.Context, req records.ClaimRequest) (*records.Board, error) {
	b, err := t.Inventory.ClaimBoard(ctx, req)
	t.add(fmt.Sprintf("ClaimBoard rework=%v err=%v", req.Rework, err))
	return b, err
}

func (t *traceInventory) GetBoardBySerial(ctx context.Context, s string) (*records.Board, error) {
	t.add("GetBoardBySerial")
	return t.Inventory.GetBoardBySerial(ctx, s)
}

func (t *traceInventory) ListCertificates(ctx context.Context, s string) ([]records.Certificate, error) {
	t.add("ListCertificates")
	return t.Inventory.ListCertificates(ctx, s)
}

func (t *traceInventory) MarkStopped(ctx context.Context, s, code, text string) error {
	t.add("MarkStopped " + code + " " + text)
	return t.Inventory.MarkStopped(ctx, s, code, text)
}

func (t *traceInventory) MarkFailed(ctx context.Context, s, code, text string) error {
	t.add("MarkFailed " + code + " " + text)
	return t.Inventory.MarkFailed(ctx, s, code, text)
}

func (t *traceInventory) AppendEvent(ctx context.Context, e records.Event) (*records.Event, error) {
	t.add("AppendEvent " + string(e.Kind) + " " + string(e.Payload))
	return t.Inventory.AppendEvent(ctx, e)
}

func (t *traceInventory) Journal(ctx context.Context, serial string, ops ...records.Op) error {
	t.mu.Lock()
	t.failJournal--
	inject := t.failJournal == 0
	t.mu.Unlock()
	var b strings.Builder
	for _, o := range ops {
		fmt.Fprintf(&b, "\n  op %d step=%q failed=%v detail=%q key=%q cert=%q", o.Kind, o.Step, o.Failed, o.Outcome.Detail, o.Key.Kind, o.CertKind)
	}
	err := fmt.Errorf("injected journal failure")
	if !inject {
		err = t.Inventory.Journal(ctx, serial, ops...)
	}
	t.add(fmt.Sprintf("Journal err=%v%s", err, b.String()))
	return err
}

// failingTPM fails the n-th command sent from now (a board whose TPM stops answering mid-flow).
type failingTPM struct {
	transport.TPMCloser
	n *int
}

func (f failingTPM) Send(cmd []byte) ([]byte, error) {
	*f.n--
	if *f.n == 0 {
		return nil, fmt.Errorf("injected i/o failure")
	}
	return f.TPMCloser.Send(cmd)
}

// What varies from run to run without the flow changing: times, certificate sizes (ECDSA signatures), EK
// hashes in refusal texts.
var traceNoise = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ`), "TIME"},
	{regexp.MustCompile(`\(\d+ bytes\)`), "(N bytes)"},
	{regexp.MustCompile(`EK [0-9a-f]+…`), "EK HASH…"},
}

// TestFlowTrace pins what a board's run does, in order: the events the terminal sees and every inventory
// call with every journal op, for a board whose TPM fails at each command of the flow in turn (then runs
// again, and some are reworked, failing and then not), and for boards whose inventory fails at each journal
// commit in turn (then resume, then are reworked). The golden file was made before station/flow.go was
// split into rooms, so the split is checked to have changed none of it. Rewrite it with -update after a
// deliberate change of the flow.
func TestFlowTrace(t *testing.T) {
	ctx := context.Background()
	m, err := fixtures.NewManufacturer("Sim Vendor trace")
	if err != nil {
		t.Fatal(err)
	}
	c := startCA(t, "sqlite://"+filepath.Join(t.TempDir(), "ca.db"), m.Root(), m.Intermediate())
	var (
		events []string
		inv    *traceInventory
		failAt int
	)
	st, store := newStation(t, "sqlite://"+filepath.Join(t.TempDir(), "inv.db"), c, simOpener(m), func(cfg *station.Config) {
		open := cfg.Open
		cfg.Open = func(addr string) (transport.TPMCloser, error) {
			tc, err := open(addr)
			if err != nil {
				return nil, err
			}
			return failingTPM{tc, &failAt}, nil
		}
		inv = &traceInventory{Inventory: cfg.Inventory}
		cfg.Inventory = inv
		cfg.OnEvent = func(e station.Event) {
			s := fmt.Sprintf("event %s %s", e.Kind, e.Step)
			if e.Failure != nil {
				s += " " + e.Failure.Line()
			}
			events = append(events, s)
		}
	})
	openBatch(t, store, "B1")
	var trace strings.Builder
	provision := func(job station.Job) {
		events, inv.log = nil, nil
		o := st.Provision(ctx, job)
		fmt.Fprintf(&trace, "== %s rework=%v: %s already=%v", job.Serial, job.Rework, o.State, o.Already)
		if o.Failure != nil {
			fmt.Fprintf(&trace, " %s", o.Failure.Line())
		}
		trace.WriteString("\n  steps:")
		for _, s := range o.Steps {
			trace.WriteString(" " + s.Step)
		}
		// Events and inventory calls apart: the claim and the commit ahead run beside the TPM's steps.
		fmt.Fprintf(&trace, "\n%s\n%s\n", strings.Join(events, "\n"), strings.Join(inv.log, "\n"))
	}
	for n := 1; ; n++ {
		job := station.Job{Batch: "B1", Serial: fmt.Sprintf("T-%03d", n), TPM: fmt.Sprintf("sim:%d", 1000+n)}
		failAt = n
		provision(job)
		if failAt > 0 {
			break // the run sent fewer than n commands: each one has failed once
		}
		failAt = 0
		provision(job)
		if n%7 == 0 {
			job.Rework, job.Supervisor = true, "s1"
			failAt = n
			provision(job)
			failAt = 0
			provision(job)
		}
	}
	for k := 1; k < 12; k++ {
		job := station.Job{Batch: "B1", Serial: fmt.Sprintf("J-%03d", k), TPM: fmt.Sprintf("sim:%d", 2000+k)}
		inv.failNth(k)
		provision(job)
		inv.failNth(0)
		provision(job)
		job.Rework, job.Supervisor = true, "s2"
		inv.failNth(k)
		provision(job)
		inv.failNth(0)
		provision(job)
	}
	got := trace.String()
	for _, n := range traceNoise {
		got = n.re.ReplaceAllString(got, n.with)
	}
	golden := filepath.Join("testdata", "flow_trace.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) && i < len(wl); i++ {
			if gl[i] != wl[i] {
				t.Fatalf("trace differs from %s at line %d:\n got %s\nwant %s", golden, i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("trace has %d lines, %s %d", len(gl), golden, len(wl))
	}
}
