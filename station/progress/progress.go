// Package progress owns the vocabulary of one board's run through the station that the operator terminal
// shares: the Job a terminal asks for, the per-board step names in order, the Events the station feeds the
// terminal while a board runs, the Outcome it ends with and the Failure (reason code, one-line text, next
// action) that explains a board that did not pass.
//
// It imports the standard library and package records only, so the terminal draws a board's progress
// without linking the TPM stack that package station drives.
package progress

import (
	"fmt"
	"time"

	"github.com/tpmline/tpmline/records"
)

// Job is one board to provision.
type Job struct {
	Batch  string
	Serial string
	Slot   int
	TPM    string // --tpm address
	Rework bool
	// Supervisor is who authorised a rework (badge ID); it goes into the audit trail.
	Supervisor string
}

// Steps is the per-board flow in order; the UI draws its progress bar over it.
var Steps = []string{
	StepConnect, StepFlush, StepTPMInfo, StepEKCerts, StepEK, StepEKCheck, StepIAK, StepIDevID, StepClaim,
	StepClear, StepEnroll, StepActivate, StepCertify, StepIssue, StepPersist, StepNVWrite, StepReadBack,
	StepRecord,
}

// The device-side steps, named as package provisioning names them (station's tests check they agree): the
// terminal draws them without linking the TPM stack.
const (
	StepFlush    = "flush"
	StepTPMInfo  = "tpm-info"
	StepEKCerts  = "ek-certs"
	StepEK       = "ek"
	StepEKCheck  = "ek-check"
	StepClear    = "clear"
	StepIAK      = "iak"
	StepIDevID   = "idevid"
	StepEnroll   = "enroll"
	StepActivate = "activate-credential"
	StepCertify  = "certify"
	StepIssue    = "issue"
	StepPersist  = "persist"
	StepNVWrite  = "nv-write"
	StepReadBack = "read-back"
)

// Station-only steps.
const (
	StepConnect = "connect"
	StepClaim   = "inventory-check"
	StepRecord  = "record"
)

// BoardSteps are the steps a board's journal lists (`station board show`), in the order the station runs
// them: every step of Steps but the rework's clear for a board that is not reworked (a rework clears the
// TPM right after its inventory check, before the new keys), and without record, which is the board's end
// state (board.provisioned), not a journaled step. The terminal's progress bar counts these.
func BoardSteps(rework bool) []string {
	out := make([]string, 0, len(Steps))
	for _, s := range Steps {
		switch {
		case s == StepRecord, s == StepClear && !rework:
		case rework && (s == StepIAK || s == StepIDevID):
			// After the claim and the clear in a rework.
		default:
			out = append(out, s)
		}
		if rework && s == StepClear {
			out = append(out, StepIAK, StepIDevID)
		}
	}
	return out
}

// StepIndex is the position of step in Steps, or -1.
func StepIndex(step string) int {
	for i, s := range Steps {
		if s == step {
			return i
		}
	}
	return -1
}

// EventKind says what happened in an Event.
type EventKind string

// Event kinds.
const (
	EvStarted    EventKind = "started"
	EvStep       EventKind = "step"
	EvStepDone   EventKind = "step-done"
	EvPassed     EventKind = "passed"
	EvFailed     EventKind = "failed"
	EvSlotIdle   EventKind = "slot-idle"
	EvBatchEvent EventKind = "batch"
)

// Event is one state change for the UI.
type Event struct {
	Time    time.Time
	Kind    EventKind
	Slot    int
	Serial  string
	Batch   string
	Step    string
	Elapsed time.Duration
	// Failure is set on EvFailed.
	Failure *Failure
	Message string
}

// Outcome is how a board ended.
type Outcome struct {
	Serial   string
	Batch    string
	State    records.BoardState
	Failure  *Failure // nil when provisioned
	Duration time.Duration
	TPMTime  time.Duration
	// JournalTime is the time spent committing the board's journal (the inventory's durable writes).
	JournalTime time.Duration
	Steps       []StepTime
	// IAKCertSerial and IDevIDCertSerial are the issued certificates' serial numbers (hex).
	IAKCertSerial    string
	IDevIDCertSerial string
	EKPubSHA256      string
	Already          bool // the board was already provisioned and the TPM still matches
}

// StepTime is one step's wall time and TPM time.
type StepTime struct {
	Step     string        `json:"step"`
	Duration time.Duration `json:"duration_ns"`
	TPMTime  time.Duration `json:"tpm_time_ns"`
	Start    time.Time     `json:"-"` // for the journal, which may record the step later than it ran
}

// Failure is why a board did not pass: a stable reason code for scripts and reports, a one-line
// explanation, and what the operator does next.
type Failure struct {
	Code string `json:"code"`
	Text string `json:"text"`
	Next string `json:"next"`
	// Stop means the board is set aside (possible clone, swapped part, refused TPM): only a rework takes
	// it again. Otherwise the board failed and may simply be retried.
	Stop bool `json:"stop"`
	// Infra is true when the station, not the board, is at fault (CA or database unreachable); the
	// board keeps its state and is retried when the service is back.
	Infra bool  `json:"infra"`
	Err   error `json:"-"`
}

func (f *Failure) Error() string { return f.Line() }
func (f *Failure) Unwrap() error { return f.Err }

// Line is the one line an operator reads.
func (f *Failure) Line() string {
	if f.Next == "" {
		return fmt.Sprintf("%s: %s", f.Code, f.Text)
	}
	return fmt.Sprintf("%s: %s: %s", f.Code, f.Text, f.Next)
}

// Reason codes. docs/station.md lists them.
const (
	ReasonBadSerial          = "bad_serial"
	ReasonBatch              = "batch_unusable"
	ReasonSlotBusy           = "slot_busy"
	ReasonTPMUnreachable     = "tpm_unreachable"
	ReasonTPMError           = "tpm_error"
	ReasonTPMNotStarted      = "tpm_not_started"
	ReasonTPMRefused         = "tpm_not_accepted"
	ReasonNoEKCert           = "no_ek_cert"
	ReasonEKMismatch         = "ek_mismatch"
	ReasonClone              = "ek_bound_to_other_serial"
	ReasonSwap               = "serial_bound_to_other_ek"
	ReasonHeldElsewhere      = "in_progress_elsewhere"
	ReasonAlreadyDone        = "already_provisioned"
	ReasonStopped            = "board_stopped"
	ReasonTPMOccupied        = "tpm_already_provisioned"
	ReasonCAUnreachable      = "ca_unreachable"
	ReasonInventory          = "inventory_unavailable"
	ReasonStationKey         = "station_key_unavailable"
	ReasonReadBack           = "read_back_mismatch"
	ReasonNotVouched         = "tpm_response_not_vouched"
	ReasonAborted            = "aborted"
	ReasonCAPrefix           = "ca_"
	ReasonCertificateForeign = "certificate_mismatch"
)

// ReasonInterrupted is a board the station stopped working on (crash, power loss) whose slot no longer
// holds a TPM the station can reach; scanning it again resumes it.
const ReasonInterrupted = "interrupted"

// StepIndexIn is the position of step in steps, or -1.
func StepIndexIn(steps []string, step string) int {
	for i, s := range steps {
		if s == step {
			return i
		}
	}
	return -1
}
