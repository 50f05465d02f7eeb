package records

// OpKind says which write an Op is.
type OpKind int

// Op kinds, one per journal write a station makes about a board in progress.
const (
	OpKindStepStarted OpKind = iota + 1
	OpKindStepFinished
	OpKindStepFailed
	OpKindStepRan
	OpKindTPMInfo
	OpKindEK
	OpKindKey
	OpKindCertificate
	OpKindProvisioned
	OpKindFailed
)

// Op is one write about a board in progress: a journal entry, a key, a certificate, an end state. It is
// a plain value so the station can say what to record without importing the store; the store applies
// several in one transaction, so a station pays one durable commit where it has several facts to record at
// the same point of the flow (the end of one step and the start of the next, say). Build Ops with the
// functions below; only the fields of the Op's kind are set.
type Op struct {
	Kind    OpKind
	Step    string      // step ops
	Outcome StepOutcome // OpStepFinished, OpStepFailed, OpStepRan
	Failed  bool        // OpStepRan: the step failed
	TPMInfo TPMInfo     // OpTPMInfo
	EKCert  []byte      // OpEK
	EKPub   []byte      // OpEK
	Key     Key         // OpKey
	// CertKind and CertDER are OpCertificate's.
	CertKind KeyKind
	CertDER  []byte
	// Code and Text are OpFailed's reason.
	Code, Text string
}

// OpStepStarted journals that step is about to run its side effect, and makes it the board's current step.
func OpStepStarted(step string) Op { return Op{Kind: OpKindStepStarted, Step: step} }

// OpStepFinished journals that step completed.
func OpStepFinished(step string, o StepOutcome) Op {
	return Op{Kind: OpKindStepFinished, Step: step, Outcome: o}
}

// OpStepFailed journals that step failed. The board stays in progress: the station decides whether to
// retry the step or fail the board.
func OpStepFailed(step string, o StepOutcome) Op {
	return Op{Kind: OpKindStepFailed, Step: step, Outcome: o}
}

// OpStepRan journals a step that already ran (started o.Duration ago and done, or failed, now): the
// station's steps that change nothing durable (reads, transient keys) are journaled once they ran.
func OpStepRan(step string, o StepOutcome, failed bool) Op {
	return Op{Kind: OpKindStepRan, Step: step, Outcome: o, Failed: failed}
}

// OpTPMInfo records what the board's TPM says about itself.
func OpTPMInfo(info TPMInfo) Op { return Op{Kind: OpKindTPMInfo, TPMInfo: info} }

// OpEK records the board's EK certificate and EK public (the TPMT_PUBLIC whose key inventory.EKPubHash identifies).
func OpEK(ekCert, ekPublic []byte) Op { return Op{Kind: OpKindEK, EKCert: ekCert, EKPub: ekPublic} }

// OpKey records a device key created in the board's TPM.
func OpKey(k Key) Op { return Op{Kind: OpKindKey, Key: k} }

// OpCertificate records a certificate the CA issued for one of the board's keys.
func OpCertificate(kind KeyKind, der []byte) Op {
	return Op{Kind: OpKindCertificate, CertKind: kind, CertDER: der}
}

// OpProvisioned marks the board provisioned; the store refuses it without both keys and both
// certificates of the current attempt (ErrIncomplete).
func OpProvisioned() Op { return Op{Kind: OpKindProvisioned} }

// OpFailed marks the board failed with a reason code and text.
func OpFailed(code, text string) Op { return Op{Kind: OpKindFailed, Code: code, Text: text} }
