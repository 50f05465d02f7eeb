package station

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/internal/tpmwire"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
)

// run is one board's flow: its TPM, its journal, its timings.
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
	// pending are journal writes made since the last commit (a step's end, a key, a certificate). They are
	// committed together with the next step's start, before that step's side effect, or with the board's
	// end state: one durable commit per step instead of one per fact.
	pending []records.Op
	// ahead is a journal commit running while the TPM works; it opens a durable step that comes next.
	ahead *aheadCommit
	// the publics of the keys created in this run, for the read-back.
	iakPub, idevidPub []byte
	// loaded transient keys, flushed on the way out.
	ek, iak, idevid *provisioning.Key
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
	s.emit(Event{Kind: EvStarted, Slot: job.Slot, Serial: job.Serial, Batch: job.Batch})
	f := r.provision()
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
	for _, k := range []*provisioning.Key{r.idevid, r.iak, r.ek} {
		_ = k.Flush(r.tpm) // best effort: FlushTransients at the next board's start catches what this misses
	}
	r.ek, r.iak, r.idevid = nil, nil, nil
	if c, ok := r.tpm.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

// note appends an audit event that belongs to no inventory row (a refused board); failures are ignored
// because the refusal itself is already reported to the operator.
func (r *run) note(e records.Event) {
	e.Station, e.Batch, e.Serial = r.s.cfg.StationID, r.job.Batch, r.job.Serial
	_, _ = r.s.cfg.Inventory.AppendEvent(context.WithoutCancel(r.ctx), e)
}

// durable are the steps whose side effect outlives a crash: the certificates the CA issues, the keys
// persisted and the certificates written into the TPM, the rework's eviction. Their journal entry is
// committed before the side effect and closed after it. The other steps read the TPM, make transient
// objects that vanish with a crash (or the next board's flush), or open a CA challenge that is single-use
// and expires (enroll), so there is nothing to bracket: they are journaled, with their times, in the next
// commit.
var durable = map[string]bool{
	provisioning.StepClear: true, provisioning.StepIssue: true,
	provisioning.StepPersist: true, provisioning.StepNVWrite: true,
}

// journal commits the pending journal writes and ops in one transaction.
func (r *run) journal(ops ...records.Op) error {
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
	t0 := time.Now()
	err := <-c.done
	r.out.JournalTime += time.Since(t0)
	if err != nil {
		r.pending = append(c.ops[:len(c.ops)-1:len(c.ops)-1], r.pending...)
	}
	return err
}

// step runs one step: journal before (durable steps), the step, journal after, with wall and TPM time. The
// "after" entry is committed with the next durable step's "before" (or the board's end state), which
// still puts it on disk before anything else durable happens to the board.
func (r *run) step(name string, classify func(error) *Failure, fn func() error) *Failure {
	s := r.s
	r.lastStep = name
	s.emit(Event{Kind: EvStep, Slot: r.job.Slot, Serial: r.job.Serial, Batch: r.job.Batch, Step: name, Elapsed: s.cfg.Now().Sub(r.start)})
	if r.claimed && durable[name] {
		var err error
		if r.ahead != nil && r.ahead.step == name {
			err = r.awaitAhead()
		} else {
			err = r.journal(records.OpStepStarted(name))
		}
		if err != nil {
			return classifyClaim(r.job.Serial, err)
		}
	}
	r.fault(name, "before")
	var tpm0 time.Duration
	if r.timed != nil {
		tpm0 = r.timed.TPMTime()
	}
	t0 := clock.Now() // Start is journaled: the product clock, as the store reads it
	err := fn()
	st := StepTime{Step: name, Duration: clock.Since(t0), Start: t0}
	if r.timed != nil {
		st.TPMTime = r.timed.TPMTime() - tpm0
	}
	r.out.Steps = append(r.out.Steps, st)
	if !r.claimed {
		r.pre = append(r.pre, st)
	}
	var f *Failure
	if err != nil {
		var ff *Failure
		if errors.As(err, &ff) {
			f = ff
		} else {
			f = classify(err)
		}
	}
	if r.claimed {
		o := records.StepOutcome{Duration: st.Duration, TPMTime: st.TPMTime, Started: t0}
		if f != nil {
			o.Detail = f.Line()
		}
		switch {
		case !durable[name]:
			r.pending = append(r.pending, records.OpStepRan(name, o, f != nil))
		case f != nil:
			r.pending = append(r.pending, records.OpStepFailed(name, o))
		default:
			r.pending = append(r.pending, records.OpStepFinished(name, o))
		}
	}
	if f == nil {
		r.fault(name, "after")
	}
	s.emit(Event{Kind: EvStepDone, Slot: r.job.Slot, Serial: r.job.Serial, Batch: r.job.Batch, Step: name, Elapsed: s.cfg.Now().Sub(r.start)})
	return f
}

func tpmFailure(err error) *Failure {
	// A transport that knows what is wrong with the fixture (fixtures.NotStartedError) says what to do.
	var fixture interface{ NextAction() string }
	if errors.As(err, &fixture) {
		return fail(ReasonTPMNotStarted, fixture.NextAction(), err, "%v", err)
	}
	if errors.Is(err, errTPMUnreachable) {
		return fail(ReasonTPMUnreachable, "check the fixture cable or board power, then retry", err, "%v", err)
	}
	var rc tpm2.TPMRC
	if errors.As(err, &rc) {
		return fail(ReasonTPMError, "retry the board; if it fails again set it aside for QA", err, "%v", err)
	}
	// Transport errors (timeouts, resets) come back as plain errors from the transport.
	msg := err.Error()
	if strings.Contains(msg, "connection") || strings.Contains(msg, "timeout") || strings.Contains(msg, "EOF") ||
		strings.Contains(msg, "broken pipe") || strings.Contains(msg, "i/o") {
		return fail(ReasonTPMUnreachable, "check the fixture cable or board power, then retry", err, "TPM stopped answering: %v", err)
	}
	return fail(ReasonTPMError, "retry the board; if it fails again set it aside for QA", err, "%v", err)
}

var errTPMUnreachable = errors.New("TPM unreachable")

func (r *run) provision() *Failure {
	s, job := r.s, r.job
	// Validate everything the operator typed before touching the board.
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

	if f := r.step(StepConnect, tpmFailure, func() error {
		t, err := s.cfg.Open(job.TPM)
		if err != nil {
			return fmt.Errorf("%w at %s: %v", errTPMUnreachable, job.TPM, err)
		}
		r.tpm = t
		if s.cfg.Timed != nil {
			r.timed = s.cfg.Timed(t)
			r.tpm = closer{r.timed, t}
		}
		// Fixed properties and the EK credential range are read once per board, not before every NV access.
		r.tpm = provisioning.Cached(r.tpm)
		return nil
	}); f != nil {
		return f
	}
	tpm := r.tpm

	if f := r.step(provisioning.StepFlush, tpmFailure, func() error { return provisioning.FlushTransients(tpm) }); f != nil {
		return f
	}
	var props *provisioning.Properties
	if f := r.step(provisioning.StepTPMInfo, tpmFailure, func() (err error) {
		if props, err = provisioning.ReadProperties(tpm); err != nil {
			return err
		}
		if err := r.prof.CheckTPM(props.Info); err != nil {
			ff := fail(ReasonTPMRefused, "set the board aside for QA: its TPM is not approved for this product", err, "%v", err)
			ff.Stop = true
			return ff
		}
		return nil
	}); f != nil {
		return f
	}
	var chain []provisioning.NVCert
	var ekCert provisioning.NVCert
	var ekAlg provisioning.EKAlg
	alg := r.prof.IAKKeyAlg()
	nameAlg, _ := alg.NameAlg()
	if f := r.step(provisioning.StepEKCerts, tpmFailure, func() (err error) {
		ekCert, ekAlg, chain, err = provisioning.ReadChosenEKCert(tpm, nameAlg, 0)
		if errors.Is(err, provisioning.ErrNoEKCert) {
			ff := fail(ReasonNoEKCert, "set the board aside for QA: the TPM carries no usable EK certificate", err, "%v", err)
			ff.Stop = true
			return ff
		}
		return err
	}); f != nil {
		return f
	}
	if f := r.step(provisioning.StepEK, tpmFailure, func() (err error) {
		r.ek, err = provisioning.CreateEK(tpm, ekAlg)
		return err
	}); f != nil {
		return f
	}
	if f := r.step(provisioning.StepEKCheck, tpmFailure, func() error {
		if err := provisioning.CheckEKMatchesCert(ekCert.Data, &r.ek.Public); err != nil {
			ff := fail(ReasonEKMismatch, "set the board aside for QA: the TPM's EK is not the one its certificate names", err, "%v", err)
			ff.Stop = true
			return ff
		}
		return nil
	}); f != nil {
		return f
	}
	ekHash, err := tpmwire.EKIdentity(r.ek.PublicBytes)
	if err != nil {
		return fail(ReasonEKMismatch, "set the board aside for QA: its TPM's EK public key is unusable", err, "EK public key: %v", err)
	}
	r.out.EKPubSHA256 = ekHash

	// Inventory check: the one-EK-one-serial rule, enforced by the store's unique constraints. It runs while
	// the TPM derives the IAK and IDevID (transient keys: nothing durable happens to the board), and its
	// answer is awaited before anything leaves the station or changes the TPM for good. A rework waits for
	// it first: its clear needs the object slots the new keys would hold.
	type claimResult struct {
		board *records.Board
		err   error
	}
	claimed := make(chan claimResult, 1)
	r.claimTried = true
	go func() {
		b, err := s.cfg.Inventory.ClaimBoard(r.ctx, records.ClaimRequest{Serial: job.Serial, EKPubSHA256: ekHash,
			Batch: job.Batch, Station: s.cfg.StationID, Slot: job.Slot, Rework: job.Rework})
		claimed <- claimResult{b, err}
	}()
	var board *records.Board
	// settle waits for the claim; done means the flow ends here with f (nil: already provisioned, TPM matches).
	settle := func() (f *Failure, done bool) {
		if f := r.step(StepClaim, func(err error) *Failure { return classifyClaim(job.Serial, err) }, func() (err error) {
			res := <-claimed
			board, err = res.board, res.err
			if errors.Is(err, records.ErrAlreadyProvisioned) {
				// Reading the persisted keys takes object slots the new transient keys hold (3 in all).
				_ = errors.Join(r.idevid.Flush(tpm), r.iak.Flush(tpm))
				r.iak, r.idevid = nil, nil
				if ok := r.alreadyProvisioned(); ok {
					return errAlready
				}
			}
			return err
		}); f != nil {
			if errors.Is(f.Err, errAlready) {
				r.out.Already = true
				return nil, true
			}
			return f, true
		}
		r.claimed = true
		if job.Rework {
			r.note(records.Event{Kind: "board.rework_authorised", Payload: payload(map[string]any{"supervisor": job.Supervisor,
				"slot": job.Slot, "attempt": board.Attempt})})
		}
		// The steps that ran before the board had a row, and what they found, are journaled with the next
		// commit.
		for _, st := range r.pre {
			r.pending = append(r.pending, records.OpStepRan(st.Step, records.StepOutcome{Duration: st.Duration, TPMTime: st.TPMTime, Started: st.Start}, false))
		}
		r.pending = append(r.pending, records.OpTPMInfo(records.TPMInfo{Manufacturer: props.Info.Manufacturer,
			Vendor: props.Info.VendorString, Firmware: props.Info.Firmware}), records.OpEK(ekCert.Data, r.ek.PublicBytes))
		return nil, false
	}
	layout := r.prof.Layout()
	if job.Rework {
		if f, done := settle(); done {
			return f
		}
		if f := r.step(provisioning.StepClear, tpmFailure, func() error { return provisioning.Clear(tpm, layout) }); f != nil {
			return f
		}
	}
	fKeys := r.step(provisioning.StepIAK, tpmFailure, func() (err error) {
		if r.iak, err = provisioning.CreateIAK(tpm, alg); err != nil {
			return err
		}
		return r.saveKey(records.KindIAK, r.iak, layout.IAKHandle)
	})
	if fKeys == nil {
		fKeys = r.step(provisioning.StepIDevID, tpmFailure, func() (err error) {
			if r.idevid, err = provisioning.CreateIDevIDFor(tpm, r.prof.KeyAlg(), r.prof.IDevIDSchemeChoice()); err != nil {
				return err
			}
			return r.saveKey(records.KindIDevID, r.idevid, layout.IDevIDHandle)
		})
	}
	if !job.Rework {
		if f, done := settle(); done {
			return f
		}
	}
	if fKeys != nil {
		return fKeys
	}

	// Resume: certificates issued in an earlier attempt for these very keys are written, not re-enrolled.
	issued := r.issuedFor(board)
	if issued != nil {
		// Only credential activation needs the EK; free its slot for Persist (3 object slots).
		if err := r.ek.Flush(tpm); err != nil {
			return tpmFailure(err)
		}
		r.ek = nil
	} else {
		var f *Failure
		if issued, f = r.enroll(props, ekCert, chain); f != nil {
			return f
		}
	}
	if f := r.step(provisioning.StepPersist, tpmFailure, func() error {
		if err := provisioning.Persist(tpm, r.iak, layout.IAKHandle); err != nil {
			return occupied("IAK", layout.IAKHandle, err)
		}
		r.fault(provisioning.StepPersist, "mid")
		if err := provisioning.Persist(tpm, r.idevid, layout.IDevIDHandle); err != nil {
			return occupied("IDevID", layout.IDevIDHandle, err)
		}
		err := errors.Join(r.idevid.Flush(tpm), r.iak.Flush(tpm))
		r.iak, r.idevid = nil, nil
		return err
	}); f != nil {
		return f
	}
	if f := r.step(provisioning.StepNVWrite, tpmFailure, func() error {
		if err := provisioning.WriteCertNV(tpm, layout.IAKCertIndex, issued.IAKCert, layout.WriteLock); err != nil {
			return fmt.Errorf("IAK certificate: %w", err)
		}
		r.fault(provisioning.StepNVWrite, "mid")
		if err := provisioning.WriteCertNV(tpm, layout.IDevIDCertIndex, issued.IDevIDCert, layout.WriteLock); err != nil {
			return fmt.Errorf("IDevID certificate: %w", err)
		}
		return nil
	}); f != nil {
		return f
	}
	iakPub, idevPub := r.iakPub, r.idevidPub
	if f := r.step(provisioning.StepReadBack, tpmFailure, func() error {
		st, err := provisioning.Inspect(tpm, layout)
		if err != nil {
			return err
		}
		if err := st.Matches(iakPub, idevPub, issued, layout.WriteLock); err != nil {
			return fail(ReasonReadBack, "retry the board; if it fails again set it aside for QA", err, "%v", err)
		}
		return nil
	}); f != nil {
		return f
	}
	// Recording is its own journal entry: MarkProvisioned closes the board, so it is not wrapped in a
	// started/finished pair (the board.provisioned event is its record).
	s.emit(Event{Kind: EvStep, Slot: job.Slot, Serial: job.Serial, Batch: job.Batch, Step: StepRecord, Elapsed: s.cfg.Now().Sub(r.start)})
	r.fault(StepRecord, "before")
	if err := r.journal(records.OpProvisioned()); err != nil {
		return classifyClaim(job.Serial, err)
	}
	r.out.IAKCertSerial, r.out.IDevIDCertSerial = certSerial(issued.IAKCert), certSerial(issued.IDevIDCert)
	return nil
}

// fault calls the crash-test hook at a step boundary ("before", "after") or inside a step that has two
// side effects ("mid").
func (r *run) fault(step, phase string) {
	if r.s.cfg.Fault != nil {
		r.s.cfg.Fault(step, phase)
	}
}

var errAlready = errors.New("already provisioned and the TPM matches")

// closer pairs a timed wrapper with the transport it wraps, so closing the run closes the TPM.
type closer struct {
	TimedTPM
	c transport.TPMCloser
}

func (c closer) Close() error { return c.c.Close() }

func occupied(what string, h tpm2.TPMHandle, err error) error {
	if errors.Is(err, provisioning.ErrHandleOccupied) {
		return fail(ReasonTPMOccupied, "this TPM was provisioned before: run a rework (supervisor) to replace its keys", err,
			"%s handle %#x already holds another key", what, uint32(h))
	}
	return fmt.Errorf("persisting the %s: %w", what, err)
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

// issuedFor returns certificates recorded in this attempt whose keys are the ones just created, or nil.
func (r *run) issuedFor(board *records.Board) *provisioning.Certificates {
	certs, err := r.s.cfg.Inventory.ListCertificates(r.ctx, r.job.Serial)
	if err != nil || board == nil {
		return nil
	}
	out := &provisioning.Certificates{}
	for _, c := range certs {
		if c.Attempt != board.Attempt {
			continue
		}
		switch c.Kind {
		case records.KindIAK:
			if certForKey(c.DER, r.iak) {
				out.IAKCert = c.DER
			}
		case records.KindIDevID:
			if certForKey(c.DER, r.idevid) {
				out.IDevIDCert = c.DER
			}
		}
	}
	if out.IAKCert == nil || out.IDevIDCert == nil {
		return nil
	}
	r.note(records.Event{Kind: "board.resume_issued", Payload: payload(map[string]any{"attempt": board.Attempt})})
	return out
}

func certForKey(der []byte, k *provisioning.Key) bool {
	if k == nil {
		return false
	}
	x, err := x509.ParseCertificate(der)
	if err != nil {
		return false
	}
	want, err := tpmwire.PublicKey(k.PublicBytes)
	if err != nil {
		return false
	}
	got, ok := x.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && got.Equal(want)
}

func (r *run) enroll(props *provisioning.Properties, ekCert provisioning.NVCert, chain []provisioning.NVCert) (*provisioning.Certificates, *Failure) {
	tpm, job := r.tpm, r.job
	var ch *provisioning.Challenge
	if f := r.step(provisioning.StepEnroll, classifyCA, func() (err error) {
		req := &provisioning.EnrollRequest{Version: provisioning.ProtocolVersion, Serial: job.Serial, Product: r.prof.Name,
			Rework: job.Rework, EKCert: ekCert.Data, EKPublic: r.ek.PublicBytes, IAKPublic: r.iak.PublicBytes,
			IDevIDPublic: r.idevid.PublicBytes, TPM: props.Info}
		for _, c := range chain {
			req.EKChain = append(req.EKChain, c.Data)
		}
		ch, err = r.s.cfg.CA.Enroll(r.ctx, req)
		if err == nil && ch == nil {
			err = errors.New("CA sent no challenge")
		}
		return err
	}); f != nil {
		return nil, f
	}
	// The journal entry that opens the issue step (with the keys and everything since the claim) is written
	// while the TPM answers the challenge; it is on disk before the proof goes to the CA.
	r.commitAhead(provisioning.StepIssue)
	act := &provisioning.ActivateRequest{Version: provisioning.ProtocolVersion, SessionID: ch.SessionID}
	if f := r.step(provisioning.StepActivate, tpmFailure, func() (err error) {
		if act.Secret, err = provisioning.ActivateCredential(tpm, r.ek, r.iak, ch.CredentialBlob, ch.EncryptedSecret); err != nil {
			return err
		}
		err = r.ek.Flush(tpm)
		r.ek = nil
		return err
	}); f != nil {
		return nil, f
	}
	if f := r.step(provisioning.StepCertify, tpmFailure, func() (err error) {
		act.CertifyInfo, act.CertifySignature, err = provisioning.Certify(tpm, r.iak, r.idevid, ch.Nonce)
		return err
	}); f != nil {
		return nil, f
	}
	var issued *provisioning.Certificates
	if f := r.step(provisioning.StepIssue, classifyCA, func() (err error) {
		if issued, err = r.s.cfg.CA.Activate(r.ctx, act); err != nil {
			return err
		}
		r.fault(provisioning.StepIssue, "mid")
		if !certForKey(issued.IAKCert, r.iak) || !certForKey(issued.IDevIDCert, r.idevid) {
			return fail(ReasonCertificateForeign, "report to the CA operator; the board was not changed", nil,
				"the CA issued certificates for other keys than this board's")
		}
		// Recorded with the next step's journal entry, before anything is written to the TPM; a station
		// that dies before that commit resumes the enrollment, and the CA answers it with these very
		// certificates (same EK, serial and keys), so it never has a certificate out that the inventory
		// will not know.
		r.pending = append(r.pending, records.OpCertificate(records.KindIAK, issued.IAKCert),
			records.OpCertificate(records.KindIDevID, issued.IDevIDCert))
		return nil
	}); f != nil {
		return nil, f
	}
	return issued, nil
}

// alreadyProvisioned checks a board the inventory calls provisioned: if its TPM still holds the recorded
// keys and certificates the run is a no-op success.
func (r *run) alreadyProvisioned() bool {
	b, err := r.s.cfg.Inventory.GetBoardBySerial(r.ctx, r.job.Serial)
	if err != nil {
		return false
	}
	certs, err := r.s.cfg.Inventory.ListCertificates(r.ctx, r.job.Serial)
	if err != nil {
		return false
	}
	want := &provisioning.Certificates{}
	for _, c := range certs {
		if c.Attempt != b.Attempt {
			continue
		}
		if c.Kind == records.KindIAK {
			want.IAKCert = c.DER
		} else if c.Kind == records.KindIDevID {
			want.IDevIDCert = c.DER
		}
	}
	st, err := provisioning.Inspect(r.tpm, r.prof.Layout())
	if err != nil || st.IAKCert == nil || st.IDevIDCert == nil {
		return false
	}
	if !bytes.Equal(st.IAKCert.Data, want.IAKCert) || !bytes.Equal(st.IDevIDCert.Data, want.IDevIDCert) {
		return false
	}
	r.out.IAKCertSerial, r.out.IDevIDCertSerial = certSerial(want.IAKCert), certSerial(want.IDevIDCert)
	return true
}

func certSerial(der []byte) string {
	x, err := x509.ParseCertificate(der)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%x", x.SerialNumber)
}
