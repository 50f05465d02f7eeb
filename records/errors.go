package records

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers match them with errors.Is; the typed errors below carry the details.
var (
	// ErrEKBoundToOtherSerial: the EK is already recorded under another serial (possible cloned TPM or
	// swapped label). Detail: *EKBoundError.
	ErrEKBoundToOtherSerial = errors.New("EK already bound to another serial")
	// ErrSerialBoundToOtherEK: the serial is already recorded with another EK (possible swapped TPM).
	// Rework lifts it. Detail: *SerialBoundError.
	ErrSerialBoundToOtherEK = errors.New("serial already bound to another EK")
	// ErrBoardInProgressElsewhere: another station holds the board. Detail: *InProgressError.
	ErrBoardInProgressElsewhere = errors.New("board in progress at another station")
	// ErrAlreadyProvisioned: the same serial and EK are already provisioned and no rework was asked for.
	ErrAlreadyProvisioned = errors.New("board already provisioned")
	// ErrBoardStopped: the board was stopped (quarantined); only a rework may take it again.
	ErrBoardStopped = errors.New("board stopped")
	// ErrNotInProgress: the board is not in progress, so its journal, keys and certificates are frozen.
	ErrNotInProgress = errors.New("board not in progress")
	// ErrIncomplete: MarkProvisioned without both keys and both certificates of the current attempt.
	ErrIncomplete = errors.New("board record incomplete")
	// ErrBoardNotFound, ErrBatchNotFound, ErrExportNotFound: no such row.
	ErrBoardNotFound  = errors.New("board not found")
	ErrBatchNotFound  = errors.New("batch not found")
	ErrExportNotFound = errors.New("EK list export not found")
	// ErrBatchExists: OpenBatch with an id already used.
	ErrBatchExists = errors.New("batch already exists")
	// ErrBatchClosed: the batch is closed; no boards may be claimed into it and it cannot be closed again.
	ErrBatchClosed = errors.New("batch closed")
	// ErrInvalid: an argument is missing or malformed.
	ErrInvalid = errors.New("invalid argument")
	// ErrDuplicate: a unique constraint refused a row (a store maps its driver's error onto it).
	ErrDuplicate = errors.New("duplicate row")
	// ErrChainBroken: the audit log's hash chain does not verify. Detail: *ChainError.
	ErrChainBroken = errors.New("audit chain broken")
)

// EKBoundError says which serial already owns the EK.
type EKBoundError struct {
	Serial      string // the serial that asked for the EK
	EKPubSHA256 string
	OtherSerial string // the serial the EK is bound to
}

func (e *EKBoundError) Error() string {
	return fmt.Sprintf("board %s: EK %s is already bound to serial %s: possible cloned TPM or wrong label; quarantine the board",
		e.Serial, short(e.EKPubSHA256), e.OtherSerial)
}

func (e *EKBoundError) Unwrap() error { return ErrEKBoundToOtherSerial }

// SerialBoundError says which EK the serial is already bound to.
type SerialBoundError struct {
	Serial      string
	EKPubSHA256 string // the EK presented now
	BoundEK     string // the EK on record
}

func (e *SerialBoundError) Error() string {
	return fmt.Sprintf("board %s: serial is bound to EK %s, this TPM has EK %s: possible swapped TPM; run a rework if it was replaced on purpose",
		e.Serial, short(e.BoundEK), short(e.EKPubSHA256))
}

func (e *SerialBoundError) Unwrap() error { return ErrSerialBoundToOtherEK }

// InProgressError names the station and slot holding a board.
type InProgressError struct {
	Serial  string
	Station string
	Slot    int
}

func (e *InProgressError) Error() string {
	return fmt.Sprintf("board %s is in progress at station %s slot %d: finish or fail it there first",
		e.Serial, e.Station, e.Slot)
}

func (e *InProgressError) Unwrap() error { return ErrBoardInProgressElsewhere }

// ChainError names the first broken link of the audit chain.
type ChainError struct {
	Seq     int64  // the sequence number where the chain breaks
	Problem string // "edited row", "missing seq", "wrong prev_hash", "head mismatch"
	Detail  string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("audit chain broken at seq %d: %s (%s)", e.Seq, e.Problem, e.Detail)
}

func (e *ChainError) Unwrap() error { return ErrChainBroken }

// Chain problems reported in ChainError.Problem.
const (
	ProblemEdited      = "edited row"
	ProblemMissing     = "missing seq"
	ProblemWrongPrev   = "wrong prev_hash"
	ProblemHeadChanged = "head mismatch"
)

// short abbreviates a hex digest for messages a person reads.
func short(hexDigest string) string {
	if len(hexDigest) > 16 {
		return hexDigest[:16] + "…"
	}
	return hexDigest
}
