package inventory

import (
	"context"
	"database/sql"

	"github.com/jmoiron/sqlx"
)

// A write transaction runs the store's fixed statements through sqldb.StmtCache on SQLite: a query the
// cache lacks runs unprepared and is prepared once the transaction has ended (it owns the writer's only
// connection until then).

// stmt returns query's cached statement bound to this transaction, or nil after noting the query for
// preparation once the transaction ends.
func (tx *txn) stmt(ctx context.Context, query string) *sqlx.Stmt {
	st, want := tx.stmts.Get(query)
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
