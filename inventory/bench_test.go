package inventory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
)

// BenchmarkLookup measures board lookups by serial and by EK hash in an inventory of 100,000 boards, on
// PostgreSQL (the shared line inventory) and, for comparison in the same run, on SQLite. Besides ns/op it
// reports the p50 and p99 latency of single lookups.
func BenchmarkLookup(b *testing.B) {
	const boards = 100_000
	ctx := context.Background()
	for _, e := range engines {
		b.Run(e.name, func(b *testing.B) {
			s := openStore(b, e.fresh(b))
			mustOpenBatch(b, s, "BENCH", "st1", boards)
			start := clock.Now()
			seedBoards(b, s, "BENCH", "st1", boards)
			if _, err := s.w.ExecContext(ctx, "ANALYZE"); err != nil {
				b.Fatal(err)
			}
			b.Logf("%s: seeded %d boards in %v", e.name, boards, clock.Since(start))
			lookups := []struct {
				name string
				get  func(i int) (*Board, error)
			}{
				{"serial", func(i int) (*Board, error) { return s.GetBoardBySerial(ctx, serialOf(i)) }},
				{"ekhash", func(i int) (*Board, error) { return s.GetBoardByEKHash(ctx, ekHash(i)) }},
			}
			for _, l := range lookups {
				b.Run(l.name, func(b *testing.B) {
					rng := rand.New(rand.NewPCG(1, 2))
					var lat []time.Duration
					for b.Loop() {
						i := rng.IntN(boards)
						t0 := clock.Now()
						got, err := l.get(i)
						lat = append(lat, clock.Since(t0))
						if err != nil || got.Serial != serialOf(i) {
							b.Fatalf("lookup %d = %+v, %v", i, got, err)
						}
					}
					slices.Sort(lat)
					b.ReportMetric(float64(percentile(lat, 50).Microseconds()), "p50-µs")
					b.ReportMetric(float64(percentile(lat, 99).Microseconds()), "p99-µs")
				})
			}
		})
	}
}

func serialOf(i int) string { return fmt.Sprintf("SN%07d", i) }

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := (len(sorted)*p + 99) / 100
	return sorted[max(k-1, 0)]
}

// BenchmarkBoardJournal measures the inventory writes of one board's flow as the station makes them: the
// claim, then one Journal commit before each durable side effect and the end state, with the keys and
// certificates in the commits that carry them. One op is one board.
func BenchmarkBoardJournal(b *testing.B) {
	ctx := context.Background()
	for _, e := range engines {
		b.Run(e.name, func(b *testing.B) {
			s := openStore(b, e.fresh(b))
			mustOpenBatch(b, s, "B1", "st1", 1_000_000)
			c1, c2 := testCert(b, 1), testCert(b, 2)
			ran := func(step string) Op { return OpStepRan(step, StepOutcome{Duration: time.Millisecond}, false) }
			for i := 0; b.Loop(); i++ {
				serial := fmt.Sprint("J", i)
				if _, err := s.ClaimBoard(ctx, ClaimRequest{Serial: serial, EKPubSHA256: ekHash(i), Batch: "B1", Station: "st1"}); err != nil {
					b.Fatal(err)
				}
				commits := [][]Op{
					{ran("connect"), ran("flush"), ran("tpm-info"), ran("ek-certs"), ran("ek"), ran("ek-check"), ran("inventory-check"),
						OpTPMInfo(TPMInfo{Manufacturer: "IBM"}), OpEK([]byte("cert"), ekPublic(i)),
						ran("iak"), ran("idevid"), ran("enroll"),
						OpKey(Key{Kind: KindIAK, Public: []byte("iak"), Handle: 0x81020001, Name: []byte("n1")}),
						OpKey(Key{Kind: KindIDevID, Public: []byte("idevid"), Handle: 0x81020000, Name: []byte("n2")}),
						ran("activate-credential"), ran("certify"), OpStepStarted("issue")},
					{OpStepFinished("issue", StepOutcome{}), OpCertificate(KindIAK, c1), OpCertificate(KindIDevID, c2), OpStepStarted("persist")},
					{OpStepFinished("persist", StepOutcome{}), OpStepStarted("nv-write")},
					{OpStepFinished("nv-write", StepOutcome{}), ran("read-back"), OpProvisioned()},
				}
				for _, ops := range commits {
					if err := s.Journal(ctx, serial, ops...); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
