package inventory

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/tpmline/tpmline/internal/clock"
)

// seedChain appends, straight into the events table, the events the store would have written for the
// boards seedBoards inserted (claimed, TPM info, EK, provisioned: four per board), hashed and linked after
// the current head, so the inventory verifies clean without 100,000 boards' worth of transactions.
func seedChain(t testing.TB, s *Store, batch, station string, n int) {
	t.Helper()
	ctx := context.Background()
	var head chainHead
	if err := s.r.GetContext(ctx, &head, "SELECT seq, hash FROM chain_head WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	// The rows' times: seedBoards gives board i created_at = updated_at = its now+i.
	var base int64
	if err := s.r.GetContext(ctx, &base, s.q("SELECT MIN(created_at) FROM boards WHERE batch = ?"), batch); err != nil {
		t.Fatal(err)
	}
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var evs []*Event
	flush := func() {
		var sb strings.Builder
		sb.WriteString("INSERT INTO events (seq, occurred_at, station, batch, serial, kind, payload, prev_hash, hash) VALUES ")
		args := make([]any, 0, 9*len(evs))
		for i, e := range evs {
			if i > 0 {
				sb.WriteString(",")
			}
			sb.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?)")
			args = append(args, e.Seq, e.Time.UnixNano(), e.Station, e.Batch, e.Serial, e.Kind, string(e.Payload), e.PrevHash, e.Hash)
		}
		if _, err := tx.ExecContext(ctx, s.q(sb.String()), args...); err != nil {
			t.Fatal(err)
		}
		evs = evs[:0]
	}
	for i := range n {
		serial, at := fmt.Sprintf("SN%07d", i), fromNano(base+int64(i))
		pub := ekPublic(i) // the bytes seedBoards stores
		for _, k := range []struct {
			kind string
			p    map[string]any
		}{
			{EventBoardClaimed, map[string]any{"ek_pub_sha256": ekHash(i), "slot": 0, "attempt": 1, "rework": false, "rework_count": 0}},
			{EventBoardTPMInfo, map[string]any{"manufacturer": "SIM", "vendor": "", "firmware": "", "attempt": 1}},
			{EventBoardEK, map[string]any{"ek_pub_sha256": ekHash(i), "ek_cert_len": 0, "ek_public_sha256": sha(pub), "attempt": 1}},
			{EventBoardProvisioned, map[string]any{"ek_pub_sha256": ekHash(i), "attempt": 1}},
		} {
			e := &Event{Seq: head.Seq + 1, Time: at, Station: station, Batch: batch, Serial: serial, Kind: k.kind,
				Payload: jsonPayload(k.p), PrevHash: head.Hash}
			e.Hash = EventHash(e)
			head.Seq, head.Hash = e.Seq, e.Hash
			evs = append(evs, e)
		}
		if len(evs) >= 400 {
			flush()
		}
	}
	if len(evs) > 0 {
		flush()
	}
	if _, err := tx.ExecContext(ctx, s.q("UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1"), head.Seq, head.Hash); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkVerifyState measures `station audit verify` (the replay of the chain and its comparison with
// every table) over an inventory of 100,000 provisioned boards, 400,001 events, on both engines. It
// reports events/s so inventories with more events per board can be estimated.
func BenchmarkVerifyState(b *testing.B) {
	const boards = 100_000
	ctx := context.Background()
	for _, e := range engines {
		b.Run(e.name, func(b *testing.B) {
			s := openStore(b, e.fresh(b))
			mustOpenBatch(b, s, "BENCH", "st1", boards)
			start := clock.Now()
			seedBoards(b, s, "BENCH", "st1", boards)
			seedChain(b, s, "BENCH", "st1", boards)
			b.Logf("%s: seeded %d boards and their events in %v", e.name, boards, clock.Since(start))
			b.ResetTimer()
			var events int64
			for range b.N {
				chain, ds, err := s.VerifyState(ctx, "")
				if err != nil || len(ds) != 0 {
					b.Fatalf("VerifyState = %d divergences (first %v), %v", len(ds), ds[:min(len(ds), 3)], err)
				}
				events = chain.Count
			}
			b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/verify")
		})
	}
}
