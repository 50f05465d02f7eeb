package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
)

// oneLine: an error is one line on stderr, without a usage dump.
func oneLineErr(t *testing.T, what string, r result) {
	t.Helper()
	if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || strings.Contains(r.stderr, "usage:") {
		t.Fatalf("%s: stderr is not one line without usage:\n%s", what, r.stderr)
	}
}

// TestCLIHelpAndParsing (issue 17, point 8): help per command with every flag, its default and an example,
// exit 0 on stdout; errors one line; flags after positional arguments.
func TestCLIHelpAndParsing(t *testing.T) {
	for _, args := range [][]string{{"batch", "open", "--help"}, {"help", "batch", "open"}, {"batch", "open", "-h"}} {
		r := runBin(t, "station", args...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("%v: exit %d %q", args, r.code, r.stderr)
		}
		for _, want := range []string{"usage: station batch open --id ID", "--quantity N", `(default "default")`, "example:", "station batch open --id B1", "--db"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("%v: help lacks %q:\n%s", args, want, r.stdout)
			}
		}
	}
	if r := runBin(t, "station", "--help"); r.code != 0 || !strings.Contains(r.stdout, "ek-list verify") || !strings.Contains(r.stdout, "exit codes") {
		t.Fatalf("station --help: %d\n%s", r.code, r.stdout)
	}
	db := "sqlite://" + filepath.Join(t.TempDir(), "inv.db")
	mustRun(t, "station", "--db", db, "init")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"provision", "--nope"}, 2, "flag provided but not defined"},
		{[]string{"batch"}, 2, "give one of open, close, list, show"},
		{[]string{"batch", "show", "NOPE"}, 2, "NOPE"},           // a refusal: one line, no usage
		{[]string{"board", "show", "NOPE", "--json"}, 1, "NOPE"}, // a flag after the serial is taken
	} {
		r := runBin(t, "station", append([]string{"--db", db}, c.args...)...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Fatalf("%v: exit %d (want %d) %q (want %q)", c.args, r.code, c.code, r.stderr, c.want)
		}
		oneLineErr(t, strings.Join(c.args, " "), r)
	}
}

// TestCLINoAccidentalInventory (issue 17, point 7): a mistyped SQLite path is refused, naming it, with exit
// 2, and nothing is created; 'station init' creates the inventory, once.
func TestCLINoAccidentalInventory(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{filepath.Join(dir, "invntory.db"), filepath.Join(dir, "no", "such", "dir", "x.db")} {
		r := runBin(t, "station", "--db", "sqlite://"+path, "batch", "list")
		if r.code != 2 || !strings.Contains(r.stderr, "sqlite://"+path) || !strings.Contains(r.stderr, "station init") {
			t.Fatalf("%s: exit %d %q", path, r.code, r.stderr)
		}
		oneLineErr(t, path, r)
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("%s was created: %v", path, err)
		}
	}
	pg := pgURL(t) // an empty PostgreSQL schema holds no inventory either
	if r := runBin(t, "station", "--db", pg, "batch", "list"); r.code != 2 || !strings.Contains(r.stderr, "holds no inventory") {
		t.Fatalf("empty PostgreSQL: exit %d %q", r.code, r.stderr)
	}
	for _, db := range []string{"sqlite://" + filepath.Join(dir, "new", "inventory.db"), pg} {
		if out := mustRun(t, "station", "--db", db, "init"); !strings.Contains(out, "inventory created") {
			t.Fatalf("init: %s", out)
		}
		if out := mustRun(t, "station", "--db", db, "init"); !strings.Contains(out, "already exists") {
			t.Fatalf("second init: %s", out)
		}
		mustRun(t, "station", "--db", db, "batch", "list")
	}
}

// TestCLIErrorsNameTheCause (issue 17, points 3, 5, 6): a station certificate from another CA is
// ca_unauthenticated, a malformed --tpm is a usage error at once, and reconcile says board by board what it
// found (with the true cause) and did.
func TestCLIErrorsNameTheCause(t *testing.T) {
	vendor := fixturestest.NewSwtpmVendor(t)
	ca := startUpstreamCA(t, vendorCAs(t, vendor))
	other := startUpstreamCA(t, vendorCAs(t, vendor)) // another CA directory made the same way
	db := "sqlite://" + filepath.Join(t.TempDir(), "inventory.db")
	g := append([]string{"--db", db, "--station-id", "st1"}, ca.flags...)
	st := func(args ...string) result { return runBin(t, "station", append(append([]string{}, g...), args...)...) }
	mustRun(t, "station", append(append([]string{}, g...), "init")...)
	mustRun(t, "station", append(append([]string{}, g...), "batch", "open", "--id", "B1")...)
	board := fixturestest.NewSwtpmBoardFrom(t, vendor, fixtures.SwtpmBoardOptions{})
	if r := st("reconcile"); r.code != 0 || !strings.Contains(r.stdout, "nothing to resume") {
		t.Fatalf("reconcile with nothing in progress: %d %q %q", r.code, r.stdout, r.stderr)
	}

	t.Run("malformed --tpm", func(t *testing.T) {
		for _, addr := range []string{"swtpm://127.0.0.1", "tcp://127.0.0.1:2321", "127.0.0.1:2321"} {
			r := st("provision", "--tpm", addr, "--serial", "SN-A", "--batch", "B1")
			if r.code != 2 || !strings.Contains(r.stderr, "unknown TPM address") || strings.Contains(r.stderr, "fixture cable") {
				t.Fatalf("%s: exit %d %q", addr, r.code, r.stderr)
			}
			oneLineErr(t, addr, r)
		}
	})
	t.Run("certificate from another CA", func(t *testing.T) {
		foreign := append([]string{}, g...)
		foreign[9], foreign[11] = other.flags[5], other.flags[7] // --client-cert, --client-key of the other CA
		b2 := fixturestest.NewSwtpmBoardFrom(t, vendor, fixtures.SwtpmBoardOptions{})
		r := runBin(t, "station", append(foreign, "provision", "--tpm", b2.Addr(), "--serial", "SN-B", "--batch", "B1")...)
		if r.code != 1 || !strings.Contains(r.stderr, "ca_unauthenticated") || !strings.Contains(r.stderr, "client_cert/client_key") || strings.Contains(r.stderr, "ca_unreachable") {
			t.Fatalf("exit %d %q", r.code, r.stderr)
		}
		oneLineErr(t, "foreign certificate", r)
		t.Logf("foreign certificate: %s", r.stderr)
	})
	t.Run("reconcile after a CA outage", func(t *testing.T) {
		down := append([]string{}, g...)
		down[5] = "https://127.0.0.1:1"
		if r := runBin(t, "station", append(down, "provision", "--tpm", board.Addr(), "--serial", "SN-C", "--batch", "B1", "--slot", "3")...); r.code != 1 || !strings.Contains(r.stderr, "ca_unreachable") {
			t.Fatalf("provision with the CA down: %d %q", r.code, r.stderr)
		}
		r := st("reconcile")
		if r.code != 1 || !strings.Contains(r.stdout, "board SN-C (batch B1, slot 3, attempt 1): found in progress: step enroll failed: ca_unreachable") ||
			!strings.Contains(r.stdout, "marked FAILED (interrupted)") || !strings.Contains(r.stdout, "--slot 3") {
			t.Fatalf("reconcile: %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		t.Logf("reconcile: %s", r.stdout)
		// Failed now, not in progress: the next reconcile says so rather than nothing.
		if r := st("reconcile"); r.code != 0 || !strings.Contains(r.stdout, "board SN-C (batch B1, slot 3): not in progress: failed as interrupted") {
			t.Fatalf("second reconcile: %d\n%s", r.code, r.stdout)
		}
		mustRun(t, "station", append(append([]string{}, g...), "provision", "--tpm", board.Addr(), "--serial", "SN-C", "--batch", "B1", "--slot", "3")...)
	})
	t.Run("inventory unreachable", func(t *testing.T) {
		// The provision stops before its flow: the line names the board and says nothing was recorded.
		for _, c := range []struct {
			db   string
			code int
			want string
		}{
			{"postgres://postgres@127.0.0.1:1/inv?sslmode=disable&connect_timeout=2", 1, "database unreachable"},
			{"sqlite://" + filepath.Join(t.TempDir(), "absent.db"), 2, "station init"},
		} {
			args := append([]string{}, g...)
			args[1] = c.db
			r := runBin(t, "station", append(args, "provision", "--tpm", board.Addr(), "--serial", "SN-D", "--batch", "B1")...)
			if r.code != c.code || !strings.Contains(r.stderr, "board SN-D not started, nothing recorded: ") || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("%s: exit %d %q", c.db, r.code, r.stderr)
			}
			oneLineErr(t, c.db, r)
		}
	})
	t.Run("EK list verify without a database", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "B1-ek.json")
		mustRun(t, "station", append(append([]string{}, g...), "ek-list", "export", "--batch", "B1", "--format", "json", "--out", out)...)
		nodb := []string{"--db", "sqlite://" + filepath.Join(t.TempDir(), "absent.db")}
		for _, args := range [][]string{{"ek-list", "verify", out, "--trust", ca.flags[3]}, {"report", "verify", out}} {
			r := runBin(t, "station", append(nodb, args...)...)
			if r.code != 0 || !strings.Contains(r.stdout, "signature OK") || !strings.Contains(r.stdout, "EK list of batch B1") || !strings.Contains(r.stdout, "entries, each well formed") {
				t.Fatalf("%v: %d %q %q", args, r.code, r.stdout, r.stderr)
			}
		}
		b, _ := os.ReadFile(out)
		_ = os.WriteFile(out, []byte(strings.Replace(string(b), "st1", "st2", 1)), 0o644)
		if r := runBin(t, "station", append(nodb, "ek-list", "verify", out)...); r.code != 1 || !strings.Contains(r.stderr, "INVALID") {
			t.Fatalf("tampered list: %d %q", r.code, r.stderr)
		}
	})
	t.Run("openssl recipe of docs/reports.md", func(t *testing.T) {
		rep := filepath.Join(t.TempDir(), "B1.csv")
		mustRun(t, "station", append(append([]string{}, g...), "report", "batch", "--batch", "B1", "--csv", rep)...)
		script := opensslRecipe(t)
		cmd := exec.Command("sh", "-ec", script)
		cmd.Dir = filepath.Dir(rep)
		cmd.Env = append(os.Environ(), "F="+rep, "S="+rep+".sig", "ROOT="+ca.flags[3])
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Verified OK") || !strings.Contains(string(out), "signer.pem: OK") {
			t.Fatalf("recipe: %v\n%s\n%s", err, out, script)
		}
	})
}

// opensslRecipe is the sh block of docs/reports.md's "Checking a signature with openssl alone", with F, S
// and the station root taken from the environment.
func opensslRecipe(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/reports.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i := strings.Index(s, "### Checking a signature with openssl alone")
	if i < 0 {
		t.Fatal("docs/reports.md lost its openssl recipe")
	}
	s = s[i:]
	start := strings.Index(s, "```sh\n")
	end := strings.Index(s[start+6:], "```")
	body := s[start+6 : start+6+end]
	var lines []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "F=") { // the doc's example file names
			continue
		}
		lines = append(lines, strings.ReplaceAll(l, "station-root.pem", `"$ROOT"`))
	}
	return strings.Join(lines, "\n")
}
