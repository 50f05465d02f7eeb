package station_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/station"
)

// TestUnstartedSwtpm: a good board on an swtpm started as its man page shows (no not-need-init) passes,
// the transport powering it on through the control channel; where the station cannot (a unix socket,
// whose control channel it does not know) the board fails as tpm_not_started with the start recipe, not
// as tpm_error bound for QA.
func TestUnstartedSwtpm(t *testing.T) {
	ctx := context.Background()
	vendor := fixturestest.NewSwtpmVendor(t)
	roots, _, err := loadPEMs(vendor.RootPath(), vendor.IntermediatePath())
	if err != nil {
		t.Fatal(err)
	}
	c := startCA(t, "sqlite://"+filepath.Join(t.TempDir(), "ca.db"), roots[0], roots[1:]...)
	st, inv := newStation(t, "sqlite://"+filepath.Join(t.TempDir(), "inv.db"), c)
	openBatch(t, inv, "B1")

	tcp := fixturestest.NewSwtpmBoardFrom(t, vendor, fixtures.SwtpmBoardOptions{Unstarted: true})
	mustPass(t, st.Provision(ctx, station.Job{Batch: "B1", Serial: "SW-UNSTARTED-1", TPM: tcp.Addr()}))

	unix := fixturestest.NewSwtpmBoardFrom(t, vendor, fixtures.SwtpmBoardOptions{Unstarted: true, Unix: true})
	out := st.Provision(ctx, station.Job{Batch: "B1", Serial: "SW-UNSTARTED-2", TPM: unix.Addr()})
	mustFail(t, out, station.ReasonTPMNotStarted, inventory.StateFailed)
	if line := out.Failure.Line(); !strings.Contains(line, "not-need-init,startup-clear") || strings.Contains(line, "QA") {
		t.Errorf("failure line %q: want the swtpm start recipe and no QA", line)
	}
}
