package soak

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestShortSoak is `make soak` in small, in the suite: 60 boards on 6 slots, 6 faults of each kind, the
// two-CA race, and no invariant violated. TPMLINE_SOAK_SEED replays a run.
func TestShortSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak builds and runs the real binaries")
	}
	seed := time.Now().UnixNano() % 1000000007
	if s := os.Getenv("TPMLINE_SOAK_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d (TPMLINE_SOAK_SEED=%d replays the fault plan)", seed, seed)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bins, err := BuildBinaries(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, Config{Dir: dir, Bins: bins, Boards: 60, Slots: 6, Seed: seed, Race: true,
		Faults: map[FaultKind]int{FaultStation: 6, FaultCA: 6, FaultPostgres: 6, FaultRelayDrop: 6}, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	res.Print(&out)
	t.Log("\n" + out.String())
	for _, k := range FaultKinds {
		if res.Faults[k] != 6 {
			t.Errorf("%s: %d faults injected, want 6", k, res.Faults[k])
		}
	}
	if res.Provisioned+res.Failed != res.Boards {
		t.Errorf("%d provisioned + %d failed of %d boards", res.Provisioned, res.Failed, res.Boards)
	}
	if res.Provisioned == 0 {
		t.Error("no board provisioned")
	}
	if len(res.Violations) > 0 {
		t.Errorf("%d invariant violations (seed %d)", len(res.Violations), seed)
	}
}
