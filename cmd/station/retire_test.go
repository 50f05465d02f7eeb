package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
)

// TestCLIBoardRMA: on a swtpm board (its TPM state outlives each command), station board rma revokes
// the board's certificates at upstream-ca and clears the TPM; board show and the batch report tell it;
// provision --rework gives new certificates; the audit chain and every table still agree.
func TestCLIBoardRMA(t *testing.T) {
	vendor := fixturestest.NewSwtpmVendor(t)
	ca := startUpstreamCA(t, vendorCAs(t, vendor))
	g := append([]string{"--db", "sqlite://" + filepath.Join(t.TempDir(), "inventory.db"), "--station-id", "st1"}, ca.flags...)
	st := func(args ...string) result { return runBin(t, "station", append(append([]string{}, g...), args...)...) }
	mustRun(t, "station", append(append([]string{}, g...), "init")...)
	mustRun(t, "station", append(append([]string{}, g...), "batch", "open", "--id", "R1", "--quantity", "2")...)
	board := fixturestest.NewSwtpmBoardFrom(t, vendor, fixtures.SwtpmBoardOptions{})
	provision := func(args ...string) provisionResult {
		t.Helper()
		r := st(append([]string{"provision", "--tpm", board.Addr(), "--serial", "RMA-1", "--batch", "R1", "--json"}, args...)...)
		var res provisionResult
		if err := json.Unmarshal([]byte(r.stdout), &res); r.code != 0 || err != nil || res.State != "provisioned" {
			t.Fatalf("provision %v: exit %d %v\n%s%s", args, r.code, err, r.stdout, r.stderr)
		}
		return res
	}
	first := provision()

	if r := st("board", "rma", "RMA-1"); r.code != 2 || !strings.Contains(r.stderr, "--reason") {
		t.Fatalf("rma without a reason: %d %s", r.code, r.stderr)
	}
	r := st("board", "rma", "RMA-1", "--reason", "field return: no boot", "--crl-reason", "superseded", "--tpm", board.Addr())
	if r.code != 0 || !strings.Contains(r.stdout, "stopped (rma: field return: no boot)") || !strings.Contains(r.stdout, "2 certificate(s) revoked") ||
		!strings.Contains(r.stdout, "IAK and IDevID evicted") {
		t.Fatalf("board rma: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	show := st("board", "show", "RMA-1")
	for _, want := range []string{"state stopped", "board.rma", "board.certs_revoked", "board.tpm_cleared"} {
		if !strings.Contains(show.stdout, want) {
			t.Fatalf("board show lacks %q:\n%s", want, show.stdout)
		}
	}
	rep := filepath.Join(t.TempDir(), "r1.json")
	mustRun(t, "station", append(append([]string{}, g...), "report", "batch", "--batch", "R1", "--json", rep)...)
	if b, _ := os.ReadFile(rep); !strings.Contains(string(b), `"reason_code":"rma"`) || !strings.Contains(string(b), "field return: no boot") {
		t.Fatalf("the report does not show the RMA:\n%s", b)
	}
	if r := st("audit", "verify"); r.code != 0 || !strings.Contains(r.stdout, "audit chain OK") {
		t.Fatalf("audit verify after the RMA: %d %s %s", r.code, r.stdout, r.stderr)
	}

	second := provision("--rework", "--supervisor", "qa1")
	if second.IAKCertSerial == first.IAKCertSerial || second.IDevIDCertSerial == first.IDevIDCertSerial || second.EKPubSHA256 != first.EKPubSHA256 {
		t.Fatalf("rework: first %+v second %+v", first, second)
	}
	// Deprovisioned off the fixture: revoked, and the TPM recorded as not cleared (exit 1).
	r = st("board", "deprovision", "RMA-1", "--reason", "scrapped")
	if r.code != 1 || !strings.Contains(r.stdout, "2 certificate(s) revoked") || !strings.Contains(r.stderr, "TPM NOT cleared") ||
		strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("deprovision off the fixture: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := st("board", "rma", "NOPE-1", "--reason", "x"); r.code != 1 || !strings.Contains(r.stderr, "check the serial") {
		t.Fatalf("rma of an unknown board: %d %s", r.code, r.stderr)
	}
	if r := st("audit", "verify"); r.code != 0 {
		t.Fatalf("audit verify at the end: %d %s %s", r.code, r.stdout, r.stderr)
	}
}
