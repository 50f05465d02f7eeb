package inventory_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/inventory/inventorytest"
)

// TestVerifyStateClean: an inventory the store alone wrote verifies with no divergence on both engines,
// and the replayed rows hold what the tables hold.
func TestVerifyStateClean(t *testing.T) {
	for _, engine := range inventorytest.Engines {
		t.Run(engine, func(t *testing.T) {
			s := inventorytest.Open(t, inventorytest.FreshURL(t, engine))
			inventorytest.Build(t, s)
			ctx := context.Background()
			chain, ds, err := s.VerifyState(ctx, "")
			if err != nil || len(ds) != 0 {
				t.Fatalf("VerifyState = %v, %v", ds, err)
			}
			if chain.Count == 0 || chain.Head != chain.ChainHead {
				t.Errorf("chain = %+v", chain)
			}
			st, err := s.Replay(ctx)
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.GetBoardBySerial(ctx, inventorytest.Reworked)
			if err != nil {
				t.Fatal(err)
			}
			row := st.Row("boards", inventorytest.Reworked)
			if row["state"] != "provisioned" || row["attempt"] != "2" || row["rework_count"] != "1" || row["ek_pub_sha256"] != b.EKPubSHA256 {
				t.Errorf("replayed R1 = %v, stored %+v", row, b)
			}
			if _, ds, err := s.VerifyState(ctx, inventorytest.Batch); err != nil || len(ds) != 0 {
				t.Errorf("VerifyState(B1) = %v, %v", ds, err)
			}
		})
	}
}

// TestVerifyStateTamper: every field of every table a report reads, edited with raw SQL, and a row of
// each table deleted and inserted, is named by VerifyState (table, key, field), on both engines; the
// divergence belongs to the batch whose report must refuse, and another batch is not blamed for it.
func TestVerifyStateTamper(t *testing.T) {
	for _, engine := range inventorytest.Engines {
		t.Run(engine, func(t *testing.T) {
			for _, c := range inventorytest.Cases() {
				t.Run(c.Name, func(t *testing.T) {
					dbURL := inventorytest.FreshURL(t, engine)
					s := inventorytest.Open(t, dbURL)
					inventorytest.Build(t, s)
					inventorytest.Apply(t, dbURL, c)
					ctx := context.Background()
					_, ds, err := s.VerifyState(ctx, "")
					if err != nil {
						t.Fatal(err)
					}
					if !inventorytest.Names(ds, c) {
						t.Fatalf("divergences %v do not name %s %s %s", ds, c.Table, c.Key, c.Field)
					}
					for _, d := range ds {
						if line := d.String(); !strings.Contains(line, c.Table) || !strings.Contains(line, "chained") {
							t.Errorf("line %q", line)
						}
					}
					if _, ds, _ := s.VerifyState(ctx, c.Batch); !inventorytest.Names(ds, c) {
						t.Errorf("VerifyState(%s) = %v, misses the case", c.Batch, ds)
					}
					// The chain itself is intact: only the replay sees it.
					if _, err := s.VerifyChain(ctx, ""); err != nil {
						t.Errorf("VerifyChain = %v", err)
					}
				})
			}
		})
	}
}

// TestAppendEventStoreKinds: a kind the store writes itself cannot be appended from outside, or it would
// be chained state with no row behind it.
func TestAppendEventStoreKinds(t *testing.T) {
	s := inventorytest.Open(t, inventorytest.FreshURL(t, "sqlite"))
	_, err := s.AppendEvent(context.Background(), inventory.Event{Kind: inventory.EventBoardProvisioned, Serial: "S"})
	if !errors.Is(err, inventory.ErrInvalid) {
		t.Errorf("AppendEvent(board.provisioned) = %v, want ErrInvalid", err)
	}
}
