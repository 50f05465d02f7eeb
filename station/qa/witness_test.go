package qa

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpmline/tpmline/inventory/inventorytest"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/reports"
	"github.com/tpmline/tpmline/reports/signed"
)

// TestReportCheckpoint: every report form carries a signed checkpoint of the whole chain at report time,
// on both engines; CheckReportCheckpoint passes it while the chain holds it (also after the chain grew),
// and names each way it can fail: another body under the signature, another signer, another station's
// name, a checkpoint before the report's batch, a chain cut before it and a chain rewritten at its seq.
func TestReportCheckpoint(t *testing.T) {
	ctx := context.Background()
	sg := testSigner(t)
	for _, engine := range inventorytest.Engines {
		t.Run(engine, func(t *testing.T) {
			dbURL := inventorytest.FreshURL(t, engine)
			inv := inventorytest.Open(t, dbURL)
			inventorytest.Build(t, inv)
			dir := t.TempDir()
			js, cs := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.csv")
			if _, err := WriteBatchReports(ctx, inv, inventorytest.Batch, sg, filepath.Join(dir, "r.pdf"), cs, js); err != nil {
				t.Fatal(err)
			}
			content, err := os.ReadFile(js)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := reports.ReadReportJSON(bytes.NewReader(content), 1000)
			if err != nil {
				t.Fatal(err)
			}
			chain, err := inv.VerifyChain(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			cp, err := CheckReportCheckpoint(ctx, inv, &rep.Audit, sg.Chain[0])
			if err != nil || cp.Seq != chain.ChainSeq || cp.Hash != chain.ChainHead || cp.Station != "st1" {
				t.Fatalf("checkpoint %+v, %v; chain at %d %s", cp, err, chain.ChainSeq, chain.ChainHead)
			}
			if csvb, _ := os.ReadFile(cs); !bytes.Contains(csvb, []byte("checkpoint,checkpoint_signature")) ||
				!bytes.Contains(csvb, []byte(strings.ReplaceAll(rep.Audit.Checkpoint, "\n", "\r\n"))) {
				t.Fatalf("the CSV lacks the checkpoint:\n%s", csvb)
			}
			if m, err := CompareReportJSON(ctx, inv, rep, content); err != nil || !m.Match {
				t.Fatalf("the report with its checkpoint does not compare: %+v %v", m, err)
			}

			bad := func(name string, a reports.AuditInfo, want string) {
				t.Helper()
				if _, err := CheckReportCheckpoint(ctx, inv, &a, sg.Chain[0]); !errors.Is(err, ErrCheckpointMismatch) || !strings.Contains(err.Error(), want) {
					t.Errorf("%s: %v, want %q", name, err, want)
				}
			}
			signedAs := func(c *provisioning.Checkpoint, by signed.Signer) reports.AuditInfo {
				req, err := SignCheckpoint(c, by)
				if err != nil {
					t.Fatal(err)
				}
				a := rep.Audit
				a.Checkpoint, a.CheckpointSignature = string(req.Checkpoint), req.Signature
				return a
			}
			other := *cp
			other.Seq--
			swapped := rep.Audit
			swapped.Checkpoint = string(other.Body())
			bad("another body under the signature", swapped, "signature does not verify")
			bad("another signer", signedAs(cp, testSigner(t)), "signed by")
			named := *cp
			named.Station = "st9"
			bad("another station's name", signedAs(&named, sg), "names station")
			early := rep.Audit
			early.ChainSeq = cp.Seq + 1
			bad("before the report's batch", early, "before the batch's last event")

			// The chain grows: the checkpoint is still held.
			if _, err := inv.OpenBatch(ctx, records.NewBatch{ID: "B9", Product: "gw-100", WorkOrder: "WO-9", Quantity: 1, Operator: "alice", Station: "st1"}); err != nil {
				t.Fatal(err)
			}
			if _, err := CheckReportCheckpoint(ctx, inv, &rep.Audit, sg.Chain[0]); err != nil {
				t.Fatalf("after the chain grew: %v", err)
			}
			// Cut back to before the checkpoint, then rewritten at its seq by the store itself.
			cut := func(to int64) {
				prev, _, err := inv.EventHashAt(ctx, to)
				if err != nil {
					t.Fatal(err)
				}
				inventorytest.Exec(t, dbURL, "DELETE FROM events WHERE seq > ?", to)
				inventorytest.Exec(t, dbURL, "UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1", to, prev)
			}
			cut(cp.Seq - 1)
			bad("a chain cut before it", rep.Audit, "past the inventory chain's last event")
			if _, err := inv.OpenBatch(ctx, records.NewBatch{ID: "B8", Product: "gw-100", WorkOrder: "WO-9", Quantity: 1, Operator: "alice", Station: "st1"}); err != nil {
				t.Fatal(err)
			}
			bad("a chain rewritten at its seq", rep.Audit, "the chain was rewritten")
		})
	}
}
