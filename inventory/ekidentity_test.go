package inventory

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// ekPublic is a marshalled TPMT_PUBLIC of an RSA-2048 EK for board i: a NULL-scheme restricted decryption
// key whose modulus is derived from i (cheap, so seeding many boards stays fast; the EK identity needs no
// prime).
func ekPublic(i int) []byte {
	seed := sha256.Sum256([]byte(fmt.Sprintf("ek-public-%d", i)))
	n := make([]byte, 0, 256)
	for len(n) < 256 {
		n = append(n, seed[:]...)
	}
	n[0] |= 0x80
	b := binary.BigEndian.AppendUint16(nil, 0x0001) // TPM_ALG_RSA
	b = binary.BigEndian.AppendUint16(b, 0x000B)    // SHA-256
	b = binary.BigEndian.AppendUint32(b, 0x000300B2)
	b = binary.BigEndian.AppendUint16(b, 0) // authPolicy
	b = binary.BigEndian.AppendUint16(b, 0x0010)
	b = binary.BigEndian.AppendUint16(b, 0x0010)
	b = binary.BigEndian.AppendUint16(b, 2048)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint16(b, 256)
	return append(b, n...)
}

func ekHash(i int) string {
	h, err := EKPubHash(ekPublic(i))
	if err != nil {
		panic(err)
	}
	return h
}

// TestMigrationRecomputesEKIdentities: migration 0002's Go step turns an inventory row keyed by the old
// identity (SHA-256 of the TPMT_PUBLIC bytes) into one keyed by the SPKI identity, and refuses a stored EK
// public area it cannot read.
func TestMigrationRecomputesEKIdentities(t *testing.T) {
	forEachEngine(t, func(t *testing.T, _ engine, s *Store, _ string) {
		ctx := context.Background()
		mustOpenBatch(t, s, "B1", "st1", 10)
		old := sha256.Sum256(ekPublic(1))
		tx, err := s.w.BeginTxx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO boards (serial, ek_pub_sha256, batch, state, ek_public, station,
			slot, attempt, rework_count, created_at, updated_at) VALUES ('M1', ?, 'B1', 'provisioned', ?, 'st1', 0, 1, 0, 1, 1)`),
			hex.EncodeToString(old[:]), ekPublic(1)); err != nil {
			t.Fatal(err)
		}
		if err := recomputeEKIdentities(ctx, s, tx); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := tx.QueryRowContext(ctx, "SELECT ek_pub_sha256 FROM boards WHERE serial = 'M1'").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != ekHash(1) || got == hex.EncodeToString(old[:]) {
			t.Fatalf("ek_pub_sha256 after the migration step = %s, want the SPKI identity %s", got, ekHash(1))
		}
		if _, err := tx.ExecContext(ctx, s.q("UPDATE boards SET ek_public = ? WHERE serial = 'M1'"), []byte("not a TPMT_PUBLIC")); err != nil {
			t.Fatal(err)
		}
		if err := recomputeEKIdentities(ctx, s, tx); err == nil {
			t.Fatal("migration step accepted an unreadable stored EK public area")
		}
	})
}

// TestOpenMigratesOldEKIdentities: an inventory written before migration 0002 (identities are SHA-256 of
// the TPMT_PUBLIC bytes) opened by this build keys its boards by the SPKI identity; a board claimed but
// never given its EK loses its old identity, and the old identity finds nothing any more.
func TestOpenMigratesOldEKIdentities(t *testing.T) {
	forEachEngine(t, func(t *testing.T, _ engine, s *Store, dbURL string) {
		ctx := context.Background()
		mustOpenBatch(t, s, "B1", "st1", 10)
		old := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO boards (serial, ek_pub_sha256, batch, state, ek_public, station, slot, attempt, rework_count,
				created_at, updated_at) VALUES ('OLD1', ?, 'B1', 'provisioned', ?, 'st1', 0, 1, 0, 1, 1)`, []any{old(ekPublic(1)), ekPublic(1)}},
			{`INSERT INTO boards (serial, ek_pub_sha256, batch, state, station, slot, attempt, rework_count,
				created_at, updated_at) VALUES ('OLD2', ?, 'B1', 'in_progress', 'st1', 1, 1, 0, 1, 1)`, []any{old(ekPublic(2))}},
			{"DELETE FROM schema_migrations WHERE version = 2", nil},
		} {
			if _, err := s.w.ExecContext(ctx, s.q(q.sql), q.args...); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		s2 := openStore(t, dbURL)
		if b, err := s2.GetBoardByEKHash(ctx, ekHash(1)); err != nil || b.Serial != "OLD1" {
			t.Fatalf("by the SPKI identity after the migration: %v, %v", b, err)
		}
		if _, err := s2.GetBoardByEKHash(ctx, old(ekPublic(1))); err == nil {
			t.Fatal("the TPMT_PUBLIC hash still finds the board")
		}
		if b, err := s2.GetBoardBySerial(ctx, "OLD2"); err != nil || b.EKPubSHA256 != "" {
			t.Fatalf("board without a recorded EK: %+v, %v; want its identity cleared", b, err)
		}
	})
}

// beforeMigration0002 turns the inventory at s back into what a build before migration 0002 left: the
// boards and the chain's claim events carry the old identity (SHA-256 of the TPMT_PUBLIC), the chain is
// hashed again over that, and migration 0002 is not recorded, so the next Open runs it.
func beforeMigration0002(t *testing.T, s *Store, newToOld map[string]string) {
	t.Helper()
	ctx := context.Background()
	var evs []eventRow
	if err := s.r.SelectContext(ctx, &evs, "SELECT seq, occurred_at, station, batch, serial, kind, payload, prev_hash, hash FROM events ORDER BY seq"); err != nil {
		t.Fatal(err)
	}
	prev := GenesisHash
	for _, r := range evs {
		e := r.event()
		p := string(e.Payload)
		for n, o := range newToOld {
			p = strings.ReplaceAll(p, n, o)
		}
		e.Payload, e.PrevHash = json.RawMessage(p), prev
		e.Hash = EventHash(e)
		if _, err := s.w.ExecContext(ctx, s.q("UPDATE events SET payload = ?, prev_hash = ?, hash = ? WHERE seq = ?"), p, e.PrevHash, e.Hash, e.Seq); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
	}
	if _, err := s.w.ExecContext(ctx, s.q("UPDATE chain_head SET hash = ? WHERE id = 1"), prev); err != nil {
		t.Fatal(err)
	}
	for n, o := range newToOld {
		if _, err := s.w.ExecContext(ctx, s.q("UPDATE boards SET ek_pub_sha256 = ? WHERE ek_pub_sha256 = ?"), o, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.w.ExecContext(ctx, "DELETE FROM schema_migrations WHERE version = 2"); err != nil {
		t.Fatal(err)
	}
}

// TestMigrated0002Verifies: an inventory from before migration 0002, with a board that recorded its EK
// and one claimed but stopped before it did, verifies clean unmigrated (chain and tables hold the old
// identities); once opened by this build it is migrated, each re-keyed board has a chained ek_identity_migrated event and
// VerifyState is clean; an edit of an identity after the migration, or a forged mapping, is still caught.
func TestMigrated0002Verifies(t *testing.T) {
	forEachEngine(t, func(t *testing.T, _ engine, s *Store, dbURL string) {
		ctx := context.Background()
		mustOpenBatch(t, s, "B1", "st1", 10)
		old := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
		for i, serial := range []string{"M1", "M2"} {
			if _, err := s.ClaimBoard(ctx, ClaimRequest{Serial: serial, EKPubSHA256: ekHash(i + 1), Batch: "B1", Station: "st1", Slot: i + 1}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Journal(ctx, "M1", OpTPMInfo(TPMInfo{Manufacturer: "IBM", Vendor: "SW", Firmware: "1.2"}), OpEK(nil, ekPublic(1))); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkStopped(ctx, "M2", "tpm_error", "the TPM stopped answering"); err != nil {
			t.Fatal(err)
		}
		beforeMigration0002(t, s, map[string]string{ekHash(1): old(ekPublic(1)), ekHash(2): old(ekPublic(2))})
		// Unmigrated, the tables and the chain agree on the old identities.
		if _, ds, err := s.VerifyState(ctx, ""); err != nil || len(ds) != 0 {
			t.Fatalf("the old inventory before its migration: %v %v", ds, err)
		}
		s.Close()

		s2 := openStore(t, dbURL)
		if b, err := s2.GetBoardBySerial(ctx, "M1"); err != nil || b.EKPubSHA256 != ekHash(1) {
			t.Fatalf("M1 after the migration: %+v %v", b, err)
		}
		var n int
		if err := s2.r.GetContext(ctx, &n, s2.q("SELECT COUNT(*) FROM events WHERE kind = ?"), EventEKIdentityMigrated); err != nil || n != 2 {
			t.Fatalf("%d ek_identity_migrated events (%v), want 2", n, err)
		}
		if _, ds, err := s2.VerifyState(ctx, ""); err != nil || len(ds) != 0 {
			t.Fatalf("the migrated inventory: %v %v", ds, err)
		}
		// An AppendEvent cannot add a mapping of its own.
		if _, err := s2.AppendEvent(ctx, Event{Kind: EventEKIdentityMigrated, Serial: "M1", Batch: "B1",
			Payload: json.RawMessage(`{"from_ek_pub_sha256":"` + ekHash(1) + `","ek_pub_sha256":"` + ekHash(3) + `","migration":"0002"}`)}); !errors.Is(err, ErrInvalid) {
			t.Errorf("AppendEvent(ek_identity_migrated) = %v, want ErrInvalid", err)
		}
		// An edit after the migration shows, named.
		if _, err := s2.w.ExecContext(ctx, s2.q("UPDATE boards SET ek_pub_sha256 = ? WHERE serial = 'M1'"), ekHash(3)); err != nil {
			t.Fatal(err)
		}
		_, ds, err := s2.VerifyState(ctx, "")
		if err != nil || len(ds) != 1 || ds[0].Table != "boards" || ds[0].Key != "M1" || ds[0].Field != "ek_pub_sha256" {
			t.Fatalf("an identity edited after the migration: %v %v", ds, err)
		}
	})
}
