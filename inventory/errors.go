package inventory

import (
	"errors"
	"fmt"

	"github.com/lib/pq"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tpmline/tpmline/records"
)

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

// errRetry asks the transaction helper to run the transaction again: an optimistic update lost a race.
var errRetry = errors.New("concurrent update, retry")

// mapDBError is the one place where driver errors become this package's sentinels: unique violations
// become ErrDuplicate, and conflicts that a fresh transaction resolves (PostgreSQL serialization
// failures and deadlocks, SQLite busy) become errRetry.
func mapDBError(err error) error {
	if err == nil {
		return nil
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		switch pqErr.Code {
		case "23505": // unique_violation, PostgreSQL Appendix A
			return fmt.Errorf("%w: %s", ErrDuplicate, pqErr.Constraint)
		case "40001", "40P01": // serialization_failure, deadlock_detected
			return fmt.Errorf("%w: %s", errRetry, pqErr.Message)
		}
		return err
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		switch liteErr.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %s", ErrDuplicate, liteErr.Error())
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_BUSY_SNAPSHOT, sqlite3.SQLITE_LOCKED:
			return fmt.Errorf("%w: %s", errRetry, liteErr.Error())
		}
	}
	return err
}

// short abbreviates a hex digest for messages a person reads.
func short(hexDigest string) string {
	if len(hexDigest) > 16 {
		return hexDigest[:16] + "…"
	}
	return hexDigest
}
