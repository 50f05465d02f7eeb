package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The headless station (bin/station) must not link what makes a process start slowly, and must hand what
// it lacks to station-full.

func TestNeedsFull(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"provision", "--tpm", "sim", "--serial", "S"}, true},
		{[]string{"--db", "sqlite://x", "provision", "-tpm=sim"}, true},
		{[]string{"reconcile", "--tpm=sim", "--slot", "1"}, true},
		{[]string{"--metrics-listen", "127.0.0.1:9100", "provision", "--tpm", "swtpm://127.0.0.1:2321"}, true},
		{[]string{"--metrics-listen=:0", "reconcile"}, true},
		{[]string{"report", "batch", "--batch", "B1", "--pdf", "B1.pdf", "--json", "B1.json"}, true},
		{[]string{"report", "batch", "--batch", "B1", "--json", "B1.json"}, false},
		{[]string{"report", "verify", "B1.pdf"}, false},
		{[]string{"provision", "--tpm", "swtpm://127.0.0.1:2321", "--serial", "sim"}, false},
		{[]string{"provision", "--serial", "sim", "--tpm", "/dev/tpmrm0"}, false},
		{[]string{"board", "show", "sim"}, false},
		{[]string{"board", "show", "--", "--tpm", "sim"}, false},
		{[]string{"--metrics-listen="}, false},
		{[]string{"--tpm"}, false},
		{nil, false},
	} {
		if got := needsFull(c.args); got != c.want {
			t.Errorf("needsFull(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}

// TestHeadlessDeps: the packages whose inits or cgo libraries cost every process start stay out of the
// headless build (and are in the full one, so the check cannot pass by looking at nothing).
func TestHeadlessDeps(t *testing.T) {
	heavy := []string{
		"github.com/rivo/tview", "github.com/gdamore/tcell/v2", "github.com/tpmline/tpmline/tui",
		"github.com/google/go-tpm-tools/simulator", "github.com/prometheus/client_golang/prometheus",
		"google.golang.org/protobuf/proto", "github.com/tpmline/tpmline/provisioning/ca", "github.com/jung-kurt/gofpdf",
	}
	deps := func(tags ...string) map[string]bool {
		out, err := exec.Command("go", append(append([]string{"list"}, tags...), "-deps", ".")...).Output()
		if err != nil {
			t.Fatalf("go list %v: %v", tags, err)
		}
		m := map[string]bool{}
		for _, p := range strings.Fields(string(out)) {
			m[p] = true
		}
		return m
	}
	headless, full := deps("-tags", "headless"), deps()
	for _, p := range heavy {
		if headless[p] {
			t.Errorf("the headless station links %s", p)
		}
		if !full[p] {
			t.Errorf("station-full does not link %s: the list of heavy packages is out of date", p)
		}
	}
}

// TestHeadlessForwards: bin/station runs the demo (the terminal's wiring, the simulator, the in-process
// CA) through station-full beside it, and says what to do when station-full is missing.
func TestHeadlessForwards(t *testing.T) {
	bin := binaries(t)
	data := t.TempDir()
	r := runBin(t, "station", "demo", "--headless", "--boards", "1", "--data", data)
	if r.code != 0 || !strings.Contains(r.stdout, "1 of 1 passed") {
		t.Fatalf("station demo --headless: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// One board is no rate (records.FiguresOK): the summary shows a dash, not a figure from one sample.
	if !strings.Contains(r.stdout, "(- u/h)") {
		t.Errorf("station demo --headless with one board shows a rate:\n%s", r.stdout)
	}

	alone := t.TempDir()
	b, err := os.ReadFile(filepath.Join(bin, "station"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(alone, "station"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	db := "sqlite://" + filepath.Join(alone, "inventory.db")
	for _, args := range [][]string{
		{"demo", "--headless", "--data", data},
		{"--db", db, "provision", "--tpm", "sim", "--serial", "S1", "--batch", "B1"},
		{"--metrics-listen", "127.0.0.1:0", "--db", db, "batch", "list"},
		{"--db", db, "report", "batch", "--batch", "B1", "--pdf", filepath.Join(alone, "B1.pdf")},
	} {
		cmd := exec.Command(filepath.Join(alone, "station"), args...)
		cmd.Env = append(os.Environ(), "PATH="+alone)
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "needs station-full") {
			t.Errorf("station %s without station-full: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
