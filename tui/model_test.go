package tui

import (
	"strings"
	"testing"
	"time"

	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station/progress"
)

var t0 = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

func ev(kind progress.EventKind, slot int, serial, step string, at time.Duration) progress.Event {
	return progress.Event{Time: t0.Add(at), Kind: kind, Slot: slot, Serial: serial, Step: step}
}

func TestApplyEvents(t *testing.T) {
	m := newLineModel([]int{1, 2})
	m.slots[0].Status, m.slots[0].Serial = slotRunning, "SN1"
	m.slots[1].Status, m.slots[1].Serial = slotRunning, "SN2"

	if line := m.apply(ev(progress.EvStarted, 1, "SN1", "", 0)); !strings.Contains(line, "SN1") || !strings.Contains(line, "started") {
		t.Errorf("started line %q", line)
	}
	m.apply(ev(progress.EvStep, 1, "SN1", progress.StepClaim, time.Second))
	s := m.slot(1)
	if s.Step != progress.StepClaim || s.Done != progress.StepIndexIn(progress.BoardSteps(false), progress.StepClaim) {
		t.Errorf("after step: step %q done %d", s.Step, s.Done)
	}
	m.apply(ev(progress.EvStepDone, 1, "SN1", progress.StepClaim, 2*time.Second))
	if s.Done != progress.StepIndexIn(progress.BoardSteps(false), progress.StepClaim)+1 {
		t.Errorf("after step done: done %d", s.Done)
	}
	// The bar counts the steps the board's journal lists (board show), not every name in progress.Steps.
	if n := len(progress.BoardSteps(false)); n != 16 {
		t.Errorf("a board has %d steps, board show lists 16", n)
	}
	// An event naming another serial (a stale run) changes nothing.
	m.apply(ev(progress.EvPassed, 1, "OTHER", "", 3*time.Second))
	if s.Status != slotRunning {
		t.Fatalf("stale event ended the slot: %v", s.Status)
	}
	pass := ev(progress.EvPassed, 1, "SN1", "", 10*time.Second)
	pass.Elapsed = 10 * time.Second
	if line := m.apply(pass); !strings.Contains(line, "PASS") {
		t.Errorf("pass line %q", line)
	}
	if s.Status != slotPassed || s.Done != len(progress.BoardSteps(false)) || s.LastStep != progress.StepClaim {
		t.Errorf("after pass: %+v", s)
	}
	m.apply(ev(progress.EvStarted, 2, "SN2", "", 1*time.Second))
	fail := ev(progress.EvFailed, 2, "SN2", "", 4*time.Second)
	fail.Elapsed = 3 * time.Second
	fail.Failure = &progress.Failure{Code: progress.ReasonClone, Text: "EK already bound to serial SN1", Next: "set the board aside for QA", Stop: true}
	if line := m.apply(fail); !strings.Contains(line, "FAIL") || !strings.Contains(line, "EK already bound to serial SN1") {
		t.Errorf("fail line %q", line)
	}
	if m.slot(2).Status != slotFailed || m.slot(2).Failure.Code != progress.ReasonClone {
		t.Errorf("slot 2 after fail: %+v", m.slot(2))
	}
	m.batch = &records.BatchSummary{Batch: records.Batch{ID: "B", Quantity: 10}, Done: 2, Passed: 1, Failed: 0, Stopped: 1}
	c := m.counters()
	if c.Done != 2 || c.Passed != 1 || c.Stopped != 1 || !c.HasYield || c.Yield != 50 {
		t.Errorf("counters %+v", c)
	}
	// One pass in the session, 10 s of work: too little for a rate or a median (issue 15: never a figure
	// from one sample).
	if c.Figures.OK || c.Figures.RateText() != "- u/h" || c.Figures.MedianText() != "median -" {
		t.Errorf("figures from one board: %+v", c.Figures)
	}
	// Five passes: the figures show.
	for i := 0; i < 4; i++ {
		m.cycles = append(m.cycles, 10*time.Second)
	}
	m.last = t0.Add(50 * time.Second)
	if c := m.counters(); !c.Figures.OK || c.Figures.RateText() != "360 u/h" || c.Figures.MedianText() != "median 10.0 s" {
		t.Errorf("figures from five boards: %+v", c.Figures)
	}
}

func TestFinishCoversRunsWithoutEvents(t *testing.T) {
	m := newLineModel([]int{1})
	s := m.slot(1)
	s.Status, s.Serial, s.Run = slotRunning, "SN1", 3
	out := &progress.Outcome{Failure: &progress.Failure{Code: progress.ReasonSlotBusy, Text: "slot 1 is busy"}}
	if line := m.finish(1, 2, out, t0); line != "" || s.Status != slotRunning {
		t.Fatalf("an older run's outcome was applied: %q %v", line, s.Status)
	}
	if line := m.finish(1, 3, out, t0); !strings.Contains(line, "slot_busy") || s.Status != slotFailed {
		t.Fatalf("outcome not applied: %q %v", line, s.Status)
	}
	// Once the events ended the board, the outcome adds nothing.
	if line := m.finish(1, 3, out, t0); line != "" {
		t.Fatalf("outcome applied twice: %q", line)
	}
}

func TestPickSlot(t *testing.T) {
	m := newLineModel([]int{1, 2, 3})
	set := func(st ...slotStatus) {
		for i, x := range st {
			m.slots[i].Status = x
		}
	}
	pick := func() int {
		t.Helper()
		s, err := m.pickSlot()
		if err != nil {
			return 0
		}
		return s.ID
	}
	set(slotReady, slotReady, slotReady)
	if got := pick(); got != 1 {
		t.Errorf("all ready, focus 1: got %d", got)
	}
	set(slotRunning, slotReady, slotReady)
	if got := pick(); got != 2 {
		t.Errorf("focused busy: got %d, want the first ready slot 2", got)
	}
	m.focus = 2
	set(slotRunning, slotReady, slotFailed)
	if got := pick(); got != 2 {
		t.Errorf("a fresh board comes before the focused failed slot: got %d", got)
	}
	set(slotRunning, slotRunning, slotFailed)
	if got := pick(); got != 3 {
		t.Errorf("focused failed slot is reused: got %d", got)
	}
	set(slotReady, slotRunning, slotReady)
	if got := pick(); got != 3 {
		t.Errorf("the focused fresh board comes first: got %d", got)
	}
	m.focus = 0
	set(slotRunning, slotFailed, slotPassed)
	m.slots[2].Ended = t0
	if got := pick(); got != 3 {
		t.Errorf("a failed slot is not reused unless focused: got %d, want 3", got)
	}
	set(slotRunning, slotPassed, slotPassed)
	m.slots[1].Ended, m.slots[2].Ended = t0.Add(time.Minute), t0
	if got := pick(); got != 3 {
		t.Errorf("oldest passed slot: got %d, want 3", got)
	}
	set(slotRunning, slotFailed, slotLoading)
	if _, err := m.pickSlot(); err == nil {
		t.Error("no free slot must be an error")
	}
}
