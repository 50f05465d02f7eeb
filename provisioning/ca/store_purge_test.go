package ca

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
)

// TestPurgeChallenges: only challenges that expired before the cutoff go; a live one stays answerable.
func TestPurgeChallenges(t *testing.T) {
	ctx := context.Background()
	st, err := OpenStore(ctx, "sqlite://"+filepath.Join(t.TempDir(), "ca.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := clock.Now()
	for _, c := range []struct {
		id  string
		exp time.Time
	}{{"old", now.Add(-2 * ChallengeRetention)}, {"live", now.Add(time.Minute)}} {
		if err := st.CreateChallenge(ctx, &ChallengeRecord{ID: c.id, Serial: "SN-1", Station: "st", Product: "p",
			ExpiresAt: c.exp, CreatedAt: now, Nonce: []byte{1}, SecretSHA256: make([]byte, 32), EKSHA256: make([]byte, 32),
			EKCert: []byte{1}, EKPublic: []byte{1}, IAKPublic: []byte{1}, IDevIDPublic: []byte{1}, TPMInfo: "{}"}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := st.PurgeChallenges(ctx, now.Add(-ChallengeRetention))
	if err != nil || n != 1 {
		t.Fatalf("purged %d, %v", n, err)
	}
	if _, err := st.Challenge(ctx, "old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old challenge: %v", err)
	}
	if _, err := st.Challenge(ctx, "live"); err != nil {
		t.Fatalf("live challenge: %v", err)
	}
}
