// Command board-agent runs on the board under test and relays its TPM to the station over TCP, one
// station at a time:
//
//	board-agent --tpm /dev/tpmrm0 --listen 127.0.0.1:2322
//	board-agent --tpm sim --vendor-dir DIR --listen 127.0.0.1:0
//
// --tpm takes any fixtures address; "sim" makes a simulated board manufactured by the vendor in DIR
// (one process per simulated board). It prints one line when ready:
//
//	board-agent: serving TPM on HOST:PORT
//
// In the field, `board-agent acme` obtains a per-service certificate through ACME device-attest-01 with
// the IAK the station provisioned (acme.go; docs/device.md).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/tpmline/tpmline/fixtures"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "acme" {
		os.Exit(runACME(os.Args[2:]))
	}
	var cfg fixtures.AgentConfig
	flag.StringVar(&cfg.TPM, "tpm", "/dev/tpmrm0", "TPM address: /dev/tpmrm0, sim, swtpm://host:port, unix:///path or relay://host:port")
	flag.StringVar(&cfg.Listen, "listen", "127.0.0.1:2322", "address to serve the station on (loopback by default; :0 picks a port)")
	flag.StringVar(&cfg.VendorDir, "vendor-dir", "", "with --tpm sim: folder of the simulated TPM vendor (created on first use)")
	flag.DurationVar(&cfg.IOTimeout, "io-timeout", fixtures.DefaultIOTimeout, "deadline for each TPM command and each network read/write")
	flag.DurationVar(&cfg.IdleTimeout, "idle-timeout", fixtures.DefaultRelayIdleTimeout, "drop a station that sends nothing for this long")
	seed := flag.Int64("sim-seed", 0, "with --tpm sim: fixed simulator seed (the same seed gives the same EK: a cloned part); 0 means random")
	flag.Parse()
	if *seed != 0 {
		cfg.SimSeed = seed
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "board-agent: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	cfg.Logf = log.New(os.Stderr, "", log.LstdFlags).Printf

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := fixtures.RunAgent(ctx, cfg, func(addr string) {
		fmt.Printf("board-agent: serving %s on %s\n", cfg.TPM, addr)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
