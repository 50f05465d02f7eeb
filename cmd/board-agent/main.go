// Command board-agent runs on the board under test and relays its TPM to the station over mutually
// authenticated TLS 1.3, one station at a time:
//
//	board-agent --tpm /dev/tpmrm0 --listen 0.0.0.0:2322 --station-ca station-access.crt
//	board-agent --tpm sim --vendor-dir DIR --listen 127.0.0.1:0 --station-pin SHA256
//
// --tpm takes any fixtures address; "sim" makes a simulated board manufactured by the vendor in DIR
// (one process per simulated board). Stations are accepted when their certificate chains to
// --station-ca or their key's SPKI SHA-256 is a --station-pin. The agent's own key is made fresh at each
// start (or kept in --key FILE); it prints the address a station opens, pin included, when ready:
//
//	board-agent: serving TPM on relays://HOST:PORT#sha256=PIN
//
// --insecure-plaintext serves relay://HOST:PORT to anyone instead, with a warning.
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
	"strings"
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
	flag.StringVar(&cfg.StationCA, "station-ca", "", "PEM roots a station's client certificate must chain to (the station access CA)")
	pins := flag.String("station-pin", "", "comma-separated SPKI SHA-256 (hex) of station keys accepted whatever their certificate")
	flag.StringVar(&cfg.KeyFile, "key", "", "file holding this agent's TLS key (created on first use); empty means a fresh key, and a fresh pin, at every start")
	flag.DurationVar(&cfg.HandshakeTimeout, "handshake-timeout", fixtures.DefaultRelayHandshakeTimeout, "drop a station whose TLS handshake takes longer")
	flag.BoolVar(&cfg.InsecurePlaintext, "insecure-plaintext", false, "serve relay:// without TLS: anyone who reaches the port drives the TPM (a bench you trust only)")
	seed := flag.Int64("sim-seed", 0, "with --tpm sim: fixed simulator seed (the same seed gives the same EK: a cloned part); 0 means random")
	flag.Parse()
	if *seed != 0 {
		cfg.SimSeed = seed
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "board-agent: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	for _, p := range strings.Split(*pins, ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.StationPins = append(cfg.StationPins, p)
		}
	}
	cfg.Logf = log.New(os.Stderr, "", log.LstdFlags).Printf
	if cfg.InsecurePlaintext {
		fmt.Fprintln(os.Stderr, "board-agent: WARNING: --insecure-plaintext: the relay is unauthenticated and unencrypted; anyone who reaches the port can drive this TPM")
	}

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
