package bench

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	"github.com/tpmline/tpmline/inventory"
)

// InventoryResult is figure 6.
type InventoryResult struct {
	Boards                       int
	Seed                         time.Duration
	Lookups                      int
	SerialP50, SerialP99         time.Duration
	EKHashP50, EKHashP99         time.Duration
	SerialMissP99, EKHashMissP99 time.Duration
}

func benchSerial(i int) string { return fmt.Sprintf("SN%08d", i) }

func benchEKHash(i int) string {
	s := sha256.Sum256([]byte(fmt.Sprint("ek-public-", i)))
	return hex.EncodeToString(s[:])
}

// runInventory seeds n boards into a fresh PostgreSQL schema migrated by inventory.Open (COPY, one
// transaction), then times single lookups through the inventory's own GetBoardBySerial and
// GetBoardByEKHash.
func runInventory(ctx context.Context, env *Env, n, lookups int) (*InventoryResult, error) {
	schema, err := newPGSchema(env.PG, "bench_inv")
	if err != nil {
		return nil, err
	}
	defer schema.drop()
	inv, err := inventory.Open(ctx, schema.URL)
	if err != nil {
		return nil, err
	}
	defer inv.Close()
	if _, err := inv.OpenBatch(ctx, inventory.NewBatch{ID: "BENCH-INV", Product: "default", WorkOrder: "WO", Quantity: n, Operator: "bench", Station: "bench"}); err != nil {
		return nil, err
	}
	res := &InventoryResult{Boards: n, Lookups: lookups}
	db, err := sql.Open("postgres", schema.URL)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	start := time.Now()
	if err := copyBoards(ctx, db, n); err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, "ANALYZE boards"); err != nil {
		return nil, err
	}
	res.Seed = time.Since(start)
	// The lookups start from a settled server, as on a running line: the seed's (and an earlier figure's)
	// dirty pages written out now rather than by a checkpoint in the middle of the measurement (CHECKPOINT
	// needs a superuser; without one the figure runs as it is), and this process's garbage collected.
	_, _ = db.ExecContext(ctx, "CHECKPOINT")
	runtime.GC()
	env.logf("inventory: seeded %d boards in %v", n, res.Seed.Round(time.Millisecond))

	rng := rand.New(rand.NewPCG(6, 6))
	measure := func(get func(i int) (*inventory.Board, error), hit bool) (p50, p99 time.Duration, err error) {
		lat := make([]time.Duration, lookups)
		for k := range lookups {
			i := rng.IntN(n)
			if !hit {
				i += n // never seeded
			}
			t0 := time.Now()
			b, err := get(i)
			lat[k] = time.Since(t0)
			if hit && (err != nil || b.Serial != benchSerial(i)) {
				return 0, 0, fmt.Errorf("lookup of board %d = %v, %v", i, b, err)
			}
			if !hit && err == nil {
				return 0, 0, fmt.Errorf("board %d found but never seeded", i)
			}
		}
		slices.Sort(lat)
		return percentile(lat, 50), percentile(lat, 99), nil
	}
	bySerial := func(i int) (*inventory.Board, error) { return inv.GetBoardBySerial(ctx, benchSerial(i)) }
	byEK := func(i int) (*inventory.Board, error) { return inv.GetBoardByEKHash(ctx, benchEKHash(i)) }
	// Warm the connection pool and the plan cache as a running station has.
	for i := range 200 {
		_, _ = bySerial(i)
		_, _ = byEK(i)
	}
	if res.SerialP50, res.SerialP99, err = measure(bySerial, true); err != nil {
		return nil, err
	}
	if res.EKHashP50, res.EKHashP99, err = measure(byEK, true); err != nil {
		return nil, err
	}
	if _, res.SerialMissP99, err = measure(bySerial, false); err != nil {
		return nil, err
	}
	if _, res.EKHashMissP99, err = measure(byEK, false); err != nil {
		return nil, err
	}
	return res, nil
}

// copyBoards loads n provisioned boards with COPY (lib/pq CopyIn) in one transaction.
func copyBoards(ctx context.Context, db *sql.DB, n int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// lib/pq runs a prepared COPY ... FROM STDIN as the copy protocol (what its deprecated CopyIn builds).
	stmt, err := tx.PrepareContext(ctx, `COPY boards (serial, ek_pub_sha256, batch, state, tpm_manufacturer, `+
		`tpm_vendor, tpm_firmware, ek_public, station, slot, attempt, rework_count, created_at, updated_at) FROM STDIN`)
	if err != nil {
		return fmt.Errorf("COPY boards: %w", err)
	}
	now := time.Now().UnixNano()
	for i := range n {
		if _, err := stmt.ExecContext(ctx, benchSerial(i), benchEKHash(i), "BENCH-INV", "provisioned", "IFX", "SLB9670", "7.85.0.0",
			[]byte(fmt.Sprint("ek-public-", i)), "bench", i%16, 1, 0, now+int64(i), now+int64(i)); err != nil {
			return fmt.Errorf("COPY boards row %d: %w", i, err)
		}
	}
	if _, err := stmt.ExecContext(ctx); err != nil {
		return fmt.Errorf("COPY boards: %w", err)
	}
	if err := stmt.Close(); err != nil {
		return err
	}
	return tx.Commit()
}
