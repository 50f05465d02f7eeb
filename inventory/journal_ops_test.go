package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
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
			OpEK(nil, ekPublic(1)), OpStepStarted("iak")); err != nil {
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

// TestStepRanRecord: a step journaled after it ran leaves the rows and events of a step started and then
// finished (or failed): one done row with its start, end and times, the board's current step, and a
// step.started and step.done (step.failed) event naming the same journal entry.
func TestStepRanRecord(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, s *Store, dbURL string) {
		ctx := context.Background()
		mustOpenBatch(t, s, "B1", "st1", 2)
		if _, err := s.ClaimBoard(ctx, ClaimRequest{Serial: "R1", EKPubSHA256: ekHash(1), Batch: "B1", Station: "st1"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Journal(ctx, "R1", OpStepRan("ek", StepOutcome{Duration: 3 * time.Millisecond, TPMTime: 2 * time.Millisecond}, false),
			OpStepRan("iak", StepOutcome{Duration: time.Millisecond, TPMTime: time.Millisecond, Detail: "TPM_RC_VALUE"}, true)); err != nil {
			t.Fatal(err)
		}
		steps, err := s.ListSteps(ctx, "R1")
		if err != nil || len(steps) != 2 {
			t.Fatalf("steps %+v %v", steps, err)
		}
		for i, want := range []struct {
			step, phase, detail string
			d, tpm              time.Duration
		}{{"ek", PhaseDone, "", 3 * time.Millisecond, 2 * time.Millisecond}, {"iak", PhaseFailed, "TPM_RC_VALUE", time.Millisecond, time.Millisecond}} {
			got := steps[i]
			if got.Step != want.step || got.Phase != want.phase || got.Detail != want.detail || got.Duration != want.d ||
				got.TPMTime != want.tpm || got.FinishedAt.Sub(got.StartedAt) != want.d {
				t.Errorf("step %d = %+v, want %+v", i, got, want)
			}
		}
		if b, _ := s.GetBoardBySerial(ctx, "R1"); b.CurrentStep != "iak" {
			t.Errorf("current step %q, want iak", b.CurrentStep)
		}
		var kinds []string
		var ids []float64
		if err := s.ListEvents(ctx, EventFilter{Serial: "R1"}, func(ev *Event) error {
			var p map[string]any
			if err := json.Unmarshal(ev.Payload, &p); err != nil {
				return err
			}
			if _, ok := p["step"]; ok {
				kinds = append(kinds, ev.Kind+":"+p["step"].(string))
				ids = append(ids, p["journal_id"].(float64))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		want := []string{EventStepStarted + ":ek", EventStepDone + ":ek", EventStepStarted + ":iak", EventStepFailed + ":iak"}
		if !slices.Equal(kinds, want) || ids[0] != ids[1] || ids[2] != ids[3] || ids[0] != float64(steps[0].ID) || ids[2] != float64(steps[1].ID) {
			t.Fatalf("events %v (journal ids %v), want %v naming steps %d and %d", kinds, ids, want, steps[0].ID, steps[1].ID)
		}
	})
}

// TestStepTimes: a step journaled after it ran, and a step whose start was journaled ahead of it, keep the
// times they really ran at, and the journal lists steps in that order.
func TestStepTimes(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, s *Store, dbURL string) {
		ctx := context.Background()
		mustOpenBatch(t, s, "B1", "st1", 1)
		if _, err := s.ClaimBoard(ctx, ClaimRequest{Serial: "T1", EKPubSHA256: ekHash(1), Batch: "B1", Station: "st1"}); err != nil {
			t.Fatal(err)
		}
		// "issue" is opened first (ahead), then "certify" ran before it, and is journaled with issue's end.
		if err := s.Journal(ctx, "T1", OpStepStarted("issue")); err != nil {
			t.Fatal(err)
		}
		certifyStart := clock.Now()
		time.Sleep(20 * time.Millisecond)
		issueStart := clock.Now()
		time.Sleep(20 * time.Millisecond)
		if err := s.Journal(ctx, "T1",
			OpStepRan("certify", StepOutcome{Duration: issueStart.Sub(certifyStart), Started: certifyStart}, false),
			OpStepFinished("issue", StepOutcome{Duration: clock.Since(issueStart), Started: issueStart})); err != nil {
			t.Fatal(err)
		}
		steps, err := s.ListSteps(ctx, "T1")
		if err != nil || len(steps) != 2 {
			t.Fatalf("steps %+v %v", steps, err)
		}
		if steps[0].Step != "certify" || steps[1].Step != "issue" {
			t.Fatalf("journal order %s, %s; want certify then issue, as they ran", steps[0].Step, steps[1].Step)
		}
		near := func(got, want time.Time) bool {
			d := got.Sub(want)
			return d > -5*time.Millisecond && d < 5*time.Millisecond
		}
		if !near(steps[0].StartedAt, certifyStart) || !near(steps[0].FinishedAt, issueStart) || !near(steps[1].StartedAt, issueStart) {
			t.Errorf("certify %v..%v, issue from %v; want %v..%v and %v", steps[0].StartedAt, steps[0].FinishedAt, steps[1].StartedAt,
				certifyStart.UTC(), issueStart.UTC(), issueStart.UTC())
		}
	})
}
