package inventory

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
)

// testDatabaseURL is the PostgreSQL the suite runs against. It must be reachable: the suite fails rather
// than skips, so a CI run without PostgreSQL cannot pass by testing only SQLite.
func testDatabaseURL() string {
	if u := os.Getenv("TPMLINE_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// engine opens fresh, isolated databases of one kind.
type engine struct {
	name string
	// fresh returns the URL of a new, empty database (a temp file, or a PostgreSQL schema of its own that
	// is dropped when the test ends).
	fresh func(t testing.TB) string
}

var engines = []engine{
	{"sqlite", func(t testing.TB) string { return "sqlite://" + filepath.Join(t.TempDir(), "inventory.db") }},
	{"postgres", freshPostgres},
}

func freshPostgres(t testing.TB) string {
	t.Helper()
	base := testDatabaseURL()
	admin, err := sql.Open("postgres", base)
	if err != nil {
		t.Fatalf("PostgreSQL URL %s: %v", redact(base), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		t.Fatalf("PostgreSQL unreachable at %s: %v (start it, or set TPMLINE_TEST_DATABASE_URL)", redact(base), err)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	schema := "inv_test_" + hex.EncodeToString(rnd[:])
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
		t.Fatalf("PostgreSQL URL %s: %v", redact(base), err)
	}
	q := u.Query()
	q.Set("search_path", schema) // lib/pq sends unknown parameters as run-time settings
	u.RawQuery = q.Encode()
	return u.String()
}

func openStore(t testing.TB, dbURL string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(context.Background(), dbURL, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// forEachEngine runs fn once per engine, each on a fresh database.
func forEachEngine(t *testing.T, fn func(t *testing.T, e engine, s *Store, dbURL string)) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			dbURL := e.fresh(t)
			fn(t, e, openStore(t, dbURL), dbURL)
		})
	}
}

func mustOpenBatch(t testing.TB, s *Store, id, station string, qty int) *Batch {
	t.Helper()
	b, err := s.OpenBatch(context.Background(), NewBatch{ID: id, Product: "gw-100", WorkOrder: "WO-" + id,
		Quantity: qty, Operator: "alice", Station: station})
	if err != nil {
		t.Fatalf("OpenBatch %s: %v", id, err)
	}
	return b
}

// testCert makes a DER certificate with the 802.1AR "no expiry" notAfter.
func testCert(t testing.TB, serial int64) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "board"},
		NotBefore: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// seedBoards inserts n provisioned boards straight into the table, many rows per statement, so the
// streaming test and the benchmark do not spend minutes in per-board transactions. Serials are
// SN0000000.., EKs ekHash(i).
func seedBoards(t testing.TB, s *Store, batch, station string, n int) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	const perStmt = 500
	now := clock.Now().UnixNano()
	for start := 0; start < n; start += perStmt {
		end := min(start+perStmt, n)
		var sb strings.Builder
		sb.WriteString(`INSERT INTO boards (serial, ek_pub_sha256, batch, state, tpm_manufacturer, ek_public, station,
			slot, attempt, rework_count, created_at, updated_at) VALUES `)
		args := make([]any, 0, (end-start)*8)
		for i := start; i < end; i++ {
			if i > start {
				sb.WriteString(",")
			}
			sb.WriteString("(?, ?, ?, 'provisioned', 'SIM', ?, ?, 0, 1, 0, ?, ?)")
			pub := ekPublic(i)
			args = append(args, fmt.Sprintf("SN%07d", i), ekHash(i), batch, pub, station, now+int64(i), now+int64(i))
		}
		if _, err := tx.ExecContext(ctx, s.q(sb.String()), args...); err != nil {
			t.Fatalf("seeding boards %d..%d: %v", start, end, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
