package ca

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
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
