// One board's run: Provision, which walks the step sequence (steps.go) and records how the board ended,
// and the run's state shared by the rooms it is split into: the journal's batching (journal.go), the
// inventory claim running concurrently with key creation (claim.go), what an earlier attempt left done
// (resume.go) and TPM failure classification (tpmfailure.go).

package station

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
)

// run is one board's flow: its TPM, its journal, its timings, and what each step hands the next.
type run struct {
	s       *Station
	ctx     context.Context
	job     Job
	prof    *Profile
	tpm     transport.TPM
	timed   TimedTPM
	out     *Outcome
	start   time.Time
	claimed bool
	// claimTried is set once the inventory check ran: from then on the inventory records refusals.
	claimTried bool
	lastStep   string
	// pre holds the steps run before the board had an inventory row; they are journaled right after the claim.
	pre []StepTime
	// pending are journal writes made since the last commit (see journal.go).
	pending []records.Op
	// ahead is a journal commit running while the TPM works; it opens a durable step that comes next.
	ahead *aheadCommit
	// claiming carries the claim's answer while it is in flight (see claim.go); board is that answer.
	claiming chan claimResult
	board    *records.Board
	// what the profile asks of the board.
	alg    provisioning.KeyAlg
	layout provisioning.Layout
	// what the steps found or made, for the steps after them.
	props      *provisioning.Properties
	ekCert     provisioning.NVCert
	ekAlg      provisioning.EKAlg
	ekIdentity string // SHA-256 of the EK SPKI DER, from the ek-check step
	chain      []provisioning.NVCert
	challenge  *provisioning.Challenge
	act        *provisioning.ActivateRequest
	issued     *provisioning.Certificates
	// resumed: the certificates were issued in an earlier try of this attempt; enrollment is skipped.
	resumed bool
	// the publics of the keys created in this run, for the read-back.
	iakPub, idevidPub []byte
	// loaded transient keys, flushed on the way out.
	ek, iak, idevid *provisioning.Key
	// endSession ends the session salted to the EK (provisioning.Vouch); nil before it started.
	endSession func() error
}

// Provision runs the per-board flow for one job. It never panics on hostile TPM or CA answers and always
// returns an outcome; the board's inventory record says the same thing.
//
// Order and idempotence: every step either has no side effect (reads, transient keys) or is safe to repeat
// (IAK and IDevID are primary keys derived from fixed templates, so a resumed board re-creates the very same
// keys; certificates are recorded in the inventory the moment the CA issues them, so a resumed board writes
// them instead of enrolling again; Persist and WriteCertNV accept what is already there when it matches).
// That is what makes a crash at any step recoverable by running the board again.
func (s *Station) Provision(ctx context.Context, job Job) *Outcome {
	r := &run{s: s, ctx: ctx, job: job, start: s.cfg.Now(), out: &Outcome{Serial: job.Serial, Batch: job.Batch}}
	if err := s.acquire(job.Slot, job.Serial); err != nil {
		r.out.State = records.StateFailed
		r.out.Failure = fail(ReasonSlotBusy, "wait for the slot to finish or use another slot", err, "")
		return r.out
	}
	defer s.release(job.Slot)
	if f := s.keyUnavailable(); f != nil {
		// Before the claim: nothing is recorded, the board is as it was.
		f.Text = fmt.Sprintf("board %s not started, nothing recorded: %s", job.Serial, f.Text)
		r.out.State, r.out.Failure = records.StateFailed, f
		return r.out
	}
	s.emit(Event{Kind: EvStarted, Slot: job.Slot, Serial: job.Serial, Batch: job.Batch})
	f := r.walk()
	if r.ahead != nil {
		// The flow stopped before the step a commit ahead opened: that step never ran.
		step := r.ahead.step
		if err := r.awaitAhead(); err == nil && f != nil {
			r.pending = append(r.pending, records.OpStepFailed(step, records.StepOutcome{Detail: "not run: " + f.Line()}))
		}
	}
	if f != nil && ctx.Err() != nil && !f.Stop {
		// The operator aborted: whatever the interrupted call reported, that is the reason.
		f = fail(ReasonAborted, "retry the board when ready (it resumes where it stopped)", ctx.Err(), "aborted by the operator in step %s", r.lastStep)
	}
	r.flushAll()
	r.out.Duration = s.cfg.Now().Sub(r.start)
	if r.timed != nil {
		r.out.TPMTime = r.timed.TPMTime()
	}
	if f == nil {
		r.out.State = records.StateProvisioned
		s.emit(Event{Kind: EvPassed, Slot: job.Slot, Serial: job.Serial, Batch: job.Batch, Elapsed: r.out.Duration})
		return r.out
	}
	r.out.Failure = f
	r.out.State = records.StateFailed
	if f.Stop {
		r.out.State = records.StateStopped
	}
	if !r.claimTried && !f.Stop {
		// Nothing of this run reached the inventory: a board it already holds (in progress from an earlier
		// run, say) keeps that state, and the line must not read the one printed here as recorded.
		f.Text += " (not recorded: the board's inventory record, if any, is unchanged)"
	}
	if r.claimed && !f.Infra {
		// A record that cannot be written is the database's failure; the board stays in progress and the
		// next run (or reconcile) picks it up, so nothing is lost.
		r.ctx = context.WithoutCancel(ctx)
		var err error
		if f.Stop {
			if err = r.journal(); err == nil {
				err = s.cfg.Inventory.MarkStopped(r.ctx, job.Serial, f.Code, f.Text)
			}
		} else {
			err = r.journal(records.OpFailed(f.Code, f.Text))
		}
		if err != nil {
			f.Text += fmt.Sprintf(" (and recording the failure failed: %v)", err)
			r.out.State = records.StateInProgress
		}
	} else if r.claimed {
		r.out.State = records.StateInProgress
		if f.Code != ReasonInventory {
			// The CA, not the database, is away: the board stays in progress for a retry, and what ran up to
			// here (the step that met the outage included) is journaled.
			r.ctx = context.WithoutCancel(ctx)
			if err := r.journal(); err != nil {
				f.Text += fmt.Sprintf(" (and journaling the steps failed: %v)", err)
			}
		}
	} else if f.Stop && !r.claimTried {
		// Set aside before the inventory check (a refused claim is recorded by the inventory itself).
		r.note(records.Event{Kind: records.EventBoardRefused, Payload: payload(map[string]any{"code": f.Code, "text": f.Text, "slot": job.Slot})})
	}
	s.emit(Event{Kind: EvFailed, Slot: job.Slot, Serial: job.Serial, Batch: job.Batch, Failure: f, Elapsed: r.out.Duration})
	return r.out
}

func (r *run) flushAll() {
	if r.tpm == nil {
		return
	}
	if r.endSession != nil {
		_ = r.endSession()
	}
	for _, k := range []*provisioning.Key{r.idevid, r.iak, r.ek} {
		_ = k.Flush(r.tpm) // best effort: FlushTransients at the next board's start catches what this misses
	}
	r.ek, r.iak, r.idevid = nil, nil, nil
	if c, ok := r.tpm.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

// walk checks what the operator typed, then runs the board's step sequence until a step fails or the
// board is recorded. A step that fails while the claim is in flight does not end the walk at once: the
// claim's answer is awaited first (it decides what is journaled), and ends the run itself when it refuses
// the board or finds it already provisioned.
func (r *run) walk() *Failure {
	if f := r.admit(); f != nil {
		return f
	}
	seq := sequence
	if r.job.Rework {
		seq = reworkSequence
	}
	var failed *Failure
	for _, sp := range seq {
		if failed != nil && sp.name != StepClaim {
			continue
		}
		if sp.before != nil {
			if f := sp.before(r); f != nil {
				return f
			}
		}
		if sp.skip != nil && sp.skip(r) {
			continue
		}
		if sp.bare {
			if f := r.bareStep(sp); f != nil {
				return f
			}
			continue
		}
		f := r.step(sp)
		if f == nil && sp.then != nil {
			sp.then(r)
		}
		switch {
		case f != nil && errors.Is(f.Err, errAlready):
			r.out.Already = true
			return nil
		case f != nil && r.claiming != nil:
			failed = f
		case f != nil:
			return f
		case failed != nil:
			return failed
		}
	}
	return failed
}

// admit validates everything the operator typed before touching the board.
func (r *run) admit() *Failure {
	s, job := r.s, r.job
	b, err := s.cfg.Inventory.GetBatch(r.ctx, job.Batch)
	if err != nil {
		return classifyClaim(job.Serial, err)
	}
	if b.State != "open" {
		return fail(ReasonBatch, "open a new batch (station batch open) and scan again", nil, "batch %s is closed", job.Batch)
	}
	r.prof = s.Profile(b.Product)
	if err := r.prof.CheckSerial(job.Serial); err != nil {
		return fail(ReasonBadSerial, "check the label and scan again", err, "%v", err)
	}
	r.alg, r.layout = r.prof.IAKKeyAlg(), r.prof.Layout() // the IAK (and so the EK it pairs with); the IDevID follows KeyAlg
	return nil
}

// fault calls the crash-test hook at a step boundary ("before", "after") or inside a step that has two
// side effects ("mid").
func (r *run) fault(step, phase string) {
	if r.s.cfg.Fault != nil {
		r.s.cfg.Fault(step, phase)
	}
}

// closer pairs a timed wrapper with the transport it wraps, so closing the run closes the TPM.
type closer struct {
	TimedTPM
	c transport.TPMCloser
}

func (c closer) Close() error { return c.c.Close() }
