package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/tpmline/tpmline"

// Outside modules named in the rules.
var (
	sqlDrivers = []string{"github.com/jmoiron/sqlx", "github.com/lib/pq", "modernc.org/sqlite"}
	goTPM      = []string{"github.com/google/go-tpm", "github.com/google/go-tpm-tools"}
	ui         = []string{"github.com/rivo/tview", "github.com/gdamore/tcell"}
	pdf        = []string{"github.com/jung-kurt/gofpdf"}
)

// rule says what a package (and, with tree, every package under it) never depends on: never lists
// module paths that must not appear among its transitive dependencies, noImport project packages it must
// not import directly.
type rule struct {
	pkg      string
	tree     bool
	never    []string
	noImport []string
	why      string
}

func own(paths ...string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = module + "/" + p
	}
	return out
}

var rules = []rule{
	{pkg: "records", never: cat(sqlDrivers, goTPM, ui, pdf, own("inventory", "provisioning", "station", "tui", "reports", "fixtures")),
		why: "the domain records are plain values every layer shares"},
	{pkg: "tui", tree: true, never: cat(sqlDrivers, goTPM, pdf, own("inventory", "provisioning", "fixtures", "reports")),
		why: "the terminal talks to the station through an interface and its event types only"},
	{pkg: "station/progress", never: cat(sqlDrivers, goTPM, ui, pdf, own("inventory", "provisioning")),
		why: "what the terminal sees of the station, without the TPM or the store"},
	{pkg: "station", never: cat(sqlDrivers, ui, pdf, own("inventory", "tui", "fixtures")),
		why: "the use case declares the interfaces it consumes; cmd/ wires the store and the fixtures"},
	{pkg: "station/qa", never: cat(sqlDrivers, ui, own("inventory", "tui")),
		why: "batch reports and EK lists over the station's store interface"},
	{pkg: "provisioning", tree: true, never: cat(ui, pdf, own("inventory", "station", "tui")),
		noImport: own("fixtures"),
		why:      "the protocol, both ends, knows nothing of the line, the UI or the PDF"},
	{pkg: "inventory", never: cat(goTPM, ui, pdf, own("provisioning", "station", "tui", "reports", "fixtures")),
		why: "the store holds records; it does not speak TPM"},
	{pkg: "internal/sqldb", never: cat(goTPM, ui, pdf, own("inventory", "provisioning", "station", "tui", "records")),
		why: "the SQL foundation is shared by the inventory and the CA store and knows neither"},
	{pkg: "reports", tree: true, never: cat(sqlDrivers, ui, own("inventory", "station", "tui", "provisioning/ca", "fixtures")),
		why: "report formats are written from values, not from the store; the protocol's rules (serial, EK identity) come from provisioning"},
	{pkg: "reports/signed", never: cat(pdf, sqlDrivers, ui),
		why: "the CA imports the EK-list format and signatures without the PDF library"},
	{pkg: "fixtures", never: cat(sqlDrivers, ui, pdf, own("station", "tui", "inventory", "reports", "provisioning")),
		why: "how the station reaches a TPM; it is wired under the station, never above it"},
	{pkg: "fixtures/fixturestest", tree: true, never: cat(ui, pdf, own("station", "tui", "inventory")),
		why: "the test kit (a test PKI, the real CA on loopback, database URLs) sits under every package's tests"},
	{pkg: "cmd/upstream-ca", never: cat(ui, pdf, own("tui", "inventory", "station")),
		why: "the CA binary carries neither the operator terminal nor the PDF library"},
	{pkg: "cmd/board-agent", never: cat(sqlDrivers, ui, pdf, own("inventory", "station", "tui", "provisioning/ca")),
		why: "the board side relays its TPM; it has no store and no CA"},
}

func cat(lists ...[]string) []string { return slices.Concat(lists...) }

type listed struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func goList(t *testing.T) map[string]listed {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.Bytes())
	}
	pkgs := map[string]listed{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs
}

// matches reports whether dep is the module path m or a package under it.
func matches(dep, m string) bool { return dep == m || strings.HasPrefix(dep, m+"/") }

// TestImportRules checks every rule against the packages as they are.
func TestImportRules(t *testing.T) {
	pkgs := goList(t)
	for _, r := range rules {
		root := module + "/" + r.pkg
		n := 0
		for path, p := range pkgs {
			if path != root && !(r.tree && strings.HasPrefix(path, root+"/")) {
				continue
			}
			n++
			for _, dep := range p.Deps {
				for _, m := range r.never {
					if matches(dep, m) && !(strings.HasPrefix(m, module+"/") && matches(path, m)) {
						t.Errorf("%s depends on %s (through its imports %v): %s never does, because %s", path, dep, direct(p, pkgs, dep), r.pkg, r.why)
					}
				}
			}
			for _, imp := range p.Imports {
				for _, m := range r.noImport {
					if matches(imp, m) {
						t.Errorf("%s imports %s: %s never does, because %s", path, imp, r.pkg, r.why)
					}
				}
			}
		}
		if n == 0 {
			t.Errorf("rule for %s matches no package: update the rules with the layout", r.pkg)
		}
	}
}

// TestNothingImportsCmd: cmd/ is wiring; no package outside it imports it.
func TestNothingImportsCmd(t *testing.T) {
	for path, p := range goList(t) {
		if matches(path, module+"/cmd") {
			continue
		}
		for _, imp := range p.Imports {
			if matches(imp, module+"/cmd") {
				t.Errorf("%s imports %s", path, imp)
			}
		}
	}
}

// TestSQLDriversInOnePlace: only the SQL foundation opens drivers (and the benchmarks, which bulk-load
// PostgreSQL with COPY, and the test kit's throw-away schemas); the inventory and the CA store write their
// SQL over it.
func TestSQLDriversInOnePlace(t *testing.T) {
	allowed := own("internal/sqldb", "bench", "fixtures/fixturestest/testdb")
	for path, p := range goList(t) {
		if slices.ContainsFunc(allowed, func(a string) bool { return matches(path, a) }) {
			continue
		}
		for _, imp := range p.Imports {
			if matches(imp, "github.com/lib/pq") || matches(imp, "modernc.org/sqlite") {
				t.Errorf("%s imports the driver %s directly; go through internal/sqldb", path, imp)
			}
		}
	}
}

// direct names which of p's direct imports bring dep in, for a message a reviewer can act on.
func direct(p listed, pkgs map[string]listed, dep string) []string {
	var via []string
	for _, imp := range p.Imports {
		if imp == dep || slices.Contains(pkgs[imp].Deps, dep) {
			via = append(via, imp)
		}
	}
	return via
}
