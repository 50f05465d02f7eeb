package station_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station"
)

// TestReconcileReport (issue 17, point 6): a board left in progress by a CA outage is reported with that
// cause, not as a station that stopped; a reconcile cancelled before it (Ctrl-C) leaves it in progress and
// says so; the next reconcile resumes it.
func TestReconcileReport(t *testing.T) {
	ctx := context.Background()
	board, vendor := fixturestest.NewSwtpmBoard(t)
	roots, _, err := loadPEMs(vendor.RootPath(), vendor.IntermediatePath())
	if err != nil {
		t.Fatal(err)
	}
	c := startCA(t, "sqlite://"+filepath.Join(t.TempDir(), "ca.db"), roots[0], roots[1:]...)
	dbURL := "sqlite://" + filepath.Join(t.TempDir(), "inv.db")
	down, inv := newStation(t, dbURL, c, func(cfg *station.Config) {
		cfg.CA = provisioning.NewClient("https://127.0.0.1:1", c.ClientTLS)
	})
	openBatch(t, inv, "B1")
	job := station.Job{Batch: "B1", Serial: "OUT-1", Slot: 2, TPM: board.Addr()}
	if out := down.Provision(ctx, job); out.State != records.StateInProgress || out.Failure == nil || out.Failure.Code != station.ReasonCAUnreachable {
		t.Fatalf("with the CA down: %s %v", out.State, out.Failure)
	}
	st, _ := newStation(t, dbURL, c)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	rep, err := st.ReconcileReport(cancelled, map[int]string{2: board.Addr()})
	if err != nil || len(rep) != 1 || !rep[0].NotReached || rep[0].Resumed != nil || rep[0].Closed != nil ||
		!strings.Contains(rep[0].Cause, "step enroll failed: ca_unreachable") {
		t.Fatalf("cancelled reconcile: %+v %v", rep, err)
	}
	if b, err := inv.GetBoardBySerial(ctx, "OUT-1"); err != nil || b.State != records.StateInProgress {
		t.Fatalf("after a cancelled reconcile: %+v %v", b, err)
	}
	rep, err = st.ReconcileReport(ctx, map[int]string{2: board.Addr()})
	if err != nil || len(rep) != 1 || rep[0].Resumed == nil {
		t.Fatalf("reconcile: %+v %v", rep, err)
	}
	mustPass(t, rep[0].Resumed)
}
