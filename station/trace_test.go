package station_test

import (
	"context"
	"encoding/json"
	"errors"
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
	t.add(fmt.Sprintf("ClaimBoard rework=%v err=%v", req.Rework, classOf(err)))
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
	t.add("MarkStopped " + code)
	return t.Inventory.MarkStopped(ctx, s, code, text)
}

func (t *traceInventory) MarkFailed(ctx context.Context, s, code, text string) error {
	t.add("MarkFailed " + code)
	return t.Inventory.MarkFailed(ctx, s, code, text)
}

func (t *traceInventory) AppendEvent(ctx context.Context, e records.Event) (*records.Event, error) {
	var p map[string]any
	_ = json.Unmarshal(e.Payload, &p)
	delete(p, "text") // what a person reads; the codes are what the flow decides
	b, _ := json.Marshal(p)
	t.add("AppendEvent " + string(e.Kind) + " " + string(b))
	return t.Inventory.AppendEvent(ctx, e)
}

func (t *traceInventory) Journal(ctx context.Context, serial string, ops ...records.Op) error {
	t.mu.Lock()
	t.failJournal--
	inject := t.failJournal == 0
	t.mu.Unlock()
	var b strings.Builder
	for _, o := range ops {
		code, _, _ := strings.Cut(o.Outcome.Detail, ":")
		fmt.Fprintf(&b, "\n  op %d step=%q failed=%v code=%q key=%q cert=%q", o.Kind, o.Step, o.Failed, code, o.Key.Kind, o.CertKind)
	}
	err := fmt.Errorf("injected journal failure")
	if !inject {
		err = t.Inventory.Journal(ctx, serial, ops...)
	}
	t.add(fmt.Sprintf("Journal err=%v%s", err != nil, b.String()))
	return err
}

// classOf names an inventory error by its type, not its text.
func classOf(err error) string {
	if err == nil {
		return "nil"
	}
	for _, e := range []error{records.ErrAlreadyProvisioned, records.ErrBoardStopped} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return fmt.Sprintf("%T", err)
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

// What varies from run to run without the flow changing (times, certificate sizes, EK hashes), should a
// text slip into the trace.
var traceNoise = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ`), "TIME"},
	{regexp.MustCompile(`\(\d+ bytes\)`), "(N bytes)"},
	{regexp.MustCompile(`EK [0-9a-f]+…`), "EK HASH…"},
}

// TestFlowTrace pins what a board's run does, in order: the events the terminal sees and every inventory
// call with every journal op (failures by reason code), for boards whose TPM fails right after each step
// boundary in turn (then runs again; some are reworked, failing and then not), and for boards whose
// inventory fails at each journal commit in turn (then resume, then are reworked). The golden file was made before station/flow.go was
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
		// failAtFault names a step boundary ("issue:mid"); the TPM fails the first command sent after it.
		failAtFault string
		failNext    int
	)
	st, store := newStation(t, "sqlite://"+filepath.Join(t.TempDir(), "inv.db"), c, simOpener(m), func(cfg *station.Config) {
		open := cfg.Open
		cfg.Open = func(addr string) (transport.TPMCloser, error) {
			tc, err := open(addr)
			if err != nil {
				return nil, err
			}
			return failingTPM{tc, &failNext}, nil
		}
		inv = &traceInventory{Inventory: cfg.Inventory}
		cfg.Inventory = inv
		cfg.Fault = func(step, phase string) {
			if step+":"+phase == failAtFault {
				failNext = 1
			}
		}
		cfg.OnEvent = func(e station.Event) {
			s := fmt.Sprintf("event %s %s", e.Kind, e.Step)
			if e.Failure != nil {
				s += " " + e.Failure.Code
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
			fmt.Fprintf(&trace, " %s", o.Failure.Code)
		}
		trace.WriteString("\n  steps:")
		for _, s := range o.Steps {
			trace.WriteString(" " + s.Step)
		}
		// Events and inventory calls apart: the claim and the commit ahead run beside the TPM's steps.
		fmt.Fprintf(&trace, "\n%s\n%s\n", strings.Join(events, "\n"), strings.Join(inv.log, "\n"))
	}
	var faults []string
	for _, step := range station.Steps {
		faults = append(faults, step+":before") // after a step is before the next, for the TPM
	}
	faults = append(faults, "issue:mid", "persist:mid", "nv-write:mid")
	for i, fault := range faults {
		job := station.Job{Batch: "B1", Serial: fmt.Sprintf("T-%03d", i), TPM: fmt.Sprintf("sim:%d", 1000+i)}
		fmt.Fprintf(&trace, "# the TPM fails after %s\n", fault)
		failAtFault = fault
		provision(job)
		failAtFault, failNext = "", 0
		provision(job)
		if i%4 == 0 {
			job.Rework, job.Supervisor = true, "s1"
			failAtFault = fault
			provision(job)
			failAtFault, failNext = "", 0
			provision(job)
		}
	}
	for k := 1; k <= 6; k++ { // a run commits at most 5 times
		job := station.Job{Batch: "B1", Serial: fmt.Sprintf("J-%03d", k), TPM: fmt.Sprintf("sim:%d", 2000+k)}
		fmt.Fprintf(&trace, "# the inventory fails commit %d\n", k)
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
