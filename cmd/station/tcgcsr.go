package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/tcgcsr"
	"github.com/tpmline/tpmline/records"
)

// cmdBoardTCGCSR writes a board's TCG-CSR-IDEVID (tcgcsr.ForBoard) for an OEM CA, and with --request the
// JSON body of POST /v1/enroll/tcg-csr.
func cmdBoardTCGCSR(_ context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	addr := fs.String("tpm", "", "the board's TPM `ADDR` (required)")
	product := fs.String("product", "", "the product model `NAME` written as prodModel (required)")
	out := fs.String("out", "", "write the TCG_CSR_IDEVID to `FILE` (required)")
	request := fs.String("request", "", "also write the enrollment request for upstream-ca's POST /v1/enroll/tcg-csr to `FILE`")
	keys := fs.String("keys", string(provisioning.DefaultKeyAlg), "key algorithm `ALG` (p256, rsa2048, p384) for a board that has no keys persisted yet")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("give one board serial")
	}
	serial := fs.Arg(0)
	if *addr == "" || *product == "" || *out == "" {
		return usagef("--tpm, --product and --out are required")
	}
	if err := records.CheckSerial(serial); err != nil {
		return usagef("board %s: %v", printable(serial), err)
	}
	alg, err := provisioning.ParseKeyAlg(*keys)
	if err != nil {
		return usagef("--keys: %v", err)
	}
	if err := checkTPM("--tpm", *addr); err != nil {
		return err
	}
	s, err := g.settings()
	if err != nil {
		return err
	}
	openOpts, err := relayOptions(s)
	if err != nil {
		return err
	}
	tpm, err := fixtures.Open(*addr, openOpts...)
	if err != nil {
		fmt.Fprintf(g.stderr, "board %s: TPM at %s does not answer: %v; check the fixture and --tpm\n", serial, *addr, err)
		return errFailed
	}
	defer tpm.Close()
	layout := provisioning.DefaultLayout()
	ex, err := tcgcsr.ForBoard(tpm, tcgcsr.Export{Serial: serial, Model: *product, Keys: alg, Layout: layout})
	if err != nil {
		fmt.Fprintf(g.stderr, "%v\n", err)
		return errFailed
	}
	if err := os.WriteFile(*out, ex.CSR, 0o644); err != nil {
		return refusef("writing the CSR: %v", err)
	}
	if *request != "" {
		body, err := json.Marshal(ex.Request)
		if err != nil {
			return fmt.Errorf("encoding the request: %w", err)
		}
		if err := os.WriteFile(*request, body, 0o644); err != nil {
			return refusef("writing the request: %v", err)
		}
	}
	keysFrom := fmt.Sprintf("the keys persisted at %#x (IAK) and %#x (IDevID)", uint32(layout.IAKHandle), uint32(layout.IDevIDHandle))
	if !ex.Persisted {
		keysFrom = "the " + string(alg) + " primaries the station would create (none persisted yet)"
	}
	fmt.Fprintf(g.stdout, "board %s: TCG-CSR-IDEVID (%d bytes) for %s written to %s\n", serial, len(ex.CSR), keysFrom, *out)
	return nil
}
