// Package inventory is tpmline's record of what happened on the line: batches, boards and the
// one-EK-one-serial rule, the per-board step journal, keys, certificates, EK list exports and the
// append-only, hash-chained audit log. It owns all of the project's SQL: one schema, migrated from files
// embedded in the binary, on embedded SQLite for a station on its own or on PostgreSQL when several
// stations on a line share one inventory.
//
// Every method runs in one transaction of its own and records the state change it makes as an audit event
// in that same transaction, so the log and the tables never disagree.
package inventory

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/internal/sqldb"
)

// Store is an open inventory. It is safe for concurrent use by the slots of one station; several stations
// may open the same PostgreSQL inventory (or the same SQLite file on one machine) at once.
type Store struct {
	db    *sqldb.DB
	d     dialect
	w     *sqlx.DB // writes, and reads that belong to a write transaction
	r     *sqlx.DB // plain reads; the same pool as w on PostgreSQL
	where string   // the database URL without its password, for messages
	now   func() time.Time
	// retries counts transactions run again after losing a race (tests and diagnostics).
	retries atomic.Int64
	stmts   *sqldb.StmtCache // SQLite writer only; nil on PostgreSQL
	// mustExist: see MustExist.
	mustExist bool
	// oneCommand: see OneCommand.
	oneCommand bool
}

// Option adjusts a Store at Open.
type Option func(*Store)

// MustExist makes Open refuse, with a *sqldb.NotCreatedError, an SQLite file that does not exist and a
// database that holds no inventory, instead of creating one: a station must not start on an empty
// inventory because of a typo in its database URL. Creating an inventory is an explicit act ('station init').
func MustExist() Option {
	return func(s *Store) { s.mustExist = true }
}

// OneCommand opens the inventory for one command in a short-lived process of its own (`station provision`
// of one board, `board show`, a report): on SQLite one pool serves reads and writes, so a command that does
// one thing at a time reads the schema on one connection instead of two (every SQLite connection parses the
// whole schema before its first statement, a sixth of a `board show` process). Statements that overlap
// still get a connection each, and two write transactions at once wait for each other in SQLite
// (busy_timeout) instead of in Go. Not for a process that runs slots side by side (the terminal): there the
// writes queue on the one writer connection and the reads have a read-only pool of their own.
func OneCommand() Option {
	return func(s *Store) { s.oneCommand = true }
}

// WithClock makes the store take the time of every row and event from now instead of time.Now.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Open connects to the inventory at rawURL and brings its schema up to date.
//
//	sqlite://inventory.db, sqlite:///var/lib/tpmline/inventory.db   embedded SQLite (WAL, synchronous=FULL)
//	postgres://user@host:5432/db?sslmode=disable, postgresql://...  PostgreSQL via lib/pq
func Open(ctx context.Context, rawURL string, opts ...Option) (*Store, error) {
	s := &Store{now: clock.Now}
	for _, o := range opts {
		o(s)
	}
	// SQLite: one writer connection, so the slots of this station queue in Go rather than spinning on
	// SQLITE_BUSY, and four readers (one pool for a single command: OneCommand). PostgreSQL: one pool of
	// eight for both.
	readers := 4
	if s.oneCommand {
		readers = 0
	}
	db, err := sqldb.Open(ctx, rawURL, sqldb.Options{What: "inventory", SQLiteReaders: readers, PostgresConns: 8, MustExist: s.mustExist})
	if err != nil {
		return nil, err
	}
	if s.mustExist {
		created, err := db.Created(ctx, "inventory", "")
		if err == nil && !created {
			err = &sqldb.NotCreatedError{What: "inventory", Where: db.Where, Empty: true}
		}
		if err != nil {
			db.Close()
			return nil, err
		}
	}
	s.db, s.w, s.r, s.where = db, db.W, db.R, db.Where
	s.d = dialect{name: db.Name, forUpdate: db.ForUpdate}
	if db.Name == sqldb.SQLite.Name {
		s.stmts = sqldb.NewStmtCache(db.W)
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("migrating inventory at %s: %w", s.where, err)
	}
	return s, nil
}

// Close releases the database connections.
func (s *Store) Close() error {
	s.stmts.Close()
	return s.db.Close()
}

// Engine is "sqlite" or "postgres".
func (s *Store) Engine() string { return s.d.name }

// Where is the database URL without its password.
func (s *Store) Where() string { return s.where }

// redact removes the password from a database URL.
func redact(rawURL string) string { return sqldb.Redact(rawURL) }

// q rebinds a ? query to the engine's placeholders.
func (s *Store) q(query string) string { return s.w.Rebind(query) }

// txn is a write transaction and its one timestamp: every row and event it writes carries the same time.
type txn struct {
	*sqlx.Tx
	now  int64     // unix nanoseconds, UTC
	mono time.Time // clock.Now at the same moment, with its monotonic reading
	// head is the audit chain head as this transaction moved it: read (and locked) by the first event the
	// transaction appends, written back once before commit, so a journal write with many events pays one
	// read and one update of the head instead of one each per event.
	head      *chainHead
	headMoved bool
	// events are the audit events appended by this transaction, written together before commit.
	events []*Event
	stmts  *sqldb.StmtCache
	missed []string // queries run unprepared, prepared once the transaction ends
}

type chainHead struct {
	Seq  int64  `db:"seq"`
	Hash string `db:"hash"`
}

// eventsPerInsert bounds a multi-row event insert on PostgreSQL (9 parameters a row), where each statement
// is a round trip: a board's largest journal commit carries ~30 events. On SQLite the one-row insert is a
// prepared statement (stmtCache) and measured faster than building multi-row ones
// (BenchmarkBoardJournal: 1.96-1.99 ms against 2.11 ms; PostgreSQL 7.6-7.9 ms against 5.2-6.7 ms).
const eventsPerInsert = 32

// flushHead writes the transaction's events and moves the chain head; it runs right before commit.
func (s *Store) flushHead(ctx context.Context, tx *txn) error {
	if !tx.headMoved {
		return nil
	}
	per := eventsPerInsert
	if s.stmts != nil {
		per = 1
	}
	for len(tx.events) > 0 {
		n := min(len(tx.events), per)
		var q strings.Builder
		q.WriteString("INSERT INTO events (seq, occurred_at, station, batch, serial, kind, payload, prev_hash, hash) VALUES ")
		args := make([]any, 0, 9*n)
		for i, e := range tx.events[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?)")
			args = append(args, e.Seq, e.Time.UnixNano(), e.Station, e.Batch, e.Serial, e.Kind, string(e.Payload), e.PrevHash, e.Hash)
		}
		if _, err := tx.ExecContext(ctx, s.q(q.String()), args...); err != nil {
			return fmt.Errorf("writing events %d..%d: %w", tx.events[0].Seq, tx.events[n-1].Seq, err)
		}
		tx.events = tx.events[n:]
	}
	if _, err := tx.ExecContext(ctx, s.q("UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1"), tx.head.Seq, tx.head.Hash); err != nil {
		return fmt.Errorf("moving the audit chain head: %w", err)
	}
	tx.headMoved = false
	return nil
}

// keepError marks an error a transaction returns after writing something that must stay, such as the
// audit event recording a refused claim: the helper commits, then returns the error.
type keepError struct{ err error }

func (k *keepError) Error() string { return k.err.Error() }
func (k *keepError) Unwrap() error { return k.err }

// errRetry asks the transaction helper to run the transaction again: an optimistic update lost a race.
var errRetry = sqldb.ErrRetry

// mapDBError turns driver errors into this package's sentinels: unique violations become ErrDuplicate,
// and conflicts that a fresh transaction resolves (PostgreSQL serialization failures and deadlocks, SQLite
// busy) become errRetry. sqldb.Classify is where the drivers' codes are read.
func mapDBError(err error) error {
	switch detail, sentinel := sqldb.Classify(err); sentinel {
	case sqldb.ErrDuplicate:
		return fmt.Errorf("%w: %s", ErrDuplicate, detail)
	case sqldb.ErrRetry:
		return fmt.Errorf("%w: %s", errRetry, detail)
	}
	if errors.Is(err, sqldb.ErrDuplicate) && !errors.Is(err, ErrDuplicate) {
		// Mapped by sqldb already (a refusal at commit).
		return fmt.Errorf("%w: %w", ErrDuplicate, err)
	}
	return err
}

// inTx runs fn in one write transaction and commits it. A transaction that lost a race (a unique
// violation on a row another station inserted meanwhile, a lost optimistic update, a deadlock) runs
// again from the start, where its own checks now see the winner and return the precise error.
func (s *Store) inTx(ctx context.Context, fn func(tx *txn) error) error {
	var missed []string
	err := s.db.InTx(ctx, sqldb.TxOptions{
		RetryIf: func(err error) bool { return errors.Is(err, ErrDuplicate) },
		OnRetry: func() { s.retries.Add(1) },
	}, func(tx *sqlx.Tx) error {
		t := &txn{Tx: tx, now: s.nowNano(), mono: clock.Now(), stmts: s.stmts}
		defer func() { missed = append(missed, t.missed...) }()
		ferr := fn(t)
		var keep *keepError
		if ferr != nil && !errors.As(ferr, &keep) {
			return mapDBError(ferr)
		}
		if err := s.flushHead(ctx, t); err != nil {
			return mapDBError(err)
		}
		if keep != nil {
			return sqldb.Keep(keep.err)
		}
		return nil
	})
	// Prepared outside the transaction: on SQLite it owned the writer's only connection.
	if len(missed) > 0 {
		s.stmts.Prepare(ctx, missed)
	}
	return mapDBError(err)
}

// nowNano is the store clock in unix nanoseconds, UTC.
func (s *Store) nowNano() int64 { return s.now().UTC().UnixNano() }

func fromNano(n int64) time.Time { return time.Unix(0, n).UTC() }
