// Command upstream-ca is tpmline's reference upstream attestation CA: it initialises a CA directory, issues
// station client certificates, serves the enrollment API over HTTPS with mutual TLS, imports EK lists and
// checks EK certificates against TPM vendor roots. All logic lives in provisioning/ca (ca.Main).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tpmline/tpmline/provisioning/ca"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := ca.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
