package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Migrations are one owner's embedded schema files, named NNNN_name.sql (portable SQL with the tokens
// {{ID}} and {{BLOB}}, replaced per engine) or NNNN_name.ENGINE.sql (one file per engine, for a schema
// written out in each engine's own types). Versions count 1, 2, ... per owner.
type Migrations struct {
	Owner string // the owner's name in schema_migrations: "inventory", "ca"
	FS    fs.FS  // the files, at the root of FS
	// Legacy names the table an older build kept this owner's applied versions in: schema_migrations
	// without an owner column (the inventory's), or a table of its own with version and applied_at columns
	// (the CA's ca_migrations). Migrate moves its rows into the shared table once and drops it.
	Legacy string
	// LegacyUnit is the unit of the legacy table's applied_at (time.Nanosecond, time.Millisecond).
	LegacyUnit time.Duration
	// Steps are Go work a migration needs after its SQL (a value recomputed from stored bytes), run in the
	// same transaction, keyed by version.
	Steps map[int]func(ctx context.Context, tx *sqlx.Tx) error
}

type migration struct {
	version int
	name    string
	sql     string
}

// Every owner's applied versions live in one table, so several owners can share a database.
const schemaMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
	owner      TEXT    NOT NULL,
	version    INTEGER NOT NULL,
	name       TEXT    NOT NULL,
	applied_at BIGINT  NOT NULL,
	PRIMARY KEY (owner, version))`

// migrationLockKey is the pg_advisory_xact_lock key that serialises migrations of every owner when
// several processes start at once against one PostgreSQL database ("tpmline" in ASCII).
const migrationLockKey = 0x74706d6c696e65

// list reads the files for engine in version order.
func (m Migrations) list(engine string) ([]migration, error) {
	entries, err := fs.ReadDir(m.FS, ".")
	if err != nil {
		return nil, err
	}
	var ms []migration
	seen := map[int]string{}
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), ".sql")
		if !ok || e.IsDir() {
			continue
		}
		if stem, eng, perEngine := strings.Cut(base, "."); perEngine {
			if eng != SQLite.Name && eng != Postgres.Name {
				return nil, fmt.Errorf("migration file %s: engine %q is neither sqlite nor postgres", e.Name(), eng)
			}
			if eng != engine {
				continue
			}
			base = stem
		}
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql or NNNN_name.ENGINE.sql", e.Name())
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migration files %s and %s share version %d", other, e.Name(), v)
		}
		seen[v] = e.Name()
		b, err := fs.ReadFile(m.FS, e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, mg := range ms {
		if mg.version != i+1 {
			return nil, fmt.Errorf("migration %s: versions must count 1, 2, ... without gaps", mg.name)
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("no %s migrations for %s", m.Owner, engine)
	}
	return ms, nil
}

// Migrate applies the owner's migrations not yet recorded in schema_migrations, all in one transaction
// (DDL is transactional on both engines), so a failed upgrade leaves the schema as it was. now stamps the
// rows (unix nanoseconds).
func (db *DB) Migrate(ctx context.Context, m Migrations, now func() time.Time) error {
	ms, err := m.list(db.Name)
	if err != nil {
		return err
	}
	// A process per board opens the database every time: when the newest version this build knows is
	// already recorded, one read says so, without the write transaction (and, on PostgreSQL, the lock).
	// Anything else (no table yet, an older build's table without the owner column, a version behind or
	// ahead) takes the full path below, which decides.
	if newest, ok := db.newestApplied(ctx, m.Owner); ok && newest == ms[len(ms)-1].version {
		return nil
	}
	return db.InTx(ctx, TxOptions{}, func(tx *sqlx.Tx) error {
		if db.Name == Postgres.Name {
			// A second process starting now waits here, then finds the migrations applied.
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLockKey); err != nil {
				return fmt.Errorf("taking the migration lock: %w", err)
			}
		}
		if m.Legacy != "schema_migrations" {
			// The table may predate its owner column, left by an older build of another owner sharing this
			// database; that owner's Migrate moves it over, and reading it now would fail obscurely.
			if exists, err := db.tableExists(ctx, tx, "schema_migrations"); err != nil {
				return err
			} else if exists {
				if hasOwner, err := db.columnExists(ctx, tx, "schema_migrations", "owner"); err != nil {
					return err
				} else if !hasOwner {
					return fmt.Errorf("schema_migrations in %s was written by an older build of another program sharing this database: open it with that program's new build first", db.Where)
				}
			}
		}
		if err := db.adoptLegacy(ctx, tx, m, ms); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, schemaMigrations); err != nil {
			return fmt.Errorf("creating schema_migrations: %w", err)
		}
		var newest sql.NullInt64
		if err := tx.GetContext(ctx, &newest, db.Rebind("SELECT MAX(version) FROM schema_migrations WHERE owner = ?"), m.Owner); err != nil {
			return fmt.Errorf("reading schema_migrations: %w", err)
		}
		if known := ms[len(ms)-1].version; newest.Valid && int(newest.Int64) > known {
			return fmt.Errorf("%s schema version %d is newer than this build knows (%d): upgrade the software", m.Owner, newest.Int64, known)
		}
		for _, mg := range ms {
			if newest.Valid && mg.version <= int(newest.Int64) {
				continue
			}
			if _, err := tx.ExecContext(ctx, db.schema.Replace(mg.sql)); err != nil {
				return fmt.Errorf("migration %s: %w", mg.name, err)
			}
			if step := m.Steps[mg.version]; step != nil {
				if err := step(ctx, tx); err != nil {
					return fmt.Errorf("migration %s: %w", mg.name, err)
				}
			}
			if _, err := tx.ExecContext(ctx, db.Rebind("INSERT INTO schema_migrations (owner, version, name, applied_at) VALUES (?, ?, ?, ?)"),
				m.Owner, mg.version, mg.name, now().UTC().UnixNano()); err != nil {
				return fmt.Errorf("recording migration %s: %w", mg.name, err)
			}
		}
		return nil
	})
}

// adoptLegacy moves an older build's bookkeeping into the shared schema_migrations table.
func (db *DB) adoptLegacy(ctx context.Context, tx *sqlx.Tx, m Migrations, ms []migration) error {
	if m.Legacy == "" {
		return nil
	}
	exists, err := db.tableExists(ctx, tx, m.Legacy)
	if err != nil || !exists {
		return err
	}
	unit := m.LegacyUnit
	if unit == 0 {
		unit = time.Nanosecond
	}
	src := m.Legacy
	if m.Legacy == "schema_migrations" {
		hasOwner, err := db.columnExists(ctx, tx, "schema_migrations", "owner")
		if err != nil || hasOwner {
			return err
		}
		// The shared table takes the old one's name: move the old one aside first.
		src = "schema_migrations_legacy"
		if _, err := tx.ExecContext(ctx, "ALTER TABLE schema_migrations RENAME TO "+src); err != nil {
			return fmt.Errorf("moving the old schema_migrations aside: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, schemaMigrations); err != nil {
		return fmt.Errorf("creating schema_migrations: %w", err)
	}
	var old []struct {
		Version   int   `db:"version"`
		AppliedAt int64 `db:"applied_at"`
	}
	if err := tx.SelectContext(ctx, &old, "SELECT version, applied_at FROM "+src+" ORDER BY version"); err != nil {
		return fmt.Errorf("reading %s: %w", m.Legacy, err)
	}
	for _, o := range old {
		name := fmt.Sprintf("%04d (recorded by an older build)", o.Version)
		if o.Version >= 1 && o.Version <= len(ms) {
			name = ms[o.Version-1].name
		}
		if _, err := tx.ExecContext(ctx, db.Rebind("INSERT INTO schema_migrations (owner, version, name, applied_at) VALUES (?, ?, ?, ?)"),
			m.Owner, o.Version, name, o.AppliedAt*int64(unit)); err != nil {
			return fmt.Errorf("moving %s version %d: %w", m.Legacy, o.Version, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "DROP TABLE "+src); err != nil {
		return fmt.Errorf("dropping %s: %w", m.Legacy, err)
	}
	return nil
}

// Created reports whether the database holds owner's schema: a migration recorded for owner, or an older
// build's bookkeeping (schema_migrations without an owner column, or legacy, such as the CA's
// ca_migrations). A database that holds neither is new, whatever else it holds.
func (db *DB) Created(ctx context.Context, owner, legacy string) (bool, error) {
	if _, ok := db.newestApplied(ctx, owner); ok {
		return true, nil
	}
	exists, err := db.tableExists(ctx, db.R, "schema_migrations")
	if err != nil {
		return false, err
	}
	if exists {
		hasOwner, err := db.columnExists(ctx, db.R, "schema_migrations", "owner")
		if err != nil || !hasOwner {
			return !hasOwner, err
		}
		var n int
		if err := sqlx.GetContext(ctx, db.R, &n, db.Rebind("SELECT COUNT(*) FROM schema_migrations WHERE owner = ?"), owner); err != nil {
			return false, fmt.Errorf("reading schema_migrations: %w", err)
		}
		if n > 0 {
			return true, nil
		}
	}
	if legacy == "" || legacy == "schema_migrations" {
		return false, nil
	}
	return db.tableExists(ctx, db.R, legacy)
}

// newestApplied is the owner's newest version recorded in schema_migrations, in one query on the readers'
// pool (for SQLite the connection that then serves the command's reads, so it reads the schema once); ok is false when there is none or the query fails (no table,
// or an older build's table without the owner column), so the caller takes its full path.
func (db *DB) newestApplied(ctx context.Context, owner string) (int, bool) {
	var newest sql.NullInt64
	if err := sqlx.GetContext(ctx, db.R, &newest, db.Rebind("SELECT MAX(version) FROM schema_migrations WHERE owner = ?"), owner); err != nil || !newest.Valid {
		return 0, false
	}
	return int(newest.Int64), true
}

func (db *DB) tableExists(ctx context.Context, tx sqlx.QueryerContext, table string) (bool, error) {
	var n int
	var err error
	if db.Name == Postgres.Name {
		// current_schema() is where this connection's CREATE TABLE lands (search_path may be set in the URL).
		err = sqlx.GetContext(ctx, tx, &n, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1", table)
	} else {
		err = sqlx.GetContext(ctx, tx, &n, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", table)
	}
	if err != nil {
		return false, fmt.Errorf("looking for table %s: %w", table, err)
	}
	return n > 0, nil
}

func (db *DB) columnExists(ctx context.Context, tx sqlx.QueryerContext, table, column string) (bool, error) {
	var n int
	var err error
	if db.Name == Postgres.Name {
		err = sqlx.GetContext(ctx, tx, &n, "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2", table, column)
	} else {
		err = sqlx.GetContext(ctx, tx, &n, "SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?", table, column)
	}
	if err != nil {
		return false, fmt.Errorf("reading the columns of %s: %w", table, err)
	}
	return n > 0, nil
}
