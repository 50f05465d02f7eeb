package inventory

import (
	"context"
	"errors"
	"testing"

	"github.com/tpmline/tpmline/records"
)

// A journal write is a plain records.Op; one the store does not know is refused before anything is
// written, even beside valid ones.
func TestJournalRefusesUnknownOp(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, s *Store, dbURL string) {
		ctx := context.Background()
		if _, err := s.OpenBatch(ctx, NewBatch{ID: "B1", Product: "p", WorkOrder: "W", Quantity: 1, Operator: "o", Station: "st1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ClaimBoard(ctx, ClaimRequest{Serial: "J1", EKPubSHA256: ekHash(1), Batch: "B1", Station: "st1"}); err != nil {
			t.Fatal(err)
		}
		before := countEvents(t, s)
		if err := s.Journal(ctx, "J1", records.OpStepStarted("iak"), records.Op{Kind: 99}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("unknown op: %v", err)
		}
		if err := s.Journal(ctx, "J1", records.Op{}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("zero op: %v", err)
		}
		if steps, _ := s.ListSteps(ctx, "J1"); len(steps) != 0 || countEvents(t, s) != before {
			t.Fatalf("a refused journal write left traces: %+v", steps)
		}
	})
}
