package sqldb

import (
	"errors"
	"fmt"

	"github.com/lib/pq"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

var (
	// ErrDuplicate: a unique constraint (or a primary key) refused a row.
	ErrDuplicate = errors.New("duplicate row")
	// ErrRetry: the transaction lost a race that a fresh attempt resolves (PostgreSQL serialization
	// failure or deadlock, SQLite busy or locked, an owner's optimistic update that found a changed row).
	ErrRetry = errors.New("concurrent update, retry")
)

// Classify is the one place where driver errors are read: it returns the driver's detail (the
// constraint's name on PostgreSQL) and ErrDuplicate or ErrRetry, or nil for any other error.
func Classify(err error) (detail string, sentinel error) {
	if err == nil {
		return "", nil
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		switch pqErr.Code {
		case "23505": // unique_violation, PostgreSQL Appendix A
			return pqErr.Constraint, ErrDuplicate
		case "40001", "40P01": // serialization_failure, deadlock_detected
			return pqErr.Message, ErrRetry
		}
		return "", nil
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		// sqlite.org/rescode.html: SQLITE_CONSTRAINT_UNIQUE 2067, SQLITE_CONSTRAINT_PRIMARYKEY 1555.
		switch liteErr.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return liteErr.Error(), ErrDuplicate
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_BUSY_SNAPSHOT, sqlite3.SQLITE_LOCKED:
			return liteErr.Error(), ErrRetry
		}
	}
	return "", nil
}

// MapError wraps an error whose chain holds a driver error that Classify recognises in its sentinel, keeping
// the whole message; others pass through unchanged.
func MapError(err error) error {
	_, s := Classify(err)
	if s == nil {
		return err
	}
	return fmt.Errorf("%w: %v", s, err)
}
