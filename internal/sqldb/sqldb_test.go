package sqldb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jmoiron/sqlx"
)

// fresh returns the URL of a new, empty database of engine: a temp file, or a PostgreSQL schema of its own
// (dropped when the test ends). PostgreSQL must be reachable: the test fails rather than skips.
func fresh(t *testing.T, engine string) string {
	t.Helper()
	if engine == SQLite.Name {
		return "sqlite://" + filepath.Join(t.TempDir(), "test.db")
	}
	base := os.Getenv("TPMLINE_TEST_DATABASE_URL")
	if base == "" {
		base = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	admin, err := sql.Open("postgres", base)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	schema := "sqldb_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		admin.Close()
		t.Fatalf("PostgreSQL at %s is required: %v (set TPMLINE_TEST_DATABASE_URL)", Redact(base), err)
	}
	t.Cleanup(func() {
		admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		admin.Close()
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

func open(t *testing.T, url string) *DB {
	t.Helper()
	db, err := Open(context.Background(), url, Options{What: "test database", SQLiteReaders: 2, PostgresConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"mysql://x/y", "want sqlite://PATH or postgres://"},
		{"sqlite://", "want sqlite://PATH"},
		{"sqlite:///no/such/dir/x.db", "directory /no/such/dir does not exist"},
		{"sqlite://x.db?mode=memory", "without query parameters"},
		{"postgres://u:s3cret@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", "database unreachable at postgres://u:xxxxx@127.0.0.1:1/x"},
	} {
		db, err := Open(context.Background(), tc.url, Options{What: "test database"})
		if err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", tc.url)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open(%q) = %q, want %q without the password", tc.url, err, tc.want)
		}
	}
}

func TestWithBinaryParameters(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://h/db":                          "postgres://h/db?binary_parameters=yes",
		"postgres://h/db?sslmode=disable":          "postgres://h/db?sslmode=disable&binary_parameters=yes",
		"postgres://h/db?binary_parameters=no&x=1": "postgres://h/db?binary_parameters=no&x=1",
	} {
		if got := WithBinaryParameters(in); got != want {
			t.Errorf("WithBinaryParameters(%q) = %q, want %q", in, got, want)
		}
	}
}

var engines = []string{"sqlite", "postgres"}

// TestClassify: each driver's unique violation becomes ErrDuplicate; other errors stay unclassified.
func TestClassify(t *testing.T) {
	ctx := context.Background()
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			db := open(t, fresh(t, engine))
			if _, err := db.W.ExecContext(ctx, "CREATE TABLE u (k TEXT PRIMARY KEY, v TEXT UNIQUE)"); err != nil {
				t.Fatal(err)
			}
			if _, err := db.W.ExecContext(ctx, db.Rebind("INSERT INTO u (k, v) VALUES (?, ?)"), "a", "x"); err != nil {
				t.Fatal(err)
			}
			for _, row := range [][2]string{{"a", "y"}, {"b", "x"}} {
				_, err := db.W.ExecContext(ctx, db.Rebind("INSERT INTO u (k, v) VALUES (?, ?)"), row[0], row[1])
				if _, s := Classify(err); s != ErrDuplicate || !errors.Is(MapError(err), ErrDuplicate) {
					t.Errorf("insert %v: %v classified as %v", row, err, s)
				}
			}
			_, err := db.W.ExecContext(ctx, "SELECT * FROM no_such_table")
			if _, s := Classify(err); err == nil || s != nil || MapError(err) != err {
				t.Errorf("%v classified as %v", err, s)
			}
		})
	}
}

func TestInTx(t *testing.T) {
	ctx := context.Background()
	db := open(t, fresh(t, SQLite.Name))
	if _, err := db.W.ExecContext(ctx, "CREATE TABLE n (v INTEGER)"); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		var n int
		if err := db.R.GetContext(ctx, &n, "SELECT COUNT(*) FROM n"); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Lost races run again from the start: only the winning attempt's row stays.
	calls, retries := 0, 0
	err := db.InTx(ctx, TxOptions{OnRetry: func() { retries++ }}, func(tx *sqlx.Tx) error {
		calls++
		if _, err := tx.ExecContext(ctx, "INSERT INTO n (v) VALUES (1)"); err != nil {
			return err
		}
		if calls < 3 {
			return ErrRetry
		}
		return nil
	})
	if err != nil || calls != 3 || retries != 2 || count() != 1 {
		t.Fatalf("InTx = %v after %d calls, %d retries, %d rows", err, calls, retries, count())
	}
	// RetryIf adds an owner's own reasons; any other error rolls back at once.
	mine := errors.New("mine")
	calls = 0
	err = db.InTx(ctx, TxOptions{RetryIf: func(err error) bool { return errors.Is(err, mine) && calls < 2 }}, func(tx *sqlx.Tx) error {
		calls++
		tx.ExecContext(ctx, "INSERT INTO n (v) VALUES (2)")
		return mine
	})
	if !errors.Is(err, mine) || calls != 2 || count() != 1 {
		t.Fatalf("InTx = %v after %d calls, %d rows", err, calls, count())
	}
	// Keep commits, then returns the error.
	err = db.InTx(ctx, TxOptions{}, func(tx *sqlx.Tx) error {
		tx.ExecContext(ctx, "INSERT INTO n (v) VALUES (3)")
		return Keep(mine)
	})
	if err != mine || count() != 2 {
		t.Fatalf("InTx with Keep = %v, %d rows", err, count())
	}
	// A transaction never runs more than txAttempts times.
	calls = 0
	err = db.InTx(ctx, TxOptions{}, func(tx *sqlx.Tx) error { calls++; return ErrRetry })
	if !errors.Is(err, ErrRetry) || calls != txAttempts {
		t.Fatalf("endless race: %v after %d calls", err, calls)
	}
}

// TestMigrateOwners: two owners share one database and one schema_migrations table; one writes portable
// files, the other one file per engine. A rerun applies nothing; a newer schema is refused.
func TestMigrateOwners(t *testing.T) {
	ctx := context.Background()
	now := func() time.Time { return time.Unix(1700000000, 0) }
	a := Migrations{Owner: "a", FS: fstest.MapFS{
		"0001_init.sql": {Data: []byte("CREATE TABLE a_rows (id {{ID}}, data {{BLOB}});")},
		"0002_more.sql": {Data: []byte("ALTER TABLE a_rows ADD COLUMN note TEXT;")},
		"README.txt":    {Data: []byte("not a migration")},
	}}
	b := Migrations{Owner: "b", FS: fstest.MapFS{
		"0001_init.sqlite.sql":   {Data: []byte("CREATE TABLE b_rows (id INTEGER PRIMARY KEY AUTOINCREMENT);")},
		"0001_init.postgres.sql": {Data: []byte("CREATE TABLE b_rows (id BIGSERIAL PRIMARY KEY);")},
	}}
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			db := open(t, fresh(t, engine))
			for range 2 {
				for _, m := range []Migrations{a, b} {
					if err := db.Migrate(ctx, m, now); err != nil {
						t.Fatalf("owner %s: %v", m.Owner, err)
					}
				}
			}
			var rows []struct {
				Owner   string `db:"owner"`
				Version int    `db:"version"`
				Name    string `db:"name"`
			}
			if err := db.R.SelectContext(ctx, &rows, "SELECT owner, version, name FROM schema_migrations ORDER BY owner, version"); err != nil {
				t.Fatal(err)
			}
			want := "a 1 0001_init.sql, a 2 0002_more.sql, b 1 0001_init." + engine + ".sql"
			var got []string
			for _, r := range rows {
				got = append(got, r.Owner+" "+strconv.Itoa(r.Version)+" "+r.Name)
			}
			if strings.Join(got, ", ") != want {
				t.Errorf("schema_migrations: %s, want %s", strings.Join(got, ", "), want)
			}
			if _, err := db.W.ExecContext(ctx, db.Rebind("INSERT INTO a_rows (data, note) VALUES (?, 'n')"), []byte{1}); err != nil {
				t.Errorf("migrated table: %v", err)
			}
			if _, err := db.W.ExecContext(ctx, "INSERT INTO schema_migrations (owner, version, name, applied_at) VALUES ('b', 7, 'future', 0)"); err != nil {
				t.Fatal(err)
			}
			if err := db.Migrate(ctx, b, now); err == nil || !strings.Contains(err.Error(), "newer than this build") {
				t.Errorf("newer schema: %v", err)
			}
			if err := db.Migrate(ctx, a, now); err != nil {
				t.Errorf("owner a after b's newer schema: %v", err)
			}
		})
	}
}

func TestMigrationFileRules(t *testing.T) {
	for name, files := range map[string]fstest.MapFS{
		"want NNNN_name":      {"init.sql": {}},
		"share version 1":     {"0001_a.sql": {}, "0001_b.sql": {}},
		"without gaps":        {"0001_a.sql": {}, "0003_c.sql": {}},
		"no x migrations for": {},
		"neither sqlite nor":  {"0001_a.sql": {}, "0002_b.mysql.sql": {}},
	} {
		_, err := Migrations{Owner: "x", FS: files}.list(SQLite.Name)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%v: %v, want %q", files, err, name)
		}
	}
}

// TestMigrateLegacy: a schema_migrations without its owner column belongs to the owner that names it as
// Legacy; another owner refuses it clearly until that owner has moved it over, and a legacy table of its
// own (ca_migrations-like) is moved and dropped.
func TestMigrateLegacy(t *testing.T) {
	ctx := context.Background()
	now := func() time.Time { return time.Unix(1700000000, 0) }
	a := Migrations{Owner: "a", Legacy: "schema_migrations", FS: fstest.MapFS{
		"0001_init.sql": {Data: []byte("CREATE TABLE a_rows (id {{ID}});")},
		"0002_more.sql": {Data: []byte("CREATE TABLE a_more (id {{ID}});")},
	}}
	b := Migrations{Owner: "b", Legacy: "b_versions", LegacyUnit: time.Millisecond, FS: fstest.MapFS{
		"0001_init.sql": {Data: []byte("CREATE TABLE b_rows (id {{ID}});")},
	}}
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			db := open(t, fresh(t, engine))
			for _, q := range []string{
				"CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
				"CREATE TABLE a_rows (id INTEGER)",
				"INSERT INTO schema_migrations VALUES (1, '0001_init.sql', 5)",
				"CREATE TABLE b_versions (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
				"CREATE TABLE b_rows (id INTEGER)",
				"INSERT INTO b_versions VALUES (1, 7)",
			} {
				if _, err := db.W.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.Migrate(ctx, b, now); err == nil || !strings.Contains(err.Error(), "older build of another program") {
				t.Fatalf("b before a: %v", err)
			}
			for _, m := range []Migrations{a, b, a, b} {
				if err := db.Migrate(ctx, m, now); err != nil {
					t.Fatalf("owner %s: %v", m.Owner, err)
				}
			}
			var got []string
			rows, err := db.R.QueryContext(ctx, "SELECT owner, version, name, applied_at FROM schema_migrations ORDER BY owner, version")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var owner, name string
				var v int
				var at int64
				if err := rows.Scan(&owner, &v, &name, &at); err != nil {
					t.Fatal(err)
				}
				got = append(got, owner+" "+strconv.Itoa(v)+" "+name+" "+strconv.FormatInt(at, 10))
			}
			rows.Close()
			want := "a 1 0001_init.sql 5, a 2 0002_more.sql 1700000000000000000, b 1 0001_init.sql 7000000"
			if strings.Join(got, ", ") != want {
				t.Errorf("schema_migrations: %s, want %s", strings.Join(got, ", "), want)
			}
			for _, table := range []string{"b_versions", "schema_migrations_legacy"} {
				tx := db.W.MustBegin()
				exists, err := db.tableExists(ctx, tx, table)
				tx.Rollback()
				if err != nil || exists {
					t.Errorf("%s still there (%v)", table, err)
				}
			}
		})
	}
}

// TestMustExist: with MustExist a missing SQLite file is refused, naming the path, and nothing is created;
// Created tells an owner's initialised database from a new one on both engines.
func TestMustExist(t *testing.T) {
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "invntory.db")
	_, err := Open(ctx, "sqlite://"+missing, Options{What: "inventory", MustExist: true})
	var nc *NotCreatedError
	if !errors.As(err, &nc) || !errors.Is(err, ErrNotCreated) || nc.Empty || !strings.Contains(err.Error(), "sqlite://"+missing) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused open created %s: %v", missing, err)
	}
	m := Migrations{Owner: "a", FS: fstest.MapFS{"0001_init.sql": {Data: []byte("CREATE TABLE a_rows (id {{ID}});")}}}
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			url := fresh(t, engine)
			db := open(t, url)
			for _, step := range []struct {
				do   func() error
				want bool
			}{
				{func() error { return nil }, false},
				// Another owner's schema in the same database is not this owner's.
				{func() error {
					return db.Migrate(ctx, Migrations{Owner: "b", FS: fstest.MapFS{"0001_b.sql": {Data: []byte("CREATE TABLE b_rows (id {{ID}});")}}}, time.Now)
				}, false},
				{func() error { return db.Migrate(ctx, m, time.Now) }, true},
			} {
				if err := step.do(); err != nil {
					t.Fatal(err)
				}
				if got, err := db.Created(ctx, "a", ""); err != nil || got != step.want {
					t.Fatalf("Created = %v, %v; want %v", got, err, step.want)
				}
			}
			again, err := Open(ctx, url, Options{MustExist: true})
			if err != nil {
				t.Fatalf("existing database refused: %v", err)
			}
			again.Close()
		})
	}
}

// TestMigrateCurrentNeedsNoLock: a schema at this build's newest version is checked by one read, so
// opening it while another process holds the write lock (SQLite) or the migration lock (PostgreSQL) does
// not wait; a schema one version behind still takes the full path and waits for the lock.
func TestMigrateCurrentNeedsNoLock(t *testing.T) {
	now := func() time.Time { return time.Unix(1700000000, 0) }
	a := Migrations{Owner: "a", FS: fstest.MapFS{"0001_init.sql": {Data: []byte("CREATE TABLE a_rows (id {{ID}});")}}}
	a2 := Migrations{Owner: "a", FS: fstest.MapFS{
		"0001_init.sql": a.FS.(fstest.MapFS)["0001_init.sql"],
		"0002_more.sql": {Data: []byte("ALTER TABLE a_rows ADD COLUMN note TEXT;")},
	}}
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			url := fresh(t, engine)
			db := open(t, url)
			if err := db.Migrate(ctx, a, now); err != nil {
				t.Fatal(err)
			}
			other := open(t, url)
			conn, err := other.W.Connx(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			lock := "BEGIN IMMEDIATE"
			if engine == Postgres.Name {
				lock = "SELECT pg_advisory_lock(" + strconv.FormatInt(migrationLockKey, 10) + ")"
			}
			if _, err := conn.ExecContext(ctx, lock); err != nil {
				t.Fatal(err)
			}
			short, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if err := db.Migrate(short, a, now); err != nil {
				t.Errorf("current schema while another holds the lock: %v", err)
			}
			if created, err := db.Created(short, "a", ""); err != nil || !created {
				t.Errorf("Created while another holds the lock: %v, %v", created, err)
			}
			behind, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel2()
			if err := db.Migrate(behind, a2, now); err == nil {
				t.Errorf("a schema one version behind was migrated while another held the lock")
			}
		})
	}
}
