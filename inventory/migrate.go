package inventory

import (
	"context"
	"io/fs"

	"github.com/jmoiron/sqlx"

	"github.com/tpmline/tpmline/internal/sqldb"
)

// migrate applies the embedded migrations (migrations/NNNN_name.sql, portable SQL with sqldb's tokens)
// not yet recorded for the inventory in schema_migrations. Builds before sqldb kept the same table without
// its owner column; sqldb moves those rows over.
func (s *Store) migrate(ctx context.Context) error {
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	return s.db.Migrate(ctx, sqldb.Migrations{Owner: "inventory", FS: files, Legacy: "schema_migrations",
		Steps: map[int]func(context.Context, *sqlx.Tx) error{
			2: func(ctx context.Context, tx *sqlx.Tx) error { return recomputeEKIdentities(ctx, s, tx) },
		}}, s.now)
}
