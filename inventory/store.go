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
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // PostgreSQL driver "postgres"
	"github.com/tpmline/tpmline/internal/clock"
	_ "modernc.org/sqlite" // SQLite driver "sqlite", pure Go
)

// Store is an open inventory. It is safe for concurrent use by the slots of one station; several stations
// may open the same PostgreSQL inventory (or the same SQLite file on one machine) at once.
type Store struct {
	d     dialect
	w     *sqlx.DB // writes, and reads that belong to a write transaction
	r     *sqlx.DB // plain reads; the same pool as w on PostgreSQL
	where string   // the database URL without its password, for messages
	now   func() time.Time
	// retries counts transactions run again after losing a race (tests and diagnostics).
	retries atomic.Int64
	stmts   *stmtCache // SQLite writer only; nil on PostgreSQL
}

// Option adjusts a Store at Open.
type Option func(*Store)

// WithClock makes the store take the time of every row and event from now instead of time.Now.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// Open connects to the inventory at rawURL and brings its schema up to date.
//
//	sqlite://inventory.db, sqlite:///var/lib/tpmline/inventory.db   embedded SQLite (WAL, synchronous=FULL)
//	postgres://user@host:5432/db?sslmode=disable, postgresql://...  PostgreSQL via lib/pq
func Open(ctx context.Context, rawURL string, opts ...Option) (*Store, error) {
	s := &Store{now: clock.Now}
	for _, o := range opts {
		o(s)
	}
	var err error
	switch {
	case strings.HasPrefix(rawURL, "sqlite://"):
		err = s.openSQLite(ctx, strings.TrimPrefix(rawURL, "sqlite://"))
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		err = s.openPostgres(ctx, rawURL)
	default:
		return nil, fmt.Errorf("inventory URL %q: want sqlite://PATH or postgres://user@host/db", redact(rawURL))
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("migrating inventory at %s: %w", s.where, err)
	}
	return s, nil
}

func (s *Store) openSQLite(ctx context.Context, path string) error {
	s.d = sqliteDialect
	s.where = "sqlite://" + path
	if path == "" || strings.ContainsAny(path, "?#") || path == ":memory:" {
		return fmt.Errorf("inventory URL %q: want sqlite://PATH to a database file, without query parameters", s.where)
	}
	if dir := filepath.Dir(path); dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("inventory at %s: directory %s does not exist: create it first", s.where, dir)
		}
	}
	// busy_timeout comes first so the other pragmas wait for a second station process instead of failing;
	// _txlock=immediate takes the write lock at BEGIN, so a transaction never has to upgrade a read lock
	// (which SQLite may refuse with SQLITE_BUSY instead of waiting).
	common := "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	w, err := sqlx.Open(s.d.driver, path+"?"+common+"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return fmt.Errorf("opening inventory at %s: %w", s.where, err)
	}
	// One writer connection: SQLite allows one writer anyway, and this way the slots of this station queue
	// in Go rather than spinning on SQLITE_BUSY.
	w.SetMaxOpenConns(1)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return fmt.Errorf("cannot open inventory at %s: %v", s.where, err)
	}
	r, err := sqlx.Open(s.d.driver, path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return fmt.Errorf("opening inventory at %s: %w", s.where, err)
	}
	r.SetMaxOpenConns(4)
	s.w, s.r = w, r
	s.stmts = newStmtCache(w)
	return nil
}

func (s *Store) openPostgres(ctx context.Context, rawURL string) error {
	s.d = postgresDialect
	s.where = redact(rawURL)
	db, err := sqlx.Open(s.d.driver, withBinaryParameters(rawURL))
	if err != nil {
		return fmt.Errorf("inventory URL %s: %v", s.where, err)
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return fmt.Errorf("database unreachable at %s: is PostgreSQL running and the database created? (%v)", s.where, err)
	}
	s.w, s.r = db, db
	return nil
}

// Close releases the database connections.
func (s *Store) Close() error {
	var err error
	s.stmts.close()
	if s.r != nil && s.r != s.w {
		err = s.r.Close()
	}
	if s.w != nil {
		err = errors.Join(err, s.w.Close())
	}
	return err
}

// Engine is "sqlite" or "postgres".
func (s *Store) Engine() string { return s.d.name }

// Where is the database URL without its password.
func (s *Store) Where() string { return s.where }

// redact removes the password from a database URL.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}

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
	stmts  *stmtCache
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

// inTx runs fn in one write transaction and commits it. A transaction that lost a race (a unique
// violation on a row another station inserted meanwhile, a lost optimistic update, a deadlock) runs
// again from the start, where its own checks now see the winner and return the precise error.
func (s *Store) inTx(ctx context.Context, fn func(tx *txn) error) error {
	const attempts = 10
	var err error
	for i := range attempts {
		err = s.runTx(ctx, fn)
		if !errors.Is(err, errRetry) && !errors.Is(err, ErrDuplicate) {
			return err
		}
		s.retries.Add(1)
		// A little backoff so two stations that collided do not collide again in lockstep.
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

func (s *Store) runTx(ctx context.Context, fn func(tx *txn) error) error {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return mapDBError(fmt.Errorf("starting transaction on %s: %w", s.where, err))
	}
	t := &txn{Tx: tx, now: s.nowNano(), mono: clock.Now(), stmts: s.stmts}
	defer func() {
		if len(t.missed) > 0 {
			s.stmts.prepare(ctx, t.missed)
		}
	}()
	ferr := fn(t)
	var keep *keepError
	if ferr != nil && !errors.As(ferr, &keep) {
		tx.Rollback()
		return mapDBError(ferr)
	}
	if err := s.flushHead(ctx, t); err != nil {
		tx.Rollback()
		return mapDBError(err)
	}
	if err := tx.Commit(); err != nil {
		return mapDBError(fmt.Errorf("committing to %s: %w", s.where, err))
	}
	if keep != nil {
		return keep.err
	}
	return nil
}

// nowNano is the store clock in unix nanoseconds, UTC.
func (s *Store) nowNano() int64 { return s.now().UTC().UnixNano() }

func fromNano(n int64) time.Time { return time.Unix(0, n).UTC() }

// withBinaryParameters asks lib/pq to send each statement in one round trip (Parse, Bind and Execute
// together; []byte parameters in binary) unless the URL sets binary_parameters itself.
func withBinaryParameters(rawURL string) string {
	if strings.Contains(rawURL, "binary_parameters=") {
		return rawURL
	}
	if strings.Contains(rawURL, "?") {
		return rawURL + "&binary_parameters=yes"
	}
	return rawURL + "?binary_parameters=yes"
}
