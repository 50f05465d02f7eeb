// Command tpmline-soak runs the chaos soak of the whole line (package soak): simulated boards on many
// slots through the real station, upstream-ca and board-agent against a throw-away PostgreSQL, while
// seeded faults kill and restart the station, the CA and PostgreSQL and cut relay connections; then the
// invariants. Exit status 1 when any invariant is violated.
//
//	go run ./cmd/tpmline-soak -boards 10000 -slots 8 -faults 50
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tpmline/tpmline/soak"
)

func main() {
	boards := flag.Int("boards", 10000, "boards to provision")
	slots := flag.Int("slots", 8, "slots of the line")
	faults := flag.Int("faults", 50, "faults of each kind (station-kill, ca-kill, pg-kill, relay-drop)")
	seed := flag.Int64("seed", 0, "fault seed (0: from the time; printed either way)")
	attempts := flag.Int("max-attempts", 8, "station runs per board that no fault hit, at most")
	race := flag.Bool("race", true, "also run the two-CA race on the soak's PostgreSQL")
	keep := flag.Bool("keep", false, "keep the scratch folder (logs, databases' files)")
	flag.Parse()
	if *seed == 0 {
		*seed = time.Now().UnixNano() % 1000000007
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := log.New(os.Stderr, "", log.Ltime)
	dir, err := os.MkdirTemp("", "tpmline-soak-")
	if err != nil {
		logger.Fatal(err)
	}
	code := run(ctx, dir, logger, soak.Config{Dir: dir, Boards: *boards, Slots: *slots, Seed: *seed, MaxAttempts: *attempts, Race: *race,
		Faults: map[soak.FaultKind]int{soak.FaultStation: *faults, soak.FaultCA: *faults, soak.FaultPostgres: *faults, soak.FaultRelayDrop: *faults},
		Log:    logger.Printf})
	if *keep {
		logger.Printf("scratch folder kept: %s", dir)
	} else {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func run(ctx context.Context, dir string, logger *log.Logger, cfg soak.Config) int {
	logger.Printf("tpmline-soak: seed %d", cfg.Seed)
	bins, err := soak.BuildBinaries(ctx, dir)
	if err != nil {
		logger.Print(err)
		return 2
	}
	cfg.Bins = bins
	res, err := soak.Run(ctx, cfg)
	if err != nil {
		logger.Printf("soak could not run (seed %d): %v", cfg.Seed, err)
		return 2
	}
	res.Print(os.Stdout)
	if len(res.Violations) > 0 {
		fmt.Fprintf(os.Stderr, "tpmline-soak: %d invariant violations (seed %d)\n", len(res.Violations), cfg.Seed)
		return 1
	}
	return 0
}
