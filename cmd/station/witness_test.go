package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/records"
)

// copyDB copies a closed SQLite inventory (the station processes have exited, so its WAL is folded in)
// from src to dst, dropping dst's WAL files so the copy is what opens.
func copyDB(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		os.Remove(dst + suffix)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// rehashFrom rewrites the chain from seq on as someone with write access to the database could: the
// event at seq gets another time, and every hash from there, and the head, are computed again, so the
// local chain verifies.
func rehashFrom(t *testing.T, dbPath string, seq int64) {
	t.Helper()
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT seq, occurred_at, station, batch, serial, kind, payload, prev_hash FROM events WHERE seq >= ? ORDER BY seq`, seq)
	if err != nil {
		t.Fatal(err)
	}
	var evs []*inventory.Event
	for rows.Next() {
		var e inventory.Event
		var at int64
		var payload string
		if err := rows.Scan(&e.Seq, &at, &e.Station, &e.Batch, &e.Serial, &e.Kind, &payload, &e.PrevHash); err != nil {
			t.Fatal(err)
		}
		e.Time, e.Payload = time.Unix(0, at).UTC(), json.RawMessage(payload)
		evs = append(evs, &e)
	}
	rows.Close()
	evs[0].Time = evs[0].Time.Add(-time.Second)
	prev := evs[0].PrevHash
	for _, e := range evs {
		e.PrevHash = prev
		e.Hash = inventory.EventHash(e)
		if _, err := db.Exec(`UPDATE events SET occurred_at = ?, prev_hash = ?, hash = ? WHERE seq = ?`, e.Time.UnixNano(), e.PrevHash, e.Hash, e.Seq); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
	}
	if _, err := db.Exec(`UPDATE chain_head SET hash = ? WHERE id = 1`, prev); err != nil {
		t.Fatal(err)
	}
}

// witnessCases runs the witness's three cases on the CLI's inventory at dbPath, whose chain head the CA
// has witnessed: an older database file put back, a cut tail and a recomputed chain, each caught by
// `audit verify` against the CA though the local chain verifies; `audit witness` refuses to have a
// rewritten chain witnessed. The inventory is left as it was.
func witnessCases(t *testing.T, st func(args ...string) result, dbPath, dir string) {
	t.Helper()
	if r := st("audit", "verify"); r.code != 0 || !strings.Contains(r.stdout, "witness OK") {
		t.Fatalf("audit verify with the CA: %d %s %s", r.code, r.stdout, r.stderr)
	}
	old := dir + "/old.db"
	copyDB(t, dbPath, old)
	if r := st("batch", "open", "--id", "QA-W"); r.code != 0 {
		t.Fatalf("batch open: %d %s", r.code, r.stderr)
	}
	if r := st("audit", "witness"); r.code != 0 || !strings.Contains(r.stdout, "witnessed by the CA") {
		t.Fatalf("audit witness: %d %s %s", r.code, r.stdout, r.stderr)
	}
	good := dir + "/good.db"
	copyDB(t, dbPath, good)

	check := func(name, want string) {
		t.Helper()
		if r := st("audit", "verify"); r.code != 1 || !strings.Contains(r.stdout, want) || !strings.Contains(r.stderr, "witnessed") {
			t.Fatalf("%s: audit verify %d %s %s", name, r.code, r.stdout, r.stderr)
		}
		copyDB(t, good, dbPath)
	}
	copyDB(t, old, dbPath)
	check("older database put back", "cut off or an older database was put back")

	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	var seq int64
	var prev string
	db.QueryRow(`SELECT seq, prev_hash FROM events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
	if _, err := db.Exec(`DELETE FROM events WHERE seq = ?`, seq); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1`, seq-1, prev); err != nil {
		t.Fatal(err)
	}
	db.Close()
	check("truncated chain", "past the local chain's last event")

	rehashFrom(t, dbPath, 3)
	if r := st("audit", "witness"); r.code != 1 || !strings.Contains(r.stderr, "REFUSED") {
		t.Fatalf("a rewritten chain was witnessed: %d %s %s", r.code, r.stdout, r.stderr)
	}
	check("recomputed chain", "the chain was rewritten")
}

type caHead struct {
	seq  int64
	hash string
}

// caHeads reads the heads the CA in dir (its SQLite database) witnessed for station, newest first.
func caHeads(t *testing.T, dir, station string) []caHead {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, "ca.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT seq, hash FROM ca_witnessed_heads WHERE station = ? ORDER BY seq DESC`, station)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []caHead
	for rows.Next() {
		var h caHead
		if err := rows.Scan(&h.seq, &h.hash); err != nil {
			t.Fatal(err)
		}
		out = append(out, h)
	}
	return out
}

// provisionedSeq is the seq of serial's board.provisioned event in the inventory at dbURL.
func provisionedSeq(t *testing.T, dbURL, serial string) int64 {
	t.Helper()
	ctx := context.Background()
	inv, err := inventory.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	var seq int64
	if err := inv.ListEvents(ctx, inventory.EventFilter{Serial: serial}, func(e *inventory.Event) error {
		if e.Kind == records.EventBoardProvisioned {
			seq = e.Seq
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if seq == 0 {
		t.Fatalf("board %s has no board.provisioned event", serial)
	}
	return seq
}

// enrollmentHeadCases: with only the heads the enrollments carried (no ek-list push, no audit witness),
// a chain cut back before the newest head and a chain recomputed from an early event are each caught by
// `audit verify` against the CA, though the local chain verifies. The inventory is left as it was.
func enrollmentHeadCases(t *testing.T, st func(args ...string) result, dbPath string, newest caHead) {
	t.Helper()
	good := dbPath + ".good"
	copyDB(t, dbPath, good)
	check := func(name, want string) {
		t.Helper()
		r := st("audit", "verify")
		if r.code != 1 || !strings.Contains(r.stdout, want) || !strings.Contains(r.stderr, "witnessed") {
			t.Fatalf("%s: audit verify %d %s %s", name, r.code, r.stdout, r.stderr)
		}
		copyDB(t, good, dbPath)
	}

	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	var prev string
	if err := db.QueryRow(`SELECT prev_hash FROM events WHERE seq = ?`, newest.seq).Scan(&prev); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM events WHERE seq >= ?`, newest.seq); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1`, newest.seq-1, prev); err != nil {
		t.Fatal(err)
	}
	db.Close()
	check("chain cut before the last enrollment's head", "past the local chain's last event")

	rehashFrom(t, dbPath, 2)
	check("chain recomputed", "the chain was rewritten")
}
