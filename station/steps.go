// The step sequence: the table of the per-board steps, in station/progress's order (the one list the
// terminal's progress bar and the journal's step names come from), with what each step does, which
// classification turns its error into a Failure, and whether its side effect outlives a crash; and step,
// which runs one of them with its events, timings and journal entries.

package station

import (
	"errors"
	"fmt"
	"time"

	"github.com/tpmline/tpmline/internal/tpmwire"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station/progress"
)

// blame says which classification turns a step's error into a Failure.
type blame int

const (
	blameTPM       blame = iota // tpmFailure: the TPM, its fixture or its transport
	blameCA                     // classifyCA: the CA refused or is away
	blameInventory              // classifyClaim: the inventory refused or is away
)

// stepSpec is one step of the per-board flow.
type stepSpec struct {
	name  string
	blame blame
	// durable steps have a side effect that outlives a crash: the certificates the CA issues, the keys
	// persisted and the certificates written into the TPM, the rework's clear. Their journal entry is
	// committed before the side effect and closed after it. The other steps read the TPM, make transient
	// objects that vanish with a crash (or the next board's flush), or open a CA challenge that is single-use
	// and expires (enroll), so there is nothing to bracket: they are journaled, with their times, in the next
	// commit.
	durable bool
	// before, when set, runs when the flow reaches the step, even if the step is then skipped.
	before func(*run) *Failure
	// skip, when set, says the step does not apply to this board: it leaves no event and no journal entry.
	skip func(*run) bool
	run  func(*run) error
	// then, when set, runs after the step succeeded.
	then func(*run)
	// bare steps are not bracketed, timed or journaled as steps: record's journal write closes the board,
	// and the board.provisioned event is its record.
	bare bool
}

// specs are the steps by name; sequence puts them in station/progress's order.
var specs = map[string]stepSpec{
	StepConnect:              {blame: blameTPM, run: (*run).connect},
	provisioning.StepFlush:   {blame: blameTPM, run: func(r *run) error { return provisioning.FlushTransients(r.tpm) }},
	provisioning.StepTPMInfo: {blame: blameTPM, run: (*run).readTPMInfo},
	provisioning.StepEKCerts: {blame: blameTPM, run: (*run).readEKCert},
	provisioning.StepEK:      {blame: blameTPM, run: (*run).createEK},
	provisioning.StepEKCheck: {blame: blameTPM, run: (*run).checkEK, then: (*run).startClaim},
	provisioning.StepIAK:     {blame: blameTPM, run: (*run).createIAK},
	provisioning.StepIDevID:  {blame: blameTPM, run: (*run).createIDevID},
	StepClaim:                {blame: blameInventory, run: (*run).awaitClaim, then: (*run).claimGranted},
	provisioning.StepClear: {blame: blameTPM, durable: true, skip: func(r *run) bool { return !r.job.Rework },
		run: func(r *run) error { return provisioning.Clear(r.tpm, r.layout) }},
	// The journal entry that opens the issue step (with the keys and everything since the claim) is written
	// while the TPM answers the challenge; it is on disk before the proof goes to the CA.
	provisioning.StepEnroll: {blame: blameCA, before: (*run).resume, skip: resumed, run: (*run).enroll,
		then: func(r *run) { r.commitAhead(provisioning.StepIssue) }},
	provisioning.StepActivate: {blame: blameTPM, skip: resumed, run: (*run).activate},
	provisioning.StepCertify:  {blame: blameTPM, skip: resumed, run: (*run).certify},
	provisioning.StepIssue:    {blame: blameCA, durable: true, skip: resumed, run: (*run).issue},
	provisioning.StepPersist:  {blame: blameTPM, durable: true, run: (*run).persist},
	provisioning.StepNVWrite:  {blame: blameTPM, durable: true, run: (*run).nvWrite},
	provisioning.StepReadBack: {blame: blameTPM, run: (*run).readBack},
	StepRecord:                {blame: blameInventory, bare: true, run: (*run).record},
}

// sequence is the flow of a new board: every step of station/progress's Steps, in that order.
var sequence = inOrder(progress.Steps)

// reworkSequence is the flow of a rework: the claim is awaited and the TPM cleared before the new keys are
// derived, because the clear needs the object slots the keys would hold.
var reworkSequence = keysAfterClear(sequence)

func inOrder(names []string) []*stepSpec {
	out := make([]*stepSpec, len(names))
	for i, n := range names {
		sp, ok := specs[n]
		if !ok {
			panic("station: no spec for step " + n)
		}
		sp.name = n
		out[i] = &sp
	}
	return out
}

func keysAfterClear(seq []*stepSpec) []*stepSpec {
	var keys, out []*stepSpec
	for _, sp := range seq {
		switch sp.name {
		case provisioning.StepIAK, provisioning.StepIDevID:
			keys = append(keys, sp)
		default:
			out = append(out, sp)
			if sp.name == provisioning.StepClear {
				out = append(out, keys...)
			}
		}
	}
	return out
}

// resumed: the certificates were issued in an earlier try of this attempt (see resume).
func resumed(r *run) bool { return r.resumed }

// classify turns a step's error into the board's failure.
func (r *run) classify(sp *stepSpec, err error) *Failure {
	var ff *Failure
	if errors.As(err, &ff) && !ff.Infra {
		return ff // a refusal stands whatever the key does
	}
	if f := r.s.keyUnavailable(); f != nil {
		// An outage is then a symptom (a TLS handshake, or a chain head the key could not sign).
		f.Text = fmt.Sprintf("%s in step %s", f.Text, sp.name)
		return f
	}
	if ff != nil {
		return ff
	}
	switch sp.blame {
	case blameCA:
		return classifyCA(err)
	case blameInventory:
		return classifyClaim(r.job.Serial, err)
	}
	return tpmFailure(err)
}

// step runs one step: journal before (durable steps), the step, journal after, with wall and TPM time. The
// "after" entry is committed with the next durable step's "before" (or the board's end state).
func (r *run) step(sp *stepSpec) *Failure {
	s := r.s
	r.lastStep = sp.name
	s.emit(Event{Kind: EvStep, Slot: r.job.Slot, Serial: r.job.Serial, Batch: r.job.Batch, Step: sp.name, Elapsed: s.cfg.Now().Sub(r.start)})
	if r.claimed && sp.durable {
		if err := r.openStep(sp.name); err != nil {
			return classifyClaim(r.job.Serial, err)
		}
	}
	r.fault(sp.name, "before")
	var tpm0 time.Duration
	if r.timed != nil {
		tpm0 = r.timed.TPMTime()
	}
	// Start is journaled, a calendar time: the configured clock. Duration is elapsed time: the monotonic
	// clock, which a configured clock that stands still or jumps does not distort.
	started, t0 := s.cfg.Now(), time.Now()
	err := sp.run(r)
	st := StepTime{Step: sp.name, Duration: time.Since(t0), Start: started}
	if r.timed != nil {
		st.TPMTime = r.timed.TPMTime() - tpm0
	}
	r.out.Steps = append(r.out.Steps, st)
	if !r.claimed {
		r.pre = append(r.pre, st)
	}
	var f *Failure
	if err != nil {
		f = r.classify(sp, err)
	}
	if r.claimed {
		r.closeStep(sp, st, f)
	}
	if f == nil {
		r.fault(sp.name, "after")
	}
	s.emit(Event{Kind: EvStepDone, Slot: r.job.Slot, Serial: r.job.Serial, Batch: r.job.Batch, Step: sp.name, Elapsed: s.cfg.Now().Sub(r.start)})
	return f
}

// bareStep runs a step that is not bracketed: its start is announced and its error classified.
func (r *run) bareStep(sp *stepSpec) *Failure {
	r.s.emit(Event{Kind: EvStep, Slot: r.job.Slot, Serial: r.job.Serial, Batch: r.job.Batch, Step: sp.name, Elapsed: r.s.cfg.Now().Sub(r.start)})
	r.fault(sp.name, "before")
	if err := sp.run(r); err != nil {
		return r.classify(sp, err)
	}
	return nil
}

// The step bodies, in the sequence's order.

func (r *run) connect() error {
	s := r.s
	t, err := s.cfg.Open(r.job.TPM)
	if err != nil {
		return fmt.Errorf("%w at %s: %v", errTPMUnreachable, r.job.TPM, err)
	}
	r.tpm = t
	if s.cfg.Timed != nil {
		r.timed = s.cfg.Timed(t)
		r.tpm = closer{r.timed, t}
	}
	// Fixed properties and the EK credential range are read once per board, not before every NV access.
	r.tpm = provisioning.Cached(r.tpm)
	return nil
}

func (r *run) readTPMInfo() (err error) {
	if r.props, err = provisioning.ReadProperties(r.tpm); err != nil {
		return err
	}
	if err := r.prof.CheckTPM(r.props.Info); err != nil {
		ff := fail(ReasonTPMRefused, "set the board aside for QA: its TPM is not approved for this product", err, "%v", err)
		ff.Stop = true
		return ff
	}
	return nil
}

func (r *run) readEKCert() (err error) {
	nameAlg, _ := r.alg.NameAlg()
	r.ekCert, r.ekAlg, r.chain, err = provisioning.ReadChosenEKCert(r.tpm, nameAlg, 0)
	if errors.Is(err, provisioning.ErrNoEKCert) {
		ff := fail(ReasonNoEKCert, "set the board aside for QA: the TPM carries no usable EK certificate", err, "%v", err)
		ff.Stop = true
		return ff
	}
	return err
}

func (r *run) createEK() (err error) {
	r.ek, err = provisioning.CreateEK(r.tpm, r.ekAlg)
	return err
}

func (r *run) checkEK() error {
	if err := provisioning.CheckEKMatchesCert(r.ekCert.Data, &r.ek.Public); err != nil {
		ff := fail(ReasonEKMismatch, "set the board aside for QA: the TPM's EK is not the one its certificate names", err, "%v", err)
		ff.Stop = true
		return ff
	}
	// The identity the inventory, reports and EK lists key the board by (SHA-256 of the EK's SPKI DER).
	h, err := tpmwire.EKIdentity(r.ek.PublicBytes)
	if err != nil {
		return fail(ReasonEKMismatch, "set the board aside for QA: its TPM's EK public key is unusable", err, "EK public key: %v", err)
	}
	r.ekIdentity = h
	// This EK is the one its certificate names, which the CA verifies along with this TPM holding its
	// private part: the commands whose results are recorded run from here in a session salted to it, so an
	// answer forged on the link fails its HMAC.
	vt, end, err := provisioning.Vouch(r.tpm, r.ek)
	if err != nil {
		return err
	}
	r.endSession, r.tpm = end, vt
	return nil
}

func (r *run) createIAK() (err error) {
	if r.iak, err = provisioning.CreateIAK(r.tpm, r.alg); err != nil {
		return err
	}
	return r.saveKey(records.KindIAK, r.iak, r.layout.IAKHandle)
}

func (r *run) createIDevID() (err error) {
	if r.idevid, err = provisioning.CreateIDevIDFor(r.tpm, r.prof.KeyAlg(), r.prof.IDevIDSchemeChoice()); err != nil {
		return err
	}
	return r.saveKey(records.KindIDevID, r.idevid, r.layout.IDevIDHandle)
}

func (r *run) enroll() (err error) {
	job := r.job
	req := &provisioning.EnrollRequest{Version: provisioning.ProtocolVersion, Serial: job.Serial, Product: r.prof.Name,
		Rework: job.Rework, EKCert: r.ekCert.Data, EKPublic: r.ek.PublicBytes, IAKPublic: r.iak.PublicBytes,
		IDevIDPublic: r.idevid.PublicBytes, TPM: r.props.Info}
	for _, c := range r.chain {
		req.EKChain = append(req.EKChain, c.Data)
	}
	if r.s.cfg.AuditHead != nil {
		if req.AuditHead, err = r.s.cfg.AuditHead(r.ctx); err != nil {
			ff := fail(ReasonInventory, "check the database connection and the station's key, then retry the board", err,
				"signing the audit chain head for the CA: %v", err)
			ff.Infra = true
			return ff
		}
	}
	r.challenge, err = r.s.cfg.CA.Enroll(r.ctx, req)
	if err == nil && r.challenge == nil {
		err = errors.New("CA sent no challenge")
	}
	return err
}

func (r *run) activate() (err error) {
	ch := r.challenge
	r.act = &provisioning.ActivateRequest{Version: provisioning.ProtocolVersion, SessionID: ch.SessionID}
	if r.act.Secret, err = provisioning.ActivateCredential(r.tpm, r.ek, r.iak, ch.CredentialBlob, ch.EncryptedSecret); err != nil {
		return err
	}
	err = r.ek.Flush(r.tpm)
	r.ek = nil
	return err
}

func (r *run) certify() (err error) {
	r.act.CertifyInfo, r.act.CertifySignature, err = provisioning.Certify(r.tpm, r.iak, r.idevid, r.challenge.Nonce)
	return err
}

func (r *run) issue() error {
	issued, err := r.s.cfg.CA.Activate(r.ctx, r.act)
	if err != nil {
		return err
	}
	r.fault(provisioning.StepIssue, "mid")
	if !certForKey(issued.IAKCert, r.iak) || !certForKey(issued.IDevIDCert, r.idevid) {
		return fail(ReasonCertificateForeign, "report to the CA operator; the board was not changed", nil,
			"the CA issued certificates for other keys than this board's")
	}
	r.issued = issued
	// Recorded with the next step's journal entry, before anything is written to the TPM; a station that
	// dies before that commit resumes the enrollment, and the CA answers it with these very certificates
	// (same EK, serial and keys), so it never has a certificate out that the inventory will not know.
	r.pending = append(r.pending, records.OpCertificate(records.KindIAK, issued.IAKCert),
		records.OpCertificate(records.KindIDevID, issued.IDevIDCert))
	return nil
}

func (r *run) persist() error {
	tpm, layout := r.tpm, r.layout
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
}

func (r *run) nvWrite() error {
	layout := r.layout
	if err := provisioning.WriteCertNV(r.tpm, layout.IAKCertIndex, r.issued.IAKCert, layout.WriteLock); err != nil {
		return fmt.Errorf("IAK certificate: %w", err)
	}
	r.fault(provisioning.StepNVWrite, "mid")
	if err := provisioning.WriteCertNV(r.tpm, layout.IDevIDCertIndex, r.issued.IDevIDCert, layout.WriteLock); err != nil {
		return fmt.Errorf("IDevID certificate: %w", err)
	}
	return nil
}

func (r *run) readBack() error {
	st, err := provisioning.Inspect(r.tpm, r.layout)
	if err != nil {
		return err
	}
	if err := st.Matches(r.iakPub, r.idevidPub, r.issued, r.layout.WriteLock); err != nil {
		return fail(ReasonReadBack, "retry the board; if it fails again set it aside for QA", err, "%v", err)
	}
	return nil
}

func (r *run) record() error {
	if err := r.journal(records.OpProvisioned()); err != nil {
		return err
	}
	r.out.IAKCertSerial, r.out.IDevIDCertSerial = certSerial(r.issued.IAKCert), certSerial(r.issued.IDevIDCert)
	return nil
}
