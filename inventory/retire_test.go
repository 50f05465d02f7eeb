package inventory_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/inventory/inventorytest"
	"github.com/tpmline/tpmline/records"
)

// TestRetireBoard, on both engines: an RMA and a deprovision stop the board with their reason in one
// event the replay knows (VerifyState clean; a rework claims it again); one refusal per check; and the
// stopped board's reason edited behind the store's back is named by VerifyState.
func TestRetireBoard(t *testing.T) {
	for _, engine := range inventorytest.Engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			dbURL := inventorytest.FreshURL(t, engine)
			s := inventorytest.Open(t, dbURL)
			inventorytest.Build(t, s)

			b, err := s.RetireBoard(ctx, inventorytest.Provisioned, "st9", inventory.EventBoardRMA, "field return: no boot")
			if err != nil || b.State != records.StateStopped || b.ReasonCode != records.ReasonRMA || b.ReasonText != "field return: no boot" {
				t.Fatalf("RMA = %+v, %v", b, err)
			}
			if _, err := s.RetireBoard(ctx, inventorytest.Failed, "st9", inventory.EventBoardDeprovisioned, "scrapped"); err != nil {
				t.Fatal(err)
			}
			if _, ds, err := s.VerifyState(ctx, ""); err != nil || len(ds) != 0 {
				t.Fatalf("VerifyState after RMA and deprovision = %v, %v", ds, err)
			}
			var ev *inventory.Event
			_ = s.ListEvents(ctx, inventory.EventFilter{Serial: inventorytest.Provisioned}, func(e *inventory.Event) error { ev = e; return nil })
			if ev == nil || ev.Kind != inventory.EventBoardRMA || ev.Station != "st9" || ev.Batch != inventorytest.Batch {
				t.Fatalf("last event of P1 = %+v", ev)
			}

			for _, c := range []struct {
				name, serial, kind, reason string
				want                       error
			}{
				{"in progress", inventorytest.InProgress, inventory.EventBoardRMA, "x", records.ErrBoardInProgressElsewhere},
				{"unknown serial", "NOPE", inventory.EventBoardRMA, "x", records.ErrBoardNotFound},
				{"not a retire kind", inventorytest.Stopped, inventory.EventBoardStopped, "x", inventory.ErrInvalid},
				{"control character in the reason", inventorytest.Stopped, inventory.EventBoardRMA, "a\x1b[2Jb", inventory.ErrInvalid},
				{"empty reason", inventorytest.Stopped, inventory.EventBoardRMA, " ", inventory.ErrInvalid},
				{"reason over the bound", inventorytest.Stopped, inventory.EventBoardRMA, strings.Repeat("r", inventory.MaxRetireReason+1), inventory.ErrInvalid},
			} {
				if _, err := s.RetireBoard(ctx, c.serial, "st9", c.kind, c.reason); !errors.Is(err, c.want) {
					t.Errorf("%s: %v, want %v", c.name, err, c.want)
				}
			}
			if _, err := s.AppendEvent(ctx, inventory.Event{Kind: inventory.EventBoardRMA, Serial: inventorytest.Stopped}); !errors.Is(err, inventory.ErrInvalid) {
				t.Errorf("AppendEvent(board.rma) = %v, want ErrInvalid", err)
			}

			// The same EK and serial, as a rework: claimed again; under another serial: still a clone.
			if _, err := s.ClaimBoard(ctx, records.ClaimRequest{Serial: inventorytest.Provisioned, EKPubSHA256: inventorytest.EKID(1),
				Batch: inventorytest.Batch, Station: "st1", Slot: 7, Rework: true}); err != nil {
				t.Fatalf("rework after the RMA: %v", err)
			}
			if _, err := s.ClaimBoard(ctx, records.ClaimRequest{Serial: "P9", EKPubSHA256: inventorytest.EKID(1),
				Batch: inventorytest.Batch, Station: "st1", Slot: 8, Rework: true}); !errors.Is(err, records.ErrEKBoundToOtherSerial) {
				t.Fatalf("P1's EK under P9 after the RMA: %v", err)
			}
			if _, ds, err := s.VerifyState(ctx, ""); err != nil || len(ds) != 0 {
				t.Fatalf("VerifyState after the rework = %v, %v", ds, err)
			}

			for _, c := range []inventorytest.Tamper{
				{Name: "reason_code", SQL: "UPDATE boards SET reason_code = 'qa_hold' WHERE serial = 'F1'", Table: "boards", Key: inventorytest.Failed, Field: "reason_code"},
				{Name: "reason_text", SQL: "UPDATE boards SET reason_text = 'ok' WHERE serial = 'F1'", Table: "boards", Key: inventorytest.Failed, Field: "reason_text"},
			} {
				inventorytest.Apply(t, dbURL, c)
				if _, ds, err := s.VerifyState(ctx, ""); err != nil || !inventorytest.Names(ds, c) {
					t.Fatalf("%s edited after a deprovision: %v, %v", c.Name, ds, err)
				}
			}
		})
	}
}
