package inventory

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestJournalOps: several writes in one transaction, all or none.
func TestJournalOps(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, s *Store, dbURL string) {
		ctx := context.Background()
		if _, err := s.OpenBatch(ctx, NewBatch{ID: "B1", Product: "p", WorkOrder: "W", Quantity: 1, Operator: "o", Station: "st1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ClaimBoard(ctx, ClaimRequest{Serial: "J1", EKPubSHA256: ekHash(1), Batch: "B1", Station: "st1"}); err != nil {
			t.Fatal(err)
		}
		// Read-only steps journaled after the fact, with the TPM facts, in one commit.
		if err := s.Journal(ctx, "J1", OpStepRan("tpm-info", StepOutcome{Duration: time.Millisecond}, false),
			OpTPMInfo(TPMInfo{Manufacturer: "IBM", Vendor: "SW", Firmware: "1.2"}),
			OpEK(nil, []byte("ek-public-1")), OpStepStarted("iak")); err != nil {
			t.Fatal(err)
		}
		b, _ := s.GetBoardBySerial(ctx, "J1")
		steps, _ := s.ListSteps(ctx, "J1")
		if b.TPMManufacturer != "IBM" || b.CurrentStep != "iak" || len(steps) != 2 || steps[0].Phase != PhaseDone ||
			steps[0].Duration != time.Millisecond || steps[1].Phase != PhaseStarted {
			t.Fatalf("board %+v steps %+v", b, steps)
		}
		before := countEvents(t, s)
		// A bad argument is refused before anything is written.
		if err := s.Journal(ctx, "J1", OpStepFinished("iak", StepOutcome{}), OpCertificate(KindIAK, []byte("not DER"))); !errors.Is(err, ErrInvalid) {
			t.Fatalf("bad certificate: %v", err)
		}
		// A failure in the middle rolls the whole journal write back.
		if err := s.Journal(ctx, "J1", OpStepFinished("iak", StepOutcome{}), OpStepFinished("never-started", StepOutcome{})); !errors.Is(err, ErrInvalid) {
			t.Fatalf("finishing an unstarted step: %v", err)
		}
		steps, _ = s.ListSteps(ctx, "J1")
		if steps[1].Phase != PhaseStarted || countEvents(t, s) != before {
			t.Fatalf("a refused journal write left traces: %+v", steps)
		}
		if _, err := s.VerifyChain(ctx, ""); err != nil {
			t.Fatal(err)
		}
	})
}

func countEvents(t *testing.T, s *Store) int64 {
	t.Helper()
	st, err := s.VerifyChain(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return st.Count
}
