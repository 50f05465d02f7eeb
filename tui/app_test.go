package tui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station/progress"
)

// fakeStation plays the station for the screen tests (the real one runs in the tmux end-to-end test in
// cmd/station). Serials starting "CLONE" fail as a cloned TPM; "HOLD" runs until aborted.
type fakeStation struct {
	mu      sync.Mutex
	events  func(progress.Event)
	batches []records.BatchSummary
	jobs    []progress.Job
	closed  []string
}

func (f *fakeStation) ID() string { return "st1" }

// CheckSerial refuses only what every profile refuses; the product patterns are station's, tested there.
func (f *fakeStation) CheckSerial(_, serial string) error {
	if serial == "" {
		return errors.New("empty serial")
	}
	return nil
}

func (f *fakeStation) Provision(ctx context.Context, job progress.Job) *progress.Outcome {
	f.mu.Lock()
	f.jobs = append(f.jobs, job)
	f.mu.Unlock()
	emit := func(e progress.Event) {
		e.Slot, e.Serial, e.Batch, e.Time = job.Slot, job.Serial, job.Batch, t0
		f.events(e)
	}
	emit(progress.Event{Kind: progress.EvStarted})
	for _, step := range progress.Steps[:7] {
		emit(progress.Event{Kind: progress.EvStep, Step: step})
		emit(progress.Event{Kind: progress.EvStepDone, Step: step})
	}
	var fail *progress.Failure
	switch {
	case strings.HasPrefix(job.Serial, "CLONE"):
		fail = &progress.Failure{Code: progress.ReasonClone, Text: "EK already bound to serial SN-1",
			Next: "set the board aside for QA", Stop: true}
	case strings.HasPrefix(job.Serial, "TPMERR"):
		fail = &progress.Failure{Code: progress.ReasonTPMError,
			Text: "TPM_RC_FAILURE from TPM2_CreatePrimary (EK, RSA-2048) at relay://slot1: the TPM is in failure mode",
			Next: "retry the board (F3); if it fails again set it aside for QA"}
	case strings.HasPrefix(job.Serial, "HOLD"):
		emit(progress.Event{Kind: progress.EvStep, Step: progress.Steps[10]})
		<-ctx.Done()
		fail = &progress.Failure{Code: progress.ReasonCAUnreachable, Text: "context canceled", Next: "check the CA link, then retry the board"}
	}
	f.mu.Lock()
	for i := range f.batches {
		if f.batches[i].ID == job.Batch {
			f.batches[i].Done++
			if fail == nil {
				f.batches[i].Passed++
			} else if fail.Code == progress.ReasonClone {
				// A clone is refused before it has a record, as the inventory refuses it.
				f.batches[i].Refused++
			} else if fail.Stop {
				f.batches[i].Stopped++
			} else {
				f.batches[i].Failed++
			}
		}
	}
	f.mu.Unlock()
	if fail != nil {
		emit(progress.Event{Kind: progress.EvFailed, Failure: fail, Elapsed: 1200 * time.Millisecond})
		return &progress.Outcome{Serial: job.Serial, Failure: fail}
	}
	emit(progress.Event{Kind: progress.EvPassed, Elapsed: 4 * time.Second})
	return &progress.Outcome{Serial: job.Serial, State: records.StateProvisioned}
}

func (f *fakeStation) OpenBatch(_ context.Context, nb records.NewBatch) (*records.Batch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.batches {
		if b.ID == nb.ID {
			return nil, fmt.Errorf("%w: batch %s was opened before; pick another batch id", records.ErrBatchExists, nb.ID)
		}
	}
	b := records.Batch{ID: nb.ID, Product: nb.Product, WorkOrder: nb.WorkOrder, Quantity: nb.Quantity, Operator: nb.Operator,
		Station: "st1", State: "open", OpenedAt: t0}
	f.batches = append(f.batches, records.BatchSummary{Batch: b})
	return &b, nil
}

func (f *fakeStation) CloseBatch(_ context.Context, id string) (*records.Batch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.batches {
		if f.batches[i].ID == id {
			f.batches[i].State = "closed"
			f.closed = append(f.closed, id)
			b := f.batches[i].Batch
			return &b, nil
		}
	}
	return nil, records.ErrBatchNotFound
}

func (f *fakeStation) ListBatches(_ context.Context, state string) ([]records.BatchSummary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []records.BatchSummary
	for _, b := range f.batches {
		if state == "" || b.State == state {
			out = append(out, b)
		}
	}
	return out, nil
}

func (f *fakeStation) GetBatch(_ context.Context, id string) (*records.Batch, error) {
	return nil, errors.New("unused")
}

// fakeFixture has four slots; it counts new parts and clones.
type fakeFixture struct {
	mu     sync.Mutex
	parts  map[int]int
	clones int
}

func (f *fakeFixture) Slots() []int        { return []int{1, 2, 3, 4} }
func (f *fakeFixture) TPM(slot int) string { return fmt.Sprintf("relay://slot%d", slot) }
func (f *fakeFixture) NewPart(_ context.Context, slot int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.parts == nil {
		f.parts = map[int]int{}
	}
	f.parts[slot]++
	return nil
}
func (f *fakeFixture) ClonePart(_ context.Context, slot int) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clones++
	return "clone of the TPM provisioned as SN-1", nil
}

// harness runs the terminal on an 80x24 simulation screen.
type harness struct {
	t      *testing.T
	screen tcell.SimulationScreen
	app    *App
	st     *fakeStation
	fx     *fakeFixture
	done   chan error
}

func start(t *testing.T, operator string, batches ...records.BatchSummary) *harness {
	t.Helper()
	return startSized(t, 80, 24, operator, batches...)
}

func startSized(t *testing.T, w, ht int, operator string, batches ...records.BatchSummary) *harness {
	t.Helper()
	st := &fakeStation{batches: batches}
	fx := &fakeFixture{}
	app := New(Config{Station: st, Fixture: fx, Title: "station st1", Operator: operator, Now: func() time.Time { return t0 }, Tick: -1})
	st.events = app.Event
	scr := tcell.NewSimulationScreen("UTF-8")
	h := &harness{t: t, screen: scr, app: app, st: st, fx: fx, done: make(chan error, 1)}
	app.SetScreen(scr)
	scr.SetSize(w, ht)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- app.Run(ctx, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Error("the terminal did not stop")
		}
	})
	return h
}

// text is the screen as lines of plain text (ScreenText).
func (h *harness) text() string { return ScreenText(h.app, h.screen) }

// waitFor polls the screen until every want shows (bounded), and returns the screen.
func (h *harness) waitFor(want ...string) string {
	h.t.Helper()
	deadline := clock.Now().Add(5 * time.Second)
	for {
		s := h.text()
		missing := ""
		for _, w := range want {
			if !strings.Contains(s, w) {
				missing = w
				break
			}
		}
		if missing == "" && strings.TrimSpace(s) != "" {
			return s
		}
		if clock.Now().After(deadline) {
			h.t.Fatalf("screen never showed %q:\n%s", missing, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) typeText(s string) {
	for _, r := range s {
		h.screen.InjectKey(tcell.KeyRune, r, tcell.ModNone)
	}
}

func (h *harness) key(k tcell.Key) { h.screen.InjectKey(k, 0, tcell.ModNone) }

func (h *harness) scan(serial string) {
	h.typeText(serial)
	h.key(tcell.KeyEnter)
}

func openBatch(id string, qty int) records.BatchSummary {
	return records.BatchSummary{Batch: records.Batch{ID: id, Product: "default", WorkOrder: "WO-" + id, Quantity: qty,
		Station: "st1", State: "open", OpenedAt: t0}}
}

func TestSignInAndOpenBatch(t *testing.T) {
	h := start(t, "")
	h.waitFor("Sign in", "Scan your badge")
	h.scan("ANA-7")
	h.waitFor("Operator ANA-7", "Open a new batch")
	h.typeText("n")
	h.waitFor("Open a batch", "Batch ID")
	// Batch ID is prefilled; the product stays "default"; type the work order and the quantity.
	h.key(tcell.KeyTab)
	h.key(tcell.KeyTab)
	h.typeText("WO-9")
	h.key(tcell.KeyTab)
	h.typeText("12")
	h.key(tcell.KeyTab)
	h.key(tcell.KeyEnter)
	s := h.waitFor("batch B-20260302-0800", "WO WO-9", "done 0/12", "operator ANA-7", "ready: scan a serial")
	if !strings.Contains(s, "▶ Slot 1") {
		t.Errorf("slot 1 is not marked focused:\n%s", s)
	}
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	if len(h.st.batches) != 1 || h.st.batches[0].Operator != "ANA-7" || h.st.batches[0].Quantity != 12 {
		t.Errorf("opened batch %+v", h.st.batches)
	}
}

// TestLineViewScanPassFail drives the line view as a scanner and an operator would, and compares the
// final 80x24 screen with a golden dump.
func TestLineViewScanPassFail(t *testing.T) {
	h := start(t, "ana", openBatch("B1", 4))
	h.waitFor("Continue batch B1")
	h.key(tcell.KeyEnter)
	h.waitFor("batch B1", "ready: scan a serial")
	h.scan("SN-1")
	h.waitFor("PASS")
	h.scan("SN-2")
	h.waitFor("SN-2", "done 2/4")
	// A scan goes to the focused slot when free (slot 1 passed), so move to slot 3 and scan a clone there.
	h.key(tcell.KeyTab)
	h.key(tcell.KeyTab)
	h.scan("CLONE-3")
	s := h.waitFor("FAIL · ek_bound_to_other_serial", "EK already bound to serial SN-1", "→ set the board aside for QA", "done 3/4",
		"passed 2", "failed 0", "set aside 1", "yield 66.7%")
	golden(t, "line_80x24.golden", s)
	h.st.mu.Lock()
	slots := []int{}
	for _, j := range h.st.jobs {
		slots = append(slots, j.Slot)
	}
	h.st.mu.Unlock()
	if fmt.Sprint(slots) != "[1 2 3]" {
		t.Errorf("serials went to slots %v, want [1 2 3]", slots)
	}
	// Retry of a set-aside board is refused; the rework asks for a supervisor.
	h.key(tcell.KeyF3)
	h.waitFor("retry refused: CLONE-3 is set aside")
	h.key(tcell.KeyF5)
	h.waitFor("Rework CLONE-3", "Supervisor badge")
	h.typeText("SUP-1")
	h.key(tcell.KeyTab)
	h.key(tcell.KeyEnter)
	h.waitFor("CLONE-3 (rework)")
	// The job reaches the station from the slot's goroutine: wait for it.
	var last progress.Job
	for deadline := clock.Now().Add(5 * time.Second); clock.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		h.st.mu.Lock()
		last = h.st.jobs[len(h.st.jobs)-1]
		h.st.mu.Unlock()
		if last.Rework {
			break
		}
	}
	if !last.Rework || last.Serial != "CLONE-3" || last.Slot != 3 {
		t.Errorf("rework job %+v", last)
	}
}

func TestAbortAndQuitAsks(t *testing.T) {
	h := start(t, "ana", openBatch("B1", 0))
	h.waitFor("Continue batch B1")
	h.key(tcell.KeyEnter)
	h.waitFor("ready: scan a serial")
	h.scan("HOLD-1")
	h.waitFor("step 10/16", "running 1")
	h.key(tcell.KeyF10)
	h.waitFor("1 board(s) are running", "Keep working")
	h.key(tcell.KeyEnter) // Keep working
	h.waitFor("step 10/16")
	h.key(tcell.KeyF4)
	h.waitFor("FAIL · ca_unreachable", "abort asked by operator ana", "running 0")
	// F3 retries the same serial on the same board, no new part.
	parts := func() int { h.fx.mu.Lock(); defer h.fx.mu.Unlock(); return h.fx.parts[1] }
	before := parts()
	h.key(tcell.KeyF3)
	h.waitFor("HOLD-1  retry", "running 1")
	if parts() != before {
		t.Error("retry put a new part in")
	}
	h.key(tcell.KeyF4)
	h.waitFor("running 0")
	// Nothing running: F10 quits at once.
	h.key(tcell.KeyF10)
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatal(err)
		}
		h.done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("F10 with nothing running did not quit")
	}
}

func TestCloneClearAndCloseBatch(t *testing.T) {
	h := start(t, "ana", openBatch("B1", 1))
	h.waitFor("Continue batch B1")
	h.key(tcell.KeyEnter)
	h.waitFor("ready: scan a serial")
	h.scan("SN-1")
	h.waitFor("PASS", "batch B1 complete")
	h.key(tcell.KeyF7)
	h.waitFor("clone of the TPM provisioned as SN-1")
	h.key(tcell.KeyF6)
	h.waitFor("slot 1  cleared: next board")
	h.key(tcell.KeyF8)
	h.waitFor("Close batch B1")
	h.typeText("c")
	h.waitFor("Close batch B1?", "done 1/1: 1 passed")
	h.key(tcell.KeyRight) // to "Close batch"
	h.key(tcell.KeyEnter)
	h.waitFor("Batch B1 is closed: open the next batch")
	h.st.mu.Lock()
	closed := fmt.Sprint(h.st.closed)
	h.st.mu.Unlock()
	if closed != "[B1]" {
		t.Errorf("closed %s", closed)
	}
	h.fx.mu.Lock()
	defer h.fx.mu.Unlock()
	if h.fx.clones != 1 || h.fx.parts[1] < 2 {
		t.Errorf("fixture calls: clones %d, parts %v", h.fx.clones, h.fx.parts)
	}
	// A closed batch takes no scans.
}

func TestQAAndHelp(t *testing.T) {
	b2 := openBatch("B2", 10)
	b2.Done, b2.Passed, b2.Failed = 4, 3, 1
	h := start(t, "ana", openBatch("B1", 4), b2)
	h.waitFor("Continue batch B1")
	h.key(tcell.KeyEnter)
	h.waitFor("ready: scan a serial")
	h.typeText("?")
	h.waitFor("Help", "F3                 retry")
	h.key(tcell.KeyEscape)
	h.waitFor("ready: scan a serial")
	h.key(tcell.KeyF9)
	s := h.waitFor("QA: batches", "2 batches", "B2", "75.0%")
	if !strings.Contains(s, "B1") {
		t.Errorf("QA view lacks B1:\n%s", s)
	}
	h.key(tcell.KeyEnter)
	h.waitFor("batch reports are not available in this build yet")
	h.key(tcell.KeyEscape)
	h.waitFor("ready: scan a serial")
}

func TestScanRefusals(t *testing.T) {
	h := start(t, "ana")
	h.waitFor("Open a new batch")
	h.key(tcell.KeyEscape)
	h.waitFor("choose or open a batch first")
}

// TestFailPanelAt100Columns: at 100x24 a FAIL panel shows the next action whole, however long the reason
// (issue 17 point 11), and the key line keeps F10 quit.
func TestFailPanelAt100Columns(t *testing.T) {
	h := startSized(t, 100, 24, "ana", openBatch("B-20261203-1915", 8))
	h.waitFor("Continue batch B-20261203-1915")
	h.key(tcell.KeyEnter)
	h.waitFor("ready: scan a serial")
	h.scan("TPMERR-1")
	s := h.waitFor("FAIL · tpm_error", "→ retry the board (F3); if it fails again set", "it aside for QA", "F10 quit", "done 1/8  passed 0  failed 1", "the TPM is in failure mode")
	if strings.Contains(s, "aside for…") {
		t.Errorf("the next action is cut:\n%s", s)
	}
	golden(t, "fail_100x24.golden", s)
}

// TestEventLineKeepsQuantity: the event log at 80 columns shows a new batch's quantity.
func TestEventLineKeepsQuantity(t *testing.T) {
	h := start(t, "ana")
	h.waitFor("Open a new batch")
	h.typeText("n")
	h.waitFor("Open a batch", "Batch ID")
	h.key(tcell.KeyTab)
	h.key(tcell.KeyTab)
	h.typeText("WORK-ORDER-2026-000123")
	h.key(tcell.KeyTab)
	h.typeText("8")
	h.key(tcell.KeyTab)
	h.key(tcell.KeyEnter)
	h.waitFor("batch B-20260302-0800 opened, quantity 8", "done 0/8")
}
