package inventory

import "github.com/tpmline/tpmline/records"

// The error kinds and sentinels are package records'; these names keep callers that still say
// inventory.ErrBoardNotFound compiling while they move to records.
var (
	ErrEKBoundToOtherSerial     = records.ErrEKBoundToOtherSerial
	ErrSerialBoundToOtherEK     = records.ErrSerialBoundToOtherEK
	ErrBoardInProgressElsewhere = records.ErrBoardInProgressElsewhere
	ErrAlreadyProvisioned       = records.ErrAlreadyProvisioned
	ErrBoardStopped             = records.ErrBoardStopped
	ErrNotInProgress            = records.ErrNotInProgress
	ErrIncomplete               = records.ErrIncomplete
	ErrBoardNotFound            = records.ErrBoardNotFound
	ErrBatchNotFound            = records.ErrBatchNotFound
	ErrExportNotFound           = records.ErrExportNotFound
	ErrBatchExists              = records.ErrBatchExists
	ErrBatchClosed              = records.ErrBatchClosed
	ErrInvalid                  = records.ErrInvalid
	ErrDuplicate                = records.ErrDuplicate
	ErrChainBroken              = records.ErrChainBroken
)

// Typed refusals: see package records.
type (
	EKBoundError     = records.EKBoundError
	SerialBoundError = records.SerialBoundError
	InProgressError  = records.InProgressError
	ChainError       = records.ChainError
)

// Chain problems reported in ChainError.Problem.
const (
	ProblemEdited      = records.ProblemEdited
	ProblemMissing     = records.ProblemMissing
	ProblemWrongPrev   = records.ProblemWrongPrev
	ProblemHeadChanged = records.ProblemHeadChanged
)

// short abbreviates a hex digest for messages a person reads.
func short(hexDigest string) string {
	if len(hexDigest) > 16 {
		return hexDigest[:16] + "…"
	}
	return hexDigest
}
