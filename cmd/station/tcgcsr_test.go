package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/tcgcsr"
)

// TestBoardTCGCSR: `station board tcg-csr` on a board the station provisioned writes a CSR for the
// persisted keys, and the real upstream-ca accepts its request over mutual TLS (round 1: the board is
// enrolled with these keys, so it is a resume) and refuses the same TPM's CSR under another serial; a bad
// serial is a one-line usage error.
func TestBoardTCGCSR(t *testing.T) {
	dir := t.TempDir()
	vendorDir, ca := startVendorAndCA(t, dir)
	run, g := sqliteStation(t, dir, ca)
	run("batch", "open", "--id", "CSR1", "--quantity", "1")
	addr, err := startSimBoardSeed(t, filepath.Join(binaries(t), "board-agent"), vendorDir, "711", ca.dir)
	if err != nil {
		t.Fatal(err)
	}
	run("provision", "--tpm", addr, "--serial", "CSR-1", "--batch", "CSR1")
	csrFile, reqFile := filepath.Join(dir, "CSR-1.csr"), filepath.Join(dir, "CSR-1.json")
	out := run("board", "tcg-csr", "CSR-1", "--tpm", addr, "--product", "widget-1", "--out", csrFile, "--request", reqFile)
	if !strings.Contains(out, "board CSR-1: TCG-CSR-IDEVID") || !strings.Contains(out, "persisted at 0x81020001") {
		t.Fatalf("output: %s", out)
	}
	raw, err := os.ReadFile(csrFile)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := tcgcsr.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if csr.ProdSerial != "CSR-1" || csr.ProdModel != "widget-1" {
		t.Fatalf("CSR for %q/%q", csr.ProdSerial, csr.ProdModel)
	}
	body, err := os.ReadFile(reqFile)
	if err != nil {
		t.Fatal(err)
	}
	var req provisioning.TCGCSREnrollRequest
	if err := json.Unmarshal(body, &req); err != nil || !bytes.Equal(req.CSR, raw) {
		t.Fatalf("request file: %v", err)
	}
	tlsConf, err := provisioning.LoadClientTLS(ca.flags[5], ca.flags[7], ca.flags[3])
	if err != nil {
		t.Fatal(err)
	}
	client := provisioning.NewClient(ca.url, tlsConf)
	// The board is enrolled with these very keys: as in the JSON flow, that is a resume (the proof is asked
	// again and round 2 returns the certificates issued before).
	ch, err := client.EnrollTCGCSR(context.Background(), &req)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.CredentialBlob) == 0 || ch.SessionID == "" {
		t.Fatalf("challenge %+v", ch)
	}
	// The same TPM's CSR under another serial: the one-EK-one-serial rule of the JSON flow refuses it.
	other := filepath.Join(dir, "CSR-2.json")
	run("board", "tcg-csr", "CSR-2", "--tpm", addr, "--product", "widget-1", "--out", filepath.Join(dir, "CSR-2.csr"), "--request", other)
	if body, err = os.ReadFile(other); err != nil {
		t.Fatal(err)
	}
	var req2 provisioning.TCGCSREnrollRequest
	if err := json.Unmarshal(body, &req2); err != nil {
		t.Fatal(err)
	}
	if _, err := client.EnrollTCGCSR(context.Background(), &req2); err == nil || !strings.Contains(err.Error(), string(provisioning.CodeEKSerialConflict)) {
		t.Fatalf("the same EK under another serial: %v", err)
	}

	r := runBin(t, "station", append(append([]string{}, g...), "board", "tcg-csr", "bad serial;", "--tpm", addr, "--product", "w", "--out", csrFile)...)
	if r.code != 2 || !strings.Contains(r.stderr, "bad serial") {
		t.Fatalf("bad serial: %d %s", r.code, r.stderr)
	}
	oneLineErr(t, "bad serial", r)
}
