package qa

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpmline/tpmline/inventory/inventorytest"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/reports"
	"github.com/tpmline/tpmline/reports/signed"
)

func testSigner(t *testing.T) signed.Signer {
	key := newKey(t)
	return signed.Signer{Key: key, Chain: []*x509.Certificate{certFor(t, "st1", key, nil, nil, false)}}
}

// TestReportRefusesTamper: for every raw-SQL change behind the store's back (inventorytest.Cases: every
// field of every table a report reads, a row of each deleted and inserted), on both engines, the batch
// report refuses; with AllowUnverified it is written marked unverified in the JSON, naming the
// divergence; and a report made before the change no longer verifies against the inventory.
func TestReportRefusesTamper(t *testing.T) {
	ctx := context.Background()
	sg := testSigner(t)
	for _, engine := range inventorytest.Engines {
		t.Run(engine, func(t *testing.T) {
			for _, c := range inventorytest.Cases() {
				t.Run(c.Name, func(t *testing.T) {
					dbURL := inventorytest.FreshURL(t, engine)
					inv := inventorytest.Open(t, dbURL)
					inventorytest.Build(t, inv)
					dir := t.TempDir()
					before := filepath.Join(dir, "before.json")
					if c.Table != "batches" || c.Field != "row" {
						if _, err := WriteBatchReports(ctx, inv, c.Batch, sg, "", "", before); err != nil {
							t.Fatalf("report before tampering: %v", err)
						}
					}
					inventorytest.Apply(t, dbURL, c)

					out := filepath.Join(dir, "after.json")
					_, err := WriteBatchReports(ctx, inv, c.Batch, sg, "", "", out)
					if c.Name == "delete batch" {
						if !errors.Is(err, records.ErrBatchNotFound) {
							t.Fatalf("report of a deleted batch = %v", err)
						}
						return
					}
					if !errors.Is(err, records.ErrStateDiverged) || !strings.Contains(err.Error(), c.Table) {
						t.Fatalf("report = %v, want a refusal naming %s", err, c.Table)
					}
					if _, err := os.Stat(out); !os.IsNotExist(err) {
						t.Fatalf("a refused report left a file: %v", err)
					}

					audit, err := WriteBatchReportsWith(ctx, inv, c.Batch, sg, "", "", out, ReportOptions{AllowUnverified: true})
					if err != nil || !audit.Unverified {
						t.Fatalf("unverified report = %+v, %v", audit, err)
					}
					js, _ := os.ReadFile(out)
					rep, err := reports.ReadReportJSON(bytes.NewReader(js), 0)
					if err != nil {
						t.Fatal(err)
					}
					named := false
					for _, l := range rep.Audit.Divergences {
						named = named || (strings.HasPrefix(l, c.Table+" ") && strings.Contains(l, " "+c.Field+": "))
					}
					if !rep.Audit.Unverified || !named {
						t.Fatalf("unverified report's audit = %+v", rep.Audit)
					}
					if m, err := CompareReportJSON(ctx, inv, rep, js); err != nil || m.Match || m.Verification.OK() {
						t.Errorf("an unverified report compared as matching: %+v, %v", m, err)
					}

					if c.Table == "batches" && c.Field == "row" {
						return
					}
					bjs, _ := os.ReadFile(before)
					brep, err := reports.ReadReportJSON(bytes.NewReader(bjs), 0)
					if err != nil {
						t.Fatal(err)
					}
					m, err := CompareReportJSON(ctx, inv, brep, bjs)
					if err != nil || m.Match || m.Verification.OK() || len(m.Verification.Divergences) == 0 {
						t.Errorf("report verify --db after tampering = %+v, %v", m, err)
					}
				})
			}
		})
	}
}

// TestReportUnverifiedForms: an unverified report says so in the CSV's first rows and on every page of
// the PDF; the EK list refuses the same batch.
func TestReportUnverifiedForms(t *testing.T) {
	ctx := context.Background()
	dbURL := inventorytest.FreshURL(t, "sqlite")
	inv := inventorytest.Open(t, dbURL)
	inventorytest.Build(t, inv)
	inventorytest.Exec(t, dbURL, "UPDATE boards SET serial = 'P1-EDITED' WHERE serial = 'P1'")
	base := filepath.Join(t.TempDir(), "B1")
	if _, err := WriteBatchReportsWith(ctx, inv, "B1", testSigner(t), base+".pdf", base+".csv", "", ReportOptions{AllowUnverified: true}); err != nil {
		t.Fatal(err)
	}
	csv, _ := os.ReadFile(base + ".csv")
	first := strings.SplitN(string(csv), "\r\n", 3)
	if !strings.HasSuffix(first[0], ",state,divergences,checkpoint,checkpoint_signature") || !strings.Contains(first[1], "UNVERIFIED") ||
		!strings.Contains(first[1], "boards P1-EDITED row") || !strings.Contains(first[1], "boards P1 row") {
		t.Errorf("CSV head = %q", first[:2])
	}
	// pdftotext separates pages with a form feed.
	txt, err := exec.Command("pdftotext", "-layout", base+".pdf", "-").Output()
	if err != nil {
		t.Fatalf("pdftotext: %v", err)
	}
	pages := strings.Split(strings.TrimRight(string(txt), "\f"), "\f")
	for i, p := range pages {
		if !strings.Contains(p, "UNVERIFIED: the inventory disagreed with its audit chain") {
			t.Errorf("PDF page %d of %d does not say UNVERIFIED", i+1, len(pages))
		}
	}
	if len(pages) < 2 || !strings.Contains(string(txt), "boards P1-EDITED row") {
		t.Errorf("PDF: %d pages, divergences not listed:\n%s", len(pages), txt)
	}
	if _, err := EKListEntries(ctx, inv, "B1"); !errors.Is(err, records.ErrStateDiverged) {
		t.Errorf("EK list of a tampered batch = %v", err)
	}
}
