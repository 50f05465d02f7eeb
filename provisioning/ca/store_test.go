package ca

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/internal/sqldb"
)

func testStore(t *testing.T, engine string) *Store {
	t.Helper()
	url := sqliteURL(t)
	if engine == "postgres" {
		url = pgURL(t)
	}
	st, err := OpenStore(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// completion is what round 2 writes for a first enrollment: two certificates and one event.
func completion(ek, serial string, n int, at time.Time) *Completion {
	c := &Completion{EKSHA256: []byte(ek), EKCert: []byte{1}, Serial: serial, Product: "p", Station: "st", At: at, SessionID: "s"}
	for _, kind := range []string{"iak", "idevid"} {
		c.Certs = append(c.Certs, IssuedCert{SerialNumber: fmt.Sprintf("%s-%d-%s", serial, n, kind), Kind: kind, BoardSerial: serial,
			EKSHA256: []byte(ek), SessionID: "s", Station: "st", DER: []byte{2}, NotBefore: at, NotAfter: at, IssuedAt: at})
	}
	c.Events = []Event{{At: at, Station: "st", Kind: "enrolled", Serial: serial, EKSHA256: []byte(ek), SessionID: "s"}}
	return c
}

// TestCompleteEnrollmentRefusals: a first enrollment that breaks the EK/serial rule is refused with the rule's
// sentinel and writes nothing, on both engines.
func TestCompleteEnrollmentRefusals(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			st := testStore(t, engine)
			now := clock.Now()
			if err := st.CompleteEnrollment(ctx, completion("EK-1", "SN-1", 0, now)); err != nil {
				t.Fatal(err)
			}
			for i, c := range []struct {
				ek, serial string
				want       error
			}{
				{"EK-1", "SN-1", ErrAlreadyEnrolled},
				{"EK-1", "SN-2", ErrEKOtherSerial},
				{"EK-2", "SN-1", ErrSerialOtherEK},
			} {
				if err := st.CompleteEnrollment(ctx, completion(c.ek, c.serial, i+1, now)); !errors.Is(err, c.want) {
					t.Errorf("%s under %s: %v, want %v", c.ek, c.serial, err, c.want)
				}
			}
			for _, serial := range []string{"SN-1", "SN-2"} {
				if certs, err := st.CertificatesByBoard(ctx, serial); err != nil || len(certs) != map[string]int{"SN-1": 2, "SN-2": 0}[serial] {
					t.Errorf("%s: %d certificates on record, %v", serial, len(certs), err)
				}
			}
			if evs, err := st.RecentEvents(ctx, 10); err != nil || len(evs) != 1 {
				t.Errorf("%d events on record, %v", len(evs), err)
			}
		})
	}
}

// TestClaimChallengeFor: only the opening station's unused, unexpired session is claimed, exactly once; the
// others are left as they were.
func TestClaimChallengeFor(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			st := testStore(t, engine)
			now := clock.Now().UTC().Truncate(time.Millisecond)
			for _, id := range []string{"live", "old"} {
				exp := now.Add(time.Minute)
				if id == "old" {
					exp = now
				}
				if err := st.CreateChallenge(ctx, &ChallengeRecord{ID: id, Serial: "SN-1", Station: "st", Product: "p",
					ExpiresAt: exp, CreatedAt: now, Nonce: []byte{1}, SecretSHA256: make([]byte, 32), EKSHA256: make([]byte, 32),
					EKCert: []byte{1}, EKPublic: []byte{1}, IAKPublic: []byte{1}, IDevIDPublic: []byte{1}, TPMInfo: "{}"}); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range []struct{ id, station string }{{"none", "st"}, {"live", "other"}, {"old", "st"}} {
				if _, err := st.ClaimChallengeFor(ctx, c.id, c.station, now); !errors.Is(err, ErrNotClaimable) {
					t.Errorf("claim %s by %s: %v", c.id, c.station, err)
				}
			}
			for _, id := range []string{"live", "old"} {
				if ch, err := st.Challenge(ctx, id); err != nil || ch.Used {
					t.Errorf("%s after refused claims: used %v, %v", id, ch != nil && ch.Used, err)
				}
			}
			ch, err := st.ClaimChallengeFor(ctx, "live", "st", now)
			if err != nil || ch.ID != "live" || ch.Serial != "SN-1" || !ch.Used || !ch.ExpiresAt.Equal(now.Add(time.Minute)) {
				t.Fatalf("claim: %+v, %v", ch, err)
			}
			if _, err := st.ClaimChallengeFor(ctx, "live", "st", now); !errors.Is(err, ErrNotClaimable) {
				t.Errorf("second claim: %v", err)
			}
		})
	}
}

// TestOpenOldBookkeeping: a CA database migrated by a build before sqldb (its versions in ca_migrations)
// opens without migrating again, keeps its rows, and its bookkeeping moves to schema_migrations under "ca".
func TestOpenOldBookkeeping(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			url := sqliteURL(t)
			if engine == "postgres" {
				url = pgURL(t)
			}
			db, err := sqldb.Open(ctx, url, sqldb.Options{})
			if err != nil {
				t.Fatal(err)
			}
			schema, err := migrationFiles.ReadFile("migrations/0001_init." + engine + ".sql")
			if err != nil {
				t.Fatal(err)
			}
			// What the build before sqldb ran: its bookkeeping table, migration 1, its record (milliseconds).
			for _, q := range []string{
				`CREATE TABLE IF NOT EXISTS ca_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`,
				string(schema),
				`INSERT INTO ca_migrations (version, applied_at) VALUES (1, 1700000000000)`,
				`INSERT INTO ca_events (at, station, kind, serial, session_id, detail) VALUES (1, 'st', 'enrolled', 'SN-OLD', 's', '')`,
			} {
				if _, err := db.W.ExecContext(ctx, q); err != nil {
					t.Fatalf("building the old CA database: %v", err)
				}
			}
			db.Close()
			st, err := OpenStore(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var owner, name string
			var version int
			var at int64
			if err := st.db.QueryRowContext(ctx, "SELECT owner, version, name, applied_at FROM schema_migrations WHERE version = 1").Scan(&owner, &version, &name, &at); err != nil {
				t.Fatal(err)
			}
			if owner != "ca" || version != 1 || name != "0001_init."+engine+".sql" || at != 1700000000000*int64(time.Millisecond) {
				t.Errorf("bookkeeping moved to (%s, %d, %s, %d)", owner, version, name, at)
			}
			var n int
			// The legacy table knew 0001 only; the later migrations are applied on top.
			later, _ := fs.Glob(migrationFiles, "migrations/*."+engine+".sql")
			if err := st.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil || n != len(later) {
				t.Errorf("%d migrations recorded (%v), want %d", n, err, len(later))
			}
			evs, err := st.RecentEvents(ctx, 10)
			if err != nil || len(evs) != 1 || evs[0].Serial != "SN-OLD" {
				t.Errorf("events after the move: %v %v", evs, err)
			}
			if err := st.CompleteEnrollment(ctx, completion("ek-new", "SN-NEW", 1, clock.Now())); err != nil {
				t.Errorf("enrolling after the move: %v", err)
			}
		})
	}
}
