package inventory

import (
	"context"
	"database/sql"
	"sync"

	"github.com/jmoiron/sqlx"
)

// stmtCache keeps the SQLite writer's statements prepared across transactions. Compiling a statement is
// about a third of what a journal commit costs on the pure-Go SQLite (its parser runs on every Exec
// otherwise), and a board's flow runs the same few dozen statements every time.
//
// A statement is prepared outside any transaction, after the one that first ran it has ended: the writer
// pool holds a single connection, which that transaction owns until it ends. PostgreSQL parses on the server
// in the same round trip as it executes (binary_parameters), so its store does not use the cache.
type stmtCache struct {
	db *sqlx.DB
	mu sync.Mutex
	m  map[string]*sqlx.Stmt
}

// The cache only holds the store's own fixed statements: a query built per call (a batch insert of n rows,
// a filter with optional clauses) is longer or rarer, and past maxCached entries nothing new is added.
const (
	maxCached      = 256
	maxCachedQuery = 2048
)

func newStmtCache(db *sqlx.DB) *stmtCache { return &stmtCache{db: db, m: map[string]*sqlx.Stmt{}} }

// get returns the prepared statement for query, or nil (and whether query should be prepared later).
func (c *stmtCache) get(query string) (st *sqlx.Stmt, want bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st = c.m[query]
	return st, st == nil && len(c.m) < maxCached && len(query) <= maxCachedQuery
}

// prepare compiles the queries a transaction ran unprepared. A failure only means they stay unprepared.
func (c *stmtCache) prepare(ctx context.Context, queries []string) {
	for _, q := range queries {
		if _, want := c.get(q); !want {
			continue
		}
		st, err := c.db.PreparexContext(ctx, q)
		if err != nil {
			continue
		}
		c.mu.Lock()
		if _, dup := c.m[q]; dup || len(c.m) >= maxCached {
			st.Close()
		} else {
			c.m[q] = st
		}
		c.mu.Unlock()
	}
}

func (c *stmtCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		st.Close()
		delete(c.m, q)
	}
}

// stmt returns query's cached statement bound to this transaction, or nil after noting the query for
// preparation once the transaction ends.
func (tx *txn) stmt(ctx context.Context, query string) *sqlx.Stmt {
	st, want := tx.stmts.get(query)
	if st != nil {
		return tx.Tx.StmtxContext(ctx, st)
	}
	if want {
		tx.missed = append(tx.missed, query)
	}
	return nil
}

// ExecContext, GetContext, SelectContext and QueryRowContext run query through the statement cache.

func (tx *txn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := tx.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.Tx.ExecContext(ctx, query, args...)
}

func (tx *txn) GetContext(ctx context.Context, dest any, query string, args ...any) error {
	if st := tx.stmt(ctx, query); st != nil {
		return st.GetContext(ctx, dest, args...)
	}
	return tx.Tx.GetContext(ctx, dest, query, args...)
}

func (tx *txn) SelectContext(ctx context.Context, dest any, query string, args ...any) error {
	if st := tx.stmt(ctx, query); st != nil {
		return st.SelectContext(ctx, dest, args...)
	}
	return tx.Tx.SelectContext(ctx, dest, query, args...)
}

func (tx *txn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := tx.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.Tx.QueryRowContext(ctx, query, args...)
}
