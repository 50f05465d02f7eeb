package station

import (
	"context"
	"errors"
	"fmt"

	"github.com/tpmline/tpmline/records"
)

// StepLister is what reconciling reads of a board's journal to say why it was left in progress
// (*inventory.Store implements it). Without it the cause is the step the board was in.
type StepLister interface {
	ListSteps(ctx context.Context, serial string) ([]records.Step, error)
}

// Reconciled is what reconcile found of one board this station had left in progress, and what it did.
// Exactly one of Resumed, Closed and NotReached is set.
type Reconciled struct {
	Board *records.Board // as found: batch, slot, the step it was in
	// Cause is why the board was left in progress, from its journal: the step that met a service outage
	// and what that step reported, or the step the station stopped in (a crash, a power cut, a kill).
	Cause string
	// Resumed is the outcome of running the board again on its slot's TPM.
	Resumed *Outcome
	// Closed is the failure the board was marked with because its slot has no TPM here.
	Closed *Failure
	// NotReached: reconcile stopped (Ctrl-C) before this board; it is still in progress.
	NotReached bool
}

// ReconcileReport is Reconcile, board by board: what it found (each board left in progress, with the true
// cause) and what it did. A cancelled ctx stops it between boards: the rest are reported NotReached and
// stay in progress for the next run.
func (s *Station) ReconcileReport(ctx context.Context, slots map[int]string) ([]Reconciled, error) {
	ip, ok := s.cfg.Inventory.(InProgress)
	if !ok {
		return nil, errors.New("station: the inventory cannot list boards in progress")
	}
	boards, err := ip.ListInProgress(context.WithoutCancel(ctx), s.cfg.StationID)
	if err != nil {
		return nil, fmt.Errorf("listing boards left in progress: %w", err)
	}
	var rep []Reconciled
	for _, b := range boards {
		r := Reconciled{Board: b, Cause: s.leftCause(ctx, b)}
		if ctx.Err() != nil {
			r.NotReached = true
			rep = append(rep, r)
			continue
		}
		addr, ok := slots[b.Slot]
		if !ok {
			text := fmt.Sprintf("board %s was left in progress in step %s (%s), and slot %d has no TPM here to resume it on", b.Serial, b.CurrentStep, r.Cause, b.Slot)
			if err := s.cfg.Inventory.MarkFailed(context.WithoutCancel(ctx), b.Serial, ReasonInterrupted, oneLine(text)); err != nil {
				return rep, fmt.Errorf("board %s: %w", b.Serial, err)
			}
			r.Closed = &Failure{Code: ReasonInterrupted, Text: oneLine(text),
				Next: fmt.Sprintf("put the board in a slot and scan it again, or run reconcile with --tpm ADDR --slot %d: it resumes where it stopped", b.Slot)}
			s.emit(Event{Kind: EvFailed, Slot: b.Slot, Serial: b.Serial, Batch: b.Batch, Failure: r.Closed})
			rep = append(rep, r)
			continue
		}
		r.Resumed = s.Provision(ctx, Job{Batch: b.Batch, Serial: b.Serial, Slot: b.Slot, TPM: addr})
		rep = append(rep, r)
	}
	return rep, nil
}

// leftCause reads why b was left in progress from the last journal entry of its current attempt.
func (s *Station) leftCause(ctx context.Context, b *records.Board) string {
	stopped := fmt.Sprintf("the station stopped in step %s (crash, power cut or kill)", b.CurrentStep)
	sl, ok := s.cfg.Inventory.(StepLister)
	if !ok {
		return stopped
	}
	steps, err := sl.ListSteps(context.WithoutCancel(ctx), b.Serial)
	if err != nil {
		return stopped + fmt.Sprintf("; its journal is unreadable: %v", err)
	}
	var last *records.Step
	for i := range steps {
		if steps[i].Attempt == b.Attempt {
			last = &steps[i]
		}
	}
	switch {
	case last == nil:
		return stopped
	case last.Phase == records.PhaseFailed && last.Detail != "":
		return fmt.Sprintf("step %s failed: %s", last.Step, last.Detail)
	case last.Phase == records.PhaseStarted:
		return fmt.Sprintf("the station stopped during step %s (crash, power cut or kill)", last.Step)
	}
	return fmt.Sprintf("the station stopped after step %s (crash, power cut or kill)", last.Step)
}
