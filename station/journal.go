// The journal's batching: what a board's run writes to the inventory and when it commits it. Facts found
// during a step (its end, a key, a certificate) are queued and committed together with the next durable
// step's start, before that step's side effect, or with the board's end state: one durable commit per step
// instead of one per fact. One commit (the one opening the issue step) runs ahead, while the TPM works.

package station

import (
	"context"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
)

// note appends an audit event that belongs to no inventory row (a refused board); failures are ignored
// because the refusal itself is already reported to the operator.
func (r *run) note(e records.Event) {
	e.Station, e.Batch, e.Serial = r.s.cfg.StationID, r.job.Batch, r.job.Serial
	_, _ = r.s.cfg.Inventory.AppendEvent(context.WithoutCancel(r.ctx), e)
}

// journal commits the pending journal writes and ops in one transaction.
func (r *run) journal(ops ...records.Op) error {
	// JournalTime is elapsed time, so it is read on the monotonic clock, not the configured calendar clock.
	t0 := time.Now()
	err := r.s.cfg.Inventory.Journal(r.ctx, r.job.Serial, append(r.pending, ops...)...)
	r.out.JournalTime += time.Since(t0)
	if err != nil {
		return err
	}
	r.pending = nil
	return nil
}

// aheadCommit is a journal commit made while the TPM works on something else: it carries what was pending
// and the start of the durable step that comes next, and must be on disk before that step's side effect.
type aheadCommit struct {
	step string
	ops  []records.Op
	done chan error
}

// commitAhead starts committing the pending journal writes and the start of step in the background.
func (r *run) commitAhead(step string) {
	ops := append(r.pending, records.OpStepStarted(step))
	r.pending = nil
	c := &aheadCommit{step: step, ops: ops, done: make(chan error, 1)}
	ctx, inv, serial := r.ctx, r.s.cfg.Inventory, r.job.Serial
	go func() { c.done <- inv.Journal(ctx, serial, ops...) }()
	r.ahead = c
}

// awaitAhead waits for the commit ahead. If it failed, what it carried is pending again (without the start
// of its step, which will not run).
func (r *run) awaitAhead() error {
	c := r.ahead
	r.ahead = nil
	t0 := time.Now() // elapsed time, as in journal
	err := <-c.done
	r.out.JournalTime += time.Since(t0)
	if err != nil {
		r.pending = append(c.ops[:len(c.ops)-1:len(c.ops)-1], r.pending...)
	}
	return err
}

// openStep puts a durable step's start on disk, with everything pending, before the step's side effect:
// by waiting for the commit ahead when it opened this step, else by committing now.
func (r *run) openStep(step string) error {
	if r.ahead != nil && r.ahead.step == step {
		return r.awaitAhead()
	}
	return r.journal(records.OpStepStarted(step))
}

// closeStep queues a step's end (and what it found) for the next commit, which still puts it on disk before
// anything else durable happens to the board.
func (r *run) closeStep(sp *stepSpec, st StepTime, f *Failure) {
	o := records.StepOutcome{Duration: st.Duration, TPMTime: st.TPMTime, Started: st.Start}
	if f != nil {
		o.Detail = f.Line()
	}
	switch {
	case !sp.durable:
		r.pending = append(r.pending, records.OpStepRan(sp.name, o, f != nil))
	case f != nil:
		r.pending = append(r.pending, records.OpStepFailed(sp.name, o))
	default:
		r.pending = append(r.pending, records.OpStepFinished(sp.name, o))
	}
}

// queuePre queues the steps that ran before the board had an inventory row, and what they found (the TPM's
// identity, the EK), for the first commit after the claim.
func (r *run) queuePre() {
	for _, st := range r.pre {
		r.pending = append(r.pending, records.OpStepRan(st.Step, records.StepOutcome{Duration: st.Duration, TPMTime: st.TPMTime, Started: st.Start}, false))
	}
	r.pending = append(r.pending, records.OpTPMInfo(records.TPMInfo{Manufacturer: r.props.Info.Manufacturer,
		Vendor: r.props.Info.VendorString, Firmware: r.props.Info.Firmware}), records.OpEK(r.ekCert.Data, r.ek.PublicBytes))
}

// saveKey records a key created in this run (committed with the next journal write).
func (r *run) saveKey(kind records.KeyKind, k *provisioning.Key, h tpm2.TPMHandle) error {
	r.pending = append(r.pending, records.OpKey(records.Key{Kind: kind, Public: k.PublicBytes, Handle: uint32(h), Name: k.Name.Buffer}))
	if kind == records.KindIAK {
		r.iakPub = k.PublicBytes
	} else {
		r.idevidPub = k.PublicBytes
	}
	return nil
}
