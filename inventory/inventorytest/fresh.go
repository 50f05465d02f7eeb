package inventorytest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/sqldb"
	"github.com/tpmline/tpmline/inventory"
)

// Engines are the inventory's two engines, each test runs on both.
var Engines = []string{"sqlite", "postgres"}

// PostgresURL is the PostgreSQL the tests run against (TPMLINE_TEST_DATABASE_URL, or the local one).
func PostgresURL() string {
	if u := os.Getenv("TPMLINE_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// FreshURL returns the URL of a new, empty inventory database of engine: a temp file, or a PostgreSQL
// schema of its own dropped when the test ends. PostgreSQL must be reachable: the test fails rather than
// skips, so a run without it cannot pass by testing only SQLite.
func FreshURL(t testing.TB, engine string) string {
	t.Helper()
	if engine == "sqlite" {
		return "sqlite://" + filepath.Join(t.TempDir(), "inventory.db")
	}
	base := PostgresURL()
	admin, err := sql.Open("postgres", base)
	if err != nil {
		t.Fatalf("PostgreSQL URL %s: %v", sqldb.Redact(base), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		t.Fatalf("PostgreSQL unreachable at %s: %v", sqldb.Redact(base), err)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	schema := "invt_" + hex.EncodeToString(rnd[:])
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatalf("creating schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
		admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Open opens the inventory at dbURL for the test's duration.
func Open(t testing.TB, dbURL string, opts ...inventory.Option) *inventory.Store {
	t.Helper()
	s, err := inventory.Open(context.Background(), dbURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
