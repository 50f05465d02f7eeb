package soak

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/sqldb"
)

// The real binaries, built once for the package's tests.
var (
	binsOnce sync.Once
	bins     *Binaries
	binsErr  error
	binsDir  string
)

func binaries(t *testing.T) *Binaries {
	t.Helper()
	binsOnce.Do(func() {
		if binsDir, binsErr = os.MkdirTemp("", "tpmline-soak-bin-"); binsErr != nil {
			return
		}
		bins, binsErr = BuildBinaries(context.Background(), binsDir)
	})
	if binsErr != nil {
		t.Fatal(binsErr)
	}
	return bins
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binsDir != "" {
		os.RemoveAll(binsDir)
	}
	os.Exit(code)
}

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
	bins := binaries(t)
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

// TestFaultsLandOnAShortLine: on a line barely longer than its slots the feeder holds back almost every
// board until the faults are in, and a relay drop needs a station mid-flow; each fault must still land
// (it once waited 30 s for a station the held-back boards were to bring, and was counted missing).
func TestFaultsLandOnAShortLine(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak builds and runs the real binaries")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bins := binaries(t)
	res, err := Run(ctx, Config{Dir: t.TempDir(), Bins: bins, Boards: 4, Slots: 3, Seed: 7,
		Faults: map[FaultKind]int{FaultRelayDrop: 3}, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if res.Faults[FaultRelayDrop] != 3 || res.RelayConnsCut < 3 {
		t.Errorf("relay drops injected %d, connections cut %d; want 3 and at least 3", res.Faults[FaultRelayDrop], res.RelayConnsCut)
	}
	if res.Provisioned != res.Boards || len(res.Violations) > 0 {
		t.Errorf("%d of %d boards provisioned, violations %q", res.Provisioned, res.Boards, res.Violations)
	}
}

// TestCheckCatches runs a small line without faults, then breaks what it left in three ways the
// invariants name; the check must report each (and only the soak's checker stands between such a state
// and "0 violations").
func TestCheckCatches(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak builds and runs the real binaries")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bins := binaries(t)
	tamper := func(ctx context.Context, l *line) error {
		// 1. A board the inventory says is still in progress.
		inv, err := sqldb.Open(ctx, l.pg.URL("inventory"), sqldb.Options{})
		if err != nil {
			return err
		}
		defer inv.Close()
		if _, err := inv.W.ExecContext(ctx, `UPDATE boards SET state = 'in_progress' WHERE serial = $1`, l.boards[0].serial); err != nil {
			return err
		}
		// 2. A certificate at the CA that the inventory never heard of (a copy of a real one, re-serialled
		// by one byte of its DER, so it no longer parses as the same certificate).
		cadb, err := sqldb.Open(ctx, l.pg.URL("ca"), sqldb.Options{})
		if err != nil {
			return err
		}
		defer cadb.Close()
		if _, err := cadb.W.ExecContext(ctx, `INSERT INTO ca_certificates (serial_number, kind, board_serial, ek_sha256, session_id,
			station, der, not_before, not_after, issued_at) SELECT 'ffff' || serial_number, kind, 'GHOST-1', ek_sha256, session_id, station,
			substring(der from 1 for 20), not_before, not_after, issued_at FROM ca_certificates LIMIT 1`); err != nil {
			return err
		}
		// 3. A TPM that holds other certificates than the inventory records.
		l.boards[1].tpmIDevID = sha256Of([]byte("not the certificate"))
		return nil
	}
	res, err := Run(ctx, Config{Dir: dir, Bins: bins, Boards: 3, Slots: 2, Seed: 1, tamper: tamper, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(res.Violations, "\n")
	for _, want := range []string{
		"left in_progress",
		"issued by the CA is unknown to the inventory",
		"the idevid certificate in its TPM is not the inventory's",
		"the CA issued certificates under 2 serials", // the ghost copy carries a real EK
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no violation %q among:\n%s", want, all)
		}
	}
}
