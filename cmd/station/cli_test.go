package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/lib/pq"
	_ "modernc.org/sqlite"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/fixtures/fixturestest/testdb"
	"github.com/tpmline/tpmline/internal/clock"
)

// The README's newcomer flow, with the real binaries: upstream-ca init / station add / serve over mutual TLS,
// station batch open / provision / board show / audit verify, against swtpm boards made by swtpm_setup,
// on SQLite and PostgreSQL; then the CLI's refusals and exit codes.

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binaries builds the binaries once per test process as make build lays them out: station is the headless
// build, station-full the complete one it hands the terminal, the demo and sim boards to, then upstream-ca
// and board-agent.
func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "tpmline-bin-")
		if binErr != nil {
			return
		}
		build := func(args ...string) error {
			out, err := exec.Command("go", append(append([]string{"build"}, clock.GoBuildFlags()...), args...)...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("go build %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return nil
		}
		if binErr = build("-o", binDir+"/", "github.com/tpmline/tpmline/cmd/..."); binErr != nil {
			return
		}
		if binErr = os.Rename(filepath.Join(binDir, "station"), filepath.Join(binDir, "station-full")); binErr != nil {
			return
		}
		binErr = build("-tags", "headless", "-o", filepath.Join(binDir, "station"), "github.com/tpmline/tpmline/cmd/station")
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func runBin(t *testing.T, bin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(filepath.Join(binaries(t), bin), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return result{code, out.String(), errb.String()}
}

func mustRun(t *testing.T, bin string, args ...string) string {
	t.Helper()
	r := runBin(t, bin, args...)
	if r.code != 0 {
		t.Fatalf("%s %s: exit %d\n%s%s", bin, strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// upstreamCA runs `upstream-ca serve` and returns its URL and the station's credential flags.
type upstreamCA struct {
	url   string
	dir   string
	flags []string
}

// startVendorAndCA makes a simulated TPM vendor in dir/vendor and starts the real upstream-ca trusting its
// EK root and intermediate.
func startVendorAndCA(t *testing.T, dir string, extra ...string) (vendorDir string, ca *upstreamCA) {
	t.Helper()
	vendorDir = filepath.Join(dir, "vendor")
	m, err := fixtures.LoadOrCreateManufacturer(vendorDir)
	if err != nil {
		t.Fatal(err)
	}
	roots := filepath.Join(dir, "vendor-cas.pem")
	if err := os.WriteFile(roots, append(m.RootPEM(), m.IntermediatePEM()...), 0o644); err != nil {
		t.Fatal(err)
	}
	return vendorDir, startUpstreamCA(t, roots, extra...)
}

// sqliteStation initialises a SQLite inventory in dir for station st1 of ca and returns a runner of station
// commands against it (each must exit 0) and the global flags it passes.
func sqliteStation(t *testing.T, dir string, ca *upstreamCA) (run func(args ...string) string, g []string) {
	t.Helper()
	g = append([]string{"--db", "sqlite://" + filepath.Join(dir, "inventory.db"), "--station-id", "st1"}, ca.flags...)
	run = func(args ...string) string {
		t.Helper()
		return mustRun(t, "station", append(append([]string{}, g...), args...)...)
	}
	run("init")
	return run, g
}

func startUpstreamCA(t *testing.T, ekRoots string, extra ...string) *upstreamCA {
	t.Helper()
	return startUpstreamCAInit(t, ekRoots, nil, extra...)
}

// startUpstreamCAInit is startUpstreamCA with more flags for init (--pkcs11-*).
func startUpstreamCAInit(t *testing.T, ekRoots string, initArgs []string, extra ...string) *upstreamCA {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	mustRun(t, "upstream-ca", append([]string{"init", "--dir", dir}, initArgs...)...)
	out := filepath.Join(t.TempDir(), "st1")
	mustRun(t, "upstream-ca", "station", "add", "--dir", dir, "--name", "st1", "--out", out)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, filepath.Join(binaries(t), "upstream-ca"),
		append([]string{"serve", "--dir", dir, "--listen", "127.0.0.1:0", "--ek-roots", ekRoots}, extra...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	addrRE := regexp.MustCompile(`upstream CA serving"? addr=(\S+)`)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		return &upstreamCA{url: "https://" + a, dir: dir, flags: []string{"--ca", "https://" + a, "--ca-trust", filepath.Join(out, "ca-trust.pem"),
			"--client-cert", filepath.Join(out, "st1.crt"), "--client-key", filepath.Join(out, "st1.key")}}
	case <-time.After(30 * time.Second):
		t.Fatal("upstream-ca serve did not come up")
	}
	return nil
}

// addStation has the CA make credentials for another station and returns its --ca flags.
func (c *upstreamCA) addStation(t *testing.T, name string) []string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	mustRun(t, "upstream-ca", "station", "add", "--dir", c.dir, "--name", name, "--out", out)
	return []string{"--ca", c.url, "--ca-trust", filepath.Join(out, "ca-trust.pem"),
		"--client-cert", filepath.Join(out, name+".crt"), "--client-key", filepath.Join(out, name+".key")}
}

// vendorCAs writes the swtpm vendor's root and intermediate into one PEM file for --ek-roots.
func vendorCAs(t *testing.T, v *fixtures.SwtpmVendor) string {
	t.Helper()
	var all []byte
	for _, p := range []string{v.RootPath(), v.IntermediatePath()} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	path := filepath.Join(t.TempDir(), "ek-roots.pem")
	if err := os.WriteFile(path, all, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func pgURL(t *testing.T) string { return testdb.PostgresURL(t, "cli") }

func TestCLIProvisionSwtpmBatch(t *testing.T) {
	vendor := fixturestest.NewSwtpmVendor(t)
	ca := startUpstreamCA(t, vendorCAs(t, vendor))
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			db := "sqlite://" + filepath.Join(t.TempDir(), "inventory.db")
			if engine == "postgres" {
				db = pgURL(t)
			}
			// One station per inventory: the CA witnesses each station's one chain.
			name := "st-" + engine
			g := append([]string{"--db", db, "--station-id", name}, ca.addStation(t, name)...)
			st := func(args ...string) result { return runBin(t, "station", append(append([]string{}, g...), args...)...) }
			batch := "B-" + engine
			mustRun(t, "station", append(append([]string{}, g...), "init")...)
			if r := st("batch", "open", "--id", batch, "--product", "default", "--quantity", "2", "--work-order", "WO-7", "--operator", "ana"); r.code != 0 {
				t.Fatalf("batch open: %d %s", r.code, r.stderr)
			}
			for i := 1; i <= 2; i++ {
				board := fixturestest.NewSwtpmBoardFrom(t, vendor, fixtures.SwtpmBoardOptions{P256EKCert: i == 2})
				serial := fmt.Sprintf("%s-SN%04d", strings.ToUpper(engine[:2]), i)
				r := st("provision", "--tpm", board.Addr(), "--serial", serial, "--batch", batch, "--json")
				if r.code != 0 {
					t.Fatalf("provision %s: exit %d\n%s%s", serial, r.code, r.stdout, r.stderr)
				}
				var res provisionResult
				if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.State != "provisioned" || res.IDevIDCertSerial == "" || len(res.Steps) < 15 {
					t.Fatalf("provision --json: %v %+v", err, res)
				}
				show := st("board", "show", serial)
				for _, want := range []string{"state provisioned", "iak", "idevid", "nv-write", "board.provisioned", "EK public SHA-256 " + res.EKPubSHA256} {
					if !strings.Contains(show.stdout, want) {
						t.Fatalf("board show lacks %q:\n%s", want, show.stdout)
					}
				}
			}
			if r := st("batch", "show", batch); r.code != 0 || strings.Count(r.stdout, "provisioned") != 2 {
				t.Fatalf("batch show: %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			if r := st("audit", "verify"); r.code != 0 || !strings.Contains(r.stdout, "audit chain OK") {
				t.Fatalf("audit verify: %d %s %s", r.code, r.stdout, r.stderr)
			}
			// Each enrollment carried the chain head: the CA holds the second board's, which is past the
			// first board's end, and audit verify checks the chain against every head.
			heads := caHeads(t, ca.dir, name)
			firstDone := provisionedSeq(t, db, strings.ToUpper(engine[:2])+"-SN0001")
			if len(heads) != 2 || heads[0].seq <= firstDone || heads[1].seq >= firstDone {
				t.Fatalf("witnessed heads %+v, first board provisioned at seq %d", heads, firstDone)
			}
			if r := st("audit", "verify"); r.code != 0 || !strings.Contains(r.stdout, "witness OK: the chain holds the 2 head(s)") {
				t.Fatalf("audit verify against the enrollment heads: %d %s %s", r.code, r.stdout, r.stderr)
			}
			if engine == "sqlite" {
				enrollmentHeadCases(t, st, strings.TrimPrefix(db, "sqlite://"), heads[0])
			}
			if r := st("batch", "close", "--id", batch); r.code != 0 {
				t.Fatalf("batch close: %d %s", r.code, r.stderr)
			}
			// QA's one command on the swtpm batch, and its check against the audit trail.
			rep := filepath.Join(t.TempDir(), "report")
			if r := st("report", "batch", "--batch", batch, "--pdf", rep+".pdf", "--json", rep+".json"); r.code != 0 {
				t.Fatalf("report batch: %d %s", r.code, r.stderr)
			}
			if r := st("report", "verify", rep+".json"); r.code != 0 || !strings.Contains(r.stdout, "matches the inventory") {
				t.Fatalf("report verify: %d %s %s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// TestCLIRefusals: bad input gets exit 2 or 1 with one line that says what to do, and nothing recorded
// changes.
func TestCLIRefusals(t *testing.T) {
	vendor := fixturestest.NewSwtpmVendor(t)
	ca := startUpstreamCA(t, vendorCAs(t, vendor))
	db := "sqlite://" + filepath.Join(t.TempDir(), "inventory.db")
	g := append([]string{"--db", db, "--station-id", "st1"}, ca.flags...)
	st := func(args ...string) result { return runBin(t, "station", append(append([]string{}, g...), args...)...) }
	mustRun(t, "station", append(append([]string{}, g...), "init")...)
	mustRun(t, "station", append(append([]string{}, g...), "batch", "open", "--id", "B1")...)
	board := fixturestest.NewSwtpmBoardFrom(t, vendor, fixtures.SwtpmBoardOptions{})
	down := fixturestest.NewSwtpmBoardFrom(t, vendor, fixtures.SwtpmBoardOptions{})
	if err := down.Stop(); err != nil {
		t.Fatal(err)
	}
	caDown := append([]string{"--db", db, "--station-id", "st1"}, ca.flags...)
	caDown[5] = "https://127.0.0.1:1"

	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown batch", []string{"provision", "--tpm", board.Addr(), "--serial", "SN1", "--batch", "NOPE"}, 2, "open a batch"},
		{"malformed serial", []string{"provision", "--tpm", board.Addr(), "--serial", "SN 1", "--batch", "B1"}, 2, "scan again"},
		{"control characters", []string{"provision", "--tpm", board.Addr(), "--serial", "SN\x1b[31m", "--batch", "B1"}, 2, "scan again"},
		{"missing flags", []string{"provision", "--serial", "SN1"}, 2, "required"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"TPM not answering", []string{"provision", "--tpm", down.Addr(), "--serial", "SN2", "--batch", "B1"}, 1, "tpm_unreachable"},
		{"unknown board", []string{"board", "show", "NOPE"}, 1, "not in the inventory"},
		{"close unknown batch", []string{"batch", "close", "--id", "NOPE"}, 2, "batch"},
		{"bad database", []string{"--db", "postgres://nobody@127.0.0.1:1/x?sslmode=disable", "batch", "list"}, 1, "database"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := st(c.args...)
			if r.code != c.code || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", r.code, c.code, r.stderr, c.want)
			}
			if strings.Contains(r.stderr, "\x1b") {
				t.Fatal("stderr echoes a control character")
			}
		})
	}
	t.Run("CA unreachable", func(t *testing.T) {
		r := runBin(t, "station", append(caDown, "provision", "--tpm", board.Addr(), "--serial", "SN3", "--batch", "B1")...)
		if r.code != 1 || !strings.Contains(r.stderr, "ca_unreachable") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Fatalf("exit %d stderr %q", r.code, r.stderr)
		}
		// The CA comes back: the same board passes.
		mustRun(t, "station", append(append([]string{}, g...), "provision", "--tpm", board.Addr(), "--serial", "SN3", "--batch", "B1")...)
	})
	if r := st("audit", "verify"); r.code != 0 {
		t.Fatalf("audit verify after refusals: %d %s", r.code, r.stderr)
	}
}

// TestTwoStationsRace: two stations on one PostgreSQL inventory get the same board (the same serial on a
// cloned TPM: two simulated boards with one seed, so one EK) at the same moment; exactly one provisions it.
func TestTwoStationsRace(t *testing.T) {
	dir := t.TempDir()
	vendorDir, ca := startVendorAndCA(t, dir)
	db := pgURL(t)
	mustRun(t, "station", "--db", db, "init")
	mustRun(t, "station", append([]string{"--db", db, "--station-id", "st1"}, "batch", "open", "--id", "RACE")...)
	for round := 0; round < 3; round++ {
		seed := fmt.Sprint(1000 + round)
		var addrs []string
		for i := 0; i < 2; i++ {
			b, err := startSimBoardSeed(t, filepath.Join(binaries(t), "board-agent"), vendorDir, seed, ca.dir)
			if err != nil {
				t.Fatal(err)
			}
			addrs = append(addrs, b)
		}
		serial := fmt.Sprintf("RACE-%d", round)
		results := make([]result, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				args := append([]string{"--db", db, "--station-id", fmt.Sprintf("line-st%d", i+1)}, ca.flags...)
				results[i] = runBin(t, "station", append(args, "provision", "--tpm", addrs[i], "--serial", serial, "--batch", "RACE")...)
			}(i)
		}
		wg.Wait()
		passed := 0
		for _, r := range results {
			if r.code == 0 {
				passed++
			} else if !regexp.MustCompile(`in_progress_elsewhere|already_provisioned|ca_ek_serial_conflict|inventory`).MatchString(r.stderr) {
				t.Fatalf("loser's reason: %q", r.stderr)
			}
		}
		if passed != 1 {
			t.Fatalf("round %d: %d stations provisioned board %s: %+v", round, passed, serial, results)
		}
	}
}

// startSimBoardSeed runs a board-agent serving a simulator with a fixed seed, accepting the stations of
// the CA in caDir (its station access CA), and returns the relays:// address it printed.
func startSimBoardSeed(t *testing.T, agent, vendorDir, seed, caDir string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, agent, "--tpm", "sim", "--vendor-dir", vendorDir, "--sim-seed", seed, "--listen", "127.0.0.1:0",
		"--station-ca", filepath.Join(caDir, "station-access.crt"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return "", err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return "", err
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if i := strings.LastIndex(sc.Text(), " on "); i >= 0 {
			return strings.TrimSpace(sc.Text()[i+4:]), nil
		}
	}
	return "", fmt.Errorf("board-agent did not start")
}

// TestCLIQA: EK lists exported (signed) and pushed, the CA importing the signed file and refusing a
// tampered one, batch reports in three formats, verified, compared with the audit trail, and every
// tampering detected.
func TestCLIQA(t *testing.T) {
	dir := t.TempDir()
	vendorDir, ca := startVendorAndCA(t, dir)
	dbPath := filepath.Join(dir, "inventory.db")
	g := append([]string{"--db", "sqlite://" + dbPath, "--station-id", "st1"}, ca.flags...)
	st := func(args ...string) result { return runBin(t, "station", append(append([]string{}, g...), args...)...) }
	mustRun(t, "station", append(append([]string{}, g...), "init")...)
	mustRun(t, "station", append(append([]string{}, g...), "batch", "open", "--id", "QA1", "--quantity", "3")...)
	for i := 1; i <= 3; i++ {
		addr, err := startSimBoardSeed(t, filepath.Join(binaries(t), "board-agent"), vendorDir, fmt.Sprint(500+i), ca.dir)
		if err != nil {
			t.Fatal(err)
		}
		mustRun(t, "station", append(append([]string{}, g...), "provision", "--tpm", addr, "--serial", fmt.Sprintf("QA-%d", i), "--batch", "QA1")...)
	}
	// A clone: refused and stopped, on the report as such.
	addr, _ := startSimBoardSeed(t, filepath.Join(binaries(t), "board-agent"), vendorDir, "501", ca.dir)
	if r := st("provision", "--tpm", addr, "--serial", "QA-9", "--batch", "QA1"); r.code != 1 || !strings.Contains(r.stderr, "ek_bound_to_other_serial") {
		t.Fatalf("clone: %d %s", r.code, r.stderr)
	}

	// EK lists.
	for _, format := range []string{"json", "csv"} {
		out := filepath.Join(dir, "eklist."+format)
		mustRun(t, "station", append(append([]string{}, g...), "ek-list", "export", "--batch", "QA1", "--format", format, "--out", out)...)
		if r := runBin(t, "upstream-ca", "ek-list", "import", "--dir", ca.dir, out); r.code != 0 || !strings.Contains(r.stdout, "3 entries") {
			t.Fatalf("import %s: %d %s %s", format, r.code, r.stdout, r.stderr)
		}
		b, _ := os.ReadFile(out)
		_ = os.WriteFile(out, bytes.Replace(b, []byte("QA-2"), []byte("QA-7"), 1), 0o644)
		if r := runBin(t, "upstream-ca", "ek-list", "import", "--dir", ca.dir, out); r.code == 0 || !strings.Contains(r.stderr, "signature") {
			t.Fatalf("tampered %s list imported: %d %s", format, r.code, r.stderr)
		}
	}
	if r := st("ek-list", "push", "--batch", "QA1"); r.code != 0 || !strings.Contains(r.stdout, "3 entries") {
		t.Fatalf("push: %d %s %s", r.code, r.stdout, r.stderr)
	}

	// A JSON report made while the batch is open keeps verifying once the batch goes on (issue 17 point 2).
	early := filepath.Join(dir, "early.json")
	mustRun(t, "station", append(append([]string{}, g...), "report", "batch", "--batch", "QA1", "--json", early)...)
	// Counts agree between batch list, batch show and the report (issue 17 point 1): 3 passed, 1 refused.
	if out := mustRun(t, "station", append(append([]string{}, g...), "batch", "list")...); !regexp.MustCompile(`QA1\s+default\s+open\s+4/3\s+3\s+0\s+1\s+0\s+1\s+0\s+75\.0%`).MatchString(out) {
		t.Fatalf("batch list:\n%s", out)
	}
	if r := st("batch", "show", "QA1"); r.code != 0 || !strings.Contains(r.stdout, "counts done 4/3  passed 3  failed 0  set aside 1 (0 stopped, 1 refused)  in progress 0  yield 75.0%") ||
		!strings.Contains(r.stderr, "warning: batch QA1: done 4/3, 1 over the batch quantity of 3") {
		t.Fatalf("batch show: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if b, _ := os.ReadFile(early); !strings.Contains(string(b), `"done": 4`) || !strings.Contains(string(b), `"set_aside": 1`) || !strings.Contains(string(b), `"yield_percent": 75`) {
		t.Fatalf("report JSON counts:\n%s", b)
	}

	// Reports.
	mustRun(t, "station", append(append([]string{}, g...), "batch", "close", "--id", "QA1")...)
	if r := st("report", "verify", early); r.code != 0 || !strings.Contains(r.stdout, "the batch has 1 events since this report") {
		t.Fatalf("verify a report of a batch that went on: %d %s %s", r.code, r.stdout, r.stderr)
	}
	pdf, csvf, jsonf := filepath.Join(dir, "r.pdf"), filepath.Join(dir, "r.csv"), filepath.Join(dir, "r.json")
	mustRun(t, "station", append(append([]string{}, g...), "report", "batch", "--batch", "QA1", "--pdf", pdf, "--csv", csvf, "--json", jsonf)...)
	for _, f := range []string{pdf, csvf} {
		if r := st("report", "verify", f); r.code != 0 || !strings.Contains(r.stdout, "signature OK") {
			t.Fatalf("verify %s: %d %s %s", f, r.code, r.stdout, r.stderr)
		}
	}
	if r := st("report", "verify", jsonf, "--trust", filepath.Join(dir, "vendor-cas.pem")); r.code != 1 || !strings.Contains(r.stderr, "INVALID") {
		t.Fatalf("verify against another trust anchor: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := st("report", "verify", pdf, "--trust", ca.flags[3]); r.code != 0 || !strings.Contains(r.stdout, "chain to the trust anchor OK") {
		t.Fatalf("verify against the CA's trust anchor: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := st("report", "verify", jsonf); r.code != 0 || !strings.Contains(r.stdout, "matches the inventory") ||
		!strings.Contains(r.stdout, "checkpoint OK (station st1, seq ") || !strings.Contains(r.stdout, "the inventory's chain holds it") {
		t.Fatalf("verify json: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := st("report", "verify", csvf); r.code != 0 || !strings.Contains(r.stdout, "checkpoint OK (station st1, seq ") {
		t.Fatalf("verify csv checkpoint: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if out, err := exec.Command("pdftotext", pdf, "-").Output(); err != nil || !strings.Contains(string(out), "QA-2") || !strings.Contains(string(out), "QA-3") || !strings.Contains(string(out), "1 refused before the inventory check") ||
		!strings.Contains(string(out), "Signed checkpoint of the whole audit chain") || !strings.Contains(string(out), "tpmline-audit-checkpoint/1") {
		t.Fatalf("PDF text: %v\n%s", err, out)
	}
	// The ek-list push had the CA witness the chain head; a cut, an old file or a recomputed chain shows.
	witnessCases(t, st, dbPath, dir)
	// A changed byte in the report: the signature fails.
	b, _ := os.ReadFile(csvf)
	_ = os.WriteFile(csvf, bytes.Replace(b, []byte("QA-3"), []byte("QA-8"), 1), 0o644)
	if r := st("report", "verify", csvf); r.code != 1 || !strings.Contains(r.stderr, "INVALID") {
		t.Fatalf("tampered CSV verified: %d %s", r.code, r.stderr)
	}
	// The issue 12 scenario: one UPDATE on a passed board's row behind the station's back. audit verify
	// names it, the report refuses (or, asked to, says UNVERIFIED), and report verify --db does not match.
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	tamper := func(q string) {
		t.Helper()
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	tamper(`UPDATE boards SET serial = 'QA-2X' WHERE serial = 'QA-2'`)
	if r := st("audit", "verify"); r.code != 1 || !strings.Contains(r.stdout, `boards QA-2X row: chained (no event), stored "present"`) ||
		!strings.Contains(r.stdout, `boards QA-2 row: chained "present", stored (no row)`) || !strings.Contains(r.stderr, "DIVERGES") {
		t.Fatalf("edited serial: audit verify %d %s %s", r.code, r.stdout, r.stderr)
	}
	rep2 := filepath.Join(dir, "r2.json")
	if r := st("report", "batch", "--batch", "QA1", "--json", rep2); r.code != 1 || !strings.Contains(r.stderr, "REFUSED") {
		t.Fatalf("report of a tampered batch: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := st("report", "batch", "--batch", "QA1", "--json", rep2, "--unverified"); r.code != 0 || !strings.Contains(r.stderr, "UNVERIFIED") {
		t.Fatalf("report --unverified: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if b, _ := os.ReadFile(rep2); !bytes.Contains(b, []byte(`"unverified": true`)) || !bytes.Contains(b, []byte("boards QA-2X row")) {
		t.Fatalf("unverified JSON report:\n%s", b)
	}
	if r := st("report", "verify", jsonf); r.code != 1 || !strings.Contains(r.stderr, "NOT compared") || !strings.Contains(r.stderr, "boards QA-2X") {
		t.Fatalf("report verify --db after an edited serial: %d %s %s", r.code, r.stdout, r.stderr)
	}
	tamper(`UPDATE boards SET serial = 'QA-2' WHERE serial = 'QA-2X'`)
	if r := st("audit", "verify"); r.code != 0 {
		t.Fatalf("serial put back: audit verify %d %s %s", r.code, r.stdout, r.stderr)
	}

	// An edited audit row in the database: audit verify names the link, the JSON report no longer matches.
	if _, err := db.Exec(`UPDATE events SET payload = '{"edited":true}' WHERE seq = 5`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if r := st("audit", "verify"); r.code != 1 || !strings.Contains(r.stderr, "BROKEN") || !strings.Contains(r.stderr, "5") {
		t.Fatalf("edited event not detected: %d %s", r.code, r.stderr)
	}
	if r := st("report", "verify", jsonf); r.code != 1 {
		t.Fatalf("report verified against an edited audit trail: %d %s %s", r.code, r.stdout, r.stderr)
	}
}

// TestCLICrashAndReconcile: the real station process is killed (SIGKILL, as a power cut) in the middle of
// writing the certificates into the TPM; `station reconcile` on the next start finishes the board, and the
// board's story tells both attempts' steps.
func TestCLICrashAndReconcile(t *testing.T) {
	vendor := fixturestest.NewSwtpmVendor(t)
	ca := startUpstreamCA(t, vendorCAs(t, vendor))
	db := "sqlite://" + filepath.Join(t.TempDir(), "inventory.db")
	g := append([]string{"--db", db, "--station-id", "st1"}, ca.flags...)
	mustRun(t, "station", append(append([]string{}, g...), "init")...)
	mustRun(t, "station", append(append([]string{}, g...), "batch", "open", "--id", "B1")...)
	board := fixturestest.NewSwtpmBoardFrom(t, vendor, fixtures.SwtpmBoardOptions{})

	cmd := exec.Command(filepath.Join(binaries(t), "station"), append(append([]string{}, g...),
		"provision", "--tpm", board.Addr(), "--serial", "PWR-1", "--batch", "B1", "--slot", "2")...)
	cmd.Env = append(os.Environ(), "TPMLINE_FAULT=nv-write:mid")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
		t.Fatalf("the station was not killed at nv-write: %v\n%s", err, out)
	}
	if r := runBin(t, "station", append(append([]string{}, g...), "board", "show", "PWR-1")...); !strings.Contains(r.stdout, "state in_progress") {
		t.Fatalf("board after the crash:\n%s", r.stdout)
	}
	r := runBin(t, "station", append(append([]string{}, g...), "reconcile", "--tpm", board.Addr(), "--slot", "2")...)
	if r.code != 0 || !strings.Contains(r.stdout, "board PWR-1 (batch B1, slot 2, attempt 1): found in progress: the station stopped during step nv-write") || !strings.Contains(r.stdout, "resumed: PASS") {
		t.Fatalf("reconcile: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	show := mustRun(t, "station", append(append([]string{}, g...), "board", "show", "PWR-1")...)
	if !strings.Contains(show, "state provisioned") || strings.Count(show, "nv-write") < 2 || !strings.Contains(show, "board.resumed") {
		t.Fatalf("board story after reconcile:\n%s", show)
	}
	if r := runBin(t, "station", append(append([]string{}, g...), "provision", "--tpm", board.Addr(), "--serial", "PWR-1", "--batch", "B1", "--slot", "2")...); r.code != 0 || !strings.Contains(r.stdout, "already provisioned") {
		t.Fatalf("TPM and inventory disagree after reconcile: %d %s %s", r.code, r.stdout, r.stderr)
	}
}
