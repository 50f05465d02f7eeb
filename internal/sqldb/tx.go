package sqldb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// Keep marks an error a transaction returns after writing something that must stay (the audit event
// recording a refusal, say): InTx commits, then returns err.
func Keep(err error) error { return &keepError{err} }

type keepError struct{ err error }

func (k *keepError) Error() string { return k.err.Error() }
func (k *keepError) Unwrap() error { return k.err }

// TxOptions tune InTx. The zero value retries on ErrRetry only.
type TxOptions struct {
	// RetryIf names errors besides ErrRetry worth a fresh attempt (the inventory's unique violations on a
	// row another station inserted meanwhile, where the rerun's own checks give the precise refusal).
	RetryIf func(error) bool
	// OnRetry is called before each new attempt (counters for tests and diagnostics).
	OnRetry func()
}

// txAttempts bounds how often one transaction runs.
const txAttempts = 10

// InTx runs fn in one write transaction on W and commits it; every error leaves through MapError. A
// transaction that lost a race runs again from the start (up to 10 times, with a little backoff), where
// its own reads now see the winner.
func (db *DB) InTx(ctx context.Context, o TxOptions, fn func(tx *sqlx.Tx) error) error {
	var err error
	for i := range txAttempts {
		err = db.runTx(ctx, fn)
		if !errors.Is(err, ErrRetry) && (o.RetryIf == nil || !o.RetryIf(err)) {
			return err
		}
		if o.OnRetry != nil {
			o.OnRetry()
		}
		// The jitter keeps two processes that collided from colliding again in lockstep; it is not
		// product time, so it does not come from the product clock.
		t := time.NewTimer(time.Duration(i+1) * time.Duration(1+time.Now().UnixNano()%3) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return err
}

func (db *DB) runTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := db.W.BeginTxx(ctx, nil)
	if err != nil {
		return MapError(fmt.Errorf("starting transaction on %s: %w", db.Where, err))
	}
	ferr := fn(tx)
	var keep *keepError
	if ferr != nil && !errors.As(ferr, &keep) {
		tx.Rollback()
		return MapError(ferr)
	}
	if err := tx.Commit(); err != nil {
		return MapError(fmt.Errorf("committing to %s: %w", db.Where, err))
	}
	if keep != nil {
		return keep.err
	}
	return nil
}
