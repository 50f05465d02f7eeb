package tui

import (
	"fmt"
	"time"

	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station/progress"
)

// slotStatus is where a slot stands, as the operator sees it.
type slotStatus int

const (
	slotLoading  slotStatus = iota // a board is being put into the fixture
	slotNoBoard                    // putting the board in failed (Message says why)
	slotReady                      // a board waits for its serial
	slotRunning                    // provisioning
	slotAborting                   // abort asked, waiting for the flow to stop
	slotPassed
	slotFailed
	slotRetiring // an RMA or a deprovision runs (revoke at the CA, clear the TPM)
)

// slotState is one slot's panel, derived from the station's events and the run's outcome.
type slotState struct {
	ID       int
	Status   slotStatus
	Serial   string
	Step     string
	Done     int // steps finished, for the progress bar
	Started  time.Time
	Elapsed  time.Duration // final time once the board ended
	Failure  *progress.Failure
	Rework   bool
	Note     string // about the board in the fixture ("clone of the part provisioned as SN-3")
	Message  string // why the fixture has no board
	Used     bool   // the board went through a run: the next serial needs a new part
	Ended    time.Time
	Run      int    // increases with every run started in this slot
	Aborted  bool   // the operator aborted the current run
	LastStep string // the step the board was at when it ended
}

// steps are the steps the slot's board goes through, as its journal lists them (progress.BoardSteps).
func (s *slotState) steps() []string { return progress.BoardSteps(s.Rework) }

// free says whether a new serial may go into the slot.
func (s *slotState) free() bool {
	switch s.Status {
	case slotReady, slotPassed, slotFailed:
		return true
	}
	return false
}

func (s *slotState) busy() bool {
	return s.Status == slotRunning || s.Status == slotAborting || s.Status == slotLoading || s.Status == slotRetiring
}

// lineModel is the line view's state: the slots, the focused one, the batch and this session's cycle times.
// Only the UI goroutine touches it.
type lineModel struct {
	slots    []*slotState
	focus    int // index into slots
	operator string
	batch    *records.BatchSummary // nil until a batch is chosen
	// cycles are the passed boards' times in this session; first and last bound the session's work.
	cycles      []time.Duration
	first, last time.Time
}

func newLineModel(ids []int) *lineModel {
	m := &lineModel{}
	for _, id := range ids {
		m.slots = append(m.slots, &slotState{ID: id, Status: slotLoading})
	}
	return m
}

// slot returns the slot with the given ID, or nil.
func (m *lineModel) slot(id int) *slotState {
	for _, s := range m.slots {
		if s.ID == id {
			return s
		}
	}
	return nil
}

func (m *lineModel) focused() *slotState {
	if len(m.slots) == 0 {
		return nil
	}
	return m.slots[m.focus]
}

func (m *lineModel) moveFocus(d int) {
	n := len(m.slots)
	if n == 0 {
		return
	}
	m.focus = ((m.focus+d)%n + n) % n
}

// running counts the slots with a board in progress.
func (m *lineModel) running() int {
	n := 0
	for _, s := range m.slots {
		if s.Status == slotRunning || s.Status == slotAborting {
			n++
		}
	}
	return n
}

// serialIn returns the slot where serial is running, or nil.
func (m *lineModel) serialIn(serial string) *slotState {
	for _, s := range m.slots {
		if s.Serial == serial && (s.Status == slotRunning || s.Status == slotAborting) {
			return s
		}
	}
	return nil
}

// pickSlot chooses where a scanned serial goes: a slot with a fresh board waiting (the focused one first,
// then in slot order), so scans fill the fixture; then the focused slot if its board ended (the operator put
// the next board there); then the slot whose board passed longest ago. A failed slot is only reused when
// focused, so a failure is never cleared by a scan aimed elsewhere.
func (m *lineModel) pickSlot() (*slotState, error) {
	f := m.focused()
	if f != nil && f.Status == slotReady {
		return f, nil
	}
	for _, s := range m.slots {
		if s.Status == slotReady {
			return s, nil
		}
	}
	if f != nil && f.free() {
		return f, nil
	}
	var best *slotState
	for _, s := range m.slots {
		if s.Status == slotPassed && (best == nil || s.Ended.Before(best.Ended)) {
			best = s
		}
	}
	if best != nil {
		return best, nil
	}
	return nil, fmt.Errorf("no free slot: wait for a board to finish, or move to a failed slot (Tab) and clear it (F6)")
}

// apply folds one station event into the model and returns the event log line for it ("" for none).
func (m *lineModel) apply(e progress.Event) string {
	s := m.slot(e.Slot)
	if s == nil || (e.Serial != "" && s.Serial != "" && e.Serial != s.Serial) {
		// An event for a slot this terminal does not show (another terminal's, or a stale run).
		return ""
	}
	switch e.Kind {
	case progress.EvStarted:
		if s.Status != slotAborting {
			s.Status = slotRunning
		}
		if s.Started.IsZero() {
			s.Started = e.Time
		}
		if m.first.IsZero() || e.Time.Before(m.first) {
			m.first = e.Time
		}
		what := "started"
		if s.Rework {
			what = "started (rework)"
		}
		return fmt.Sprintf("slot %d  %s  %s", e.Slot, e.Serial, what)
	case progress.EvStep:
		s.Step = e.Step
		if e.Step == progress.StepRecord {
			// Recording is the board's end state, not a journaled step: every step is done.
			s.Done = len(s.steps())
		} else if i := progress.StepIndexIn(s.steps(), e.Step); i >= 0 && i > s.Done {
			s.Done = i
		}
	case progress.EvStepDone:
		if i := progress.StepIndexIn(s.steps(), e.Step); i >= 0 && i+1 > s.Done {
			s.Done = i + 1
		}
	case progress.EvPassed:
		s.Status, s.Done, s.Elapsed, s.Ended, s.Failure = slotPassed, len(s.steps()), e.Elapsed, e.Time, nil
		s.LastStep, s.Step = s.Step, ""
		m.cycles = append(m.cycles, e.Elapsed)
		if e.Time.After(m.last) {
			m.last = e.Time
		}
		return fmt.Sprintf("slot %d  %s  PASS  %s", e.Slot, e.Serial, records.FormatDuration(e.Elapsed))
	case progress.EvFailed:
		s.Status, s.Elapsed, s.Ended, s.Failure = slotFailed, e.Elapsed, e.Time, e.Failure
		s.LastStep, s.Step = s.Step, ""
		if e.Time.After(m.last) {
			m.last = e.Time
		}
		line := "failed"
		if e.Failure != nil {
			line = e.Failure.Code + ": " + e.Failure.Text
		}
		return fmt.Sprintf("slot %d  %s  FAIL  %s", e.Slot, e.Serial, line)
	}
	return ""
}

// finish applies a run's outcome once Provision returned: the authority on how the board ended, for the
// runs that ended before any event (a slot the station found busy) and for aborted runs.
func (m *lineModel) finish(slot, run int, out *progress.Outcome, now time.Time) string {
	s := m.slot(slot)
	if s == nil || s.Run != run || (s.Status != slotRunning && s.Status != slotAborting) {
		return ""
	}
	e := progress.Event{Time: now, Kind: progress.EvPassed, Slot: slot, Serial: s.Serial, Elapsed: out.Duration}
	if out.Failure != nil {
		e.Kind, e.Failure = progress.EvFailed, out.Failure
	}
	return m.apply(e)
}

// Counters are the line view's numbers: the batch's counts come from the inventory (every station that
// works on the batch) by the one definition (records.Counts), the figures from this session's events.
type Counters struct {
	records.Counts
	Figures records.Figures
}

// counters computes the line view's counters.
func (m *lineModel) counters() Counters {
	var c Counters
	if b := m.batch; b != nil {
		c.Counts = b.Counts()
	}
	var span time.Duration
	if !m.first.IsZero() && m.last.After(m.first) {
		span = m.last.Sub(m.first)
	}
	c.Figures = records.LineFigures(m.cycles, span)
	return c
}
