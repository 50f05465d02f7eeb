package sqldb

import (
	"context"
	"sync"

	"github.com/jmoiron/sqlx"
)

// StmtCache keeps a connection pool's statements prepared across transactions. Compiling a statement is
// about a third of what a journal commit costs on the pure-Go SQLite (its parser runs on every Exec
// otherwise), and a board's flow runs the same few dozen statements every time. PostgreSQL parses on the
// server in the same round trip as it executes (binary_parameters), so it needs no cache.
//
// On a single-connection pool, prepare outside any transaction, after the one that first ran a statement
// has ended: that transaction owns the connection until it ends. A nil *StmtCache is an empty cache.
type StmtCache struct {
	db *sqlx.DB
	mu sync.Mutex
	m  map[string]*sqlx.Stmt
}

// The cache only holds an owner's fixed statements: a query built per call (a batch insert of n rows, a
// filter with optional clauses) is longer or rarer, and past maxCached entries nothing new is added.
const (
	maxCached      = 256
	maxCachedQuery = 2048
)

// NewStmtCache caches statements prepared on db.
func NewStmtCache(db *sqlx.DB) *StmtCache { return &StmtCache{db: db, m: map[string]*sqlx.Stmt{}} }

// Get returns the prepared statement for query, or nil and whether query should be prepared later.
func (c *StmtCache) Get(query string) (st *sqlx.Stmt, want bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st = c.m[query]
	return st, st == nil && len(c.m) < maxCached && len(query) <= maxCachedQuery
}

// Prepare compiles queries. A failure only means they stay unprepared.
func (c *StmtCache) Prepare(ctx context.Context, queries []string) {
	for _, q := range queries {
		if _, want := c.Get(q); !want {
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

// Close closes every cached statement.
func (c *StmtCache) Close() {
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
