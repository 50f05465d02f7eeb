package inventory_test

import (
	"context"
	"testing"

	"github.com/tpmline/tpmline/inventory/inventorytest"
)

// TestVerifyStateNameTables: the stations, operators and products tables, on both engines: each edit of
// created_at and an inserted row is named by the whole-inventory VerifyState (they belong to no batch, so
// a batch's verification leaves them out); a station's last_seen_at is not compared. A row cannot be
// deleted while the batches and boards that name it stand (foreign keys), and those are the other cases.
func TestVerifyStateNameTables(t *testing.T) {
	ctx := context.Background()
	for _, engine := range inventorytest.Engines {
		t.Run(engine, func(t *testing.T) {
			for _, c := range []struct {
				name, sql, table, key, field string
			}{
				{"edit station created_at", "UPDATE stations SET created_at = created_at + 1 WHERE id = 'st1'", "stations", "st1", "created_at"},
				{"insert station", "INSERT INTO stations (id, created_at, last_seen_at) VALUES ('st-x', 1, 1)", "stations", "st-x", "row"},
				{"edit operator created_at", "UPDATE operators SET created_at = 5 WHERE id = 'alice'", "operators", "alice", "created_at"},
				{"insert operator", "INSERT INTO operators (id, created_at) VALUES ('mallory', 1)", "operators", "mallory", "row"},
				{"edit product created_at", "UPDATE products SET created_at = 5 WHERE id = 'gw-200'", "products", "gw-200", "created_at"},
				{"insert product", "INSERT INTO products (id, created_at) VALUES ('gw-999', 1)", "products", "gw-999", "row"},
			} {
				t.Run(c.name, func(t *testing.T) {
					dbURL := inventorytest.FreshURL(t, engine)
					s := inventorytest.Open(t, dbURL)
					inventorytest.Build(t, s)
					if _, ds, err := s.VerifyState(ctx, ""); err != nil || len(ds) != 0 {
						t.Fatalf("untouched: %v %v", ds, err)
					}
					inventorytest.Exec(t, dbURL, "UPDATE stations SET last_seen_at = last_seen_at + 7")
					if _, ds, err := s.VerifyState(ctx, ""); err != nil || len(ds) != 0 {
						t.Fatalf("last_seen_at moved: %v %v", ds, err)
					}
					inventorytest.Exec(t, dbURL, c.sql)
					_, ds, err := s.VerifyState(ctx, "")
					if err != nil || len(ds) != 1 || ds[0].Table != c.table || ds[0].Key != c.key || ds[0].Field != c.field {
						t.Fatalf("%s: %v %v, want one divergence %s %s %s", c.name, ds, err, c.table, c.key, c.field)
					}
					if _, ds, err := s.VerifyState(ctx, inventorytest.Batch); err != nil || len(ds) != 0 {
						t.Fatalf("%s: the batch's verification: %v %v", c.name, ds, err)
					}
				})
			}
		})
	}
}
