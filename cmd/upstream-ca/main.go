// Command upstream-ca is tpmline's reference upstream attestation CA: it initialises a CA directory, issues
// station client certificates, serves the enrollment API over HTTPS with mutual TLS, imports EK lists and
// checks EK certificates against TPM vendor roots. The CA itself is provisioning/ca; this command is its
// flags, exit codes and process settings (GC tuning, CPU profile).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
