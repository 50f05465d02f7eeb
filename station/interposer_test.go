package station_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station"
)

// interposed is a board link with an interposer in it.
type interposed struct {
	*fixtures.Interposer
	close func() error
}

func (i interposed) Close() error { return i.close() }

// TestInterposerForgeriesStopTheBoard: a link that answers a recorded command in the TPM's place (a
// persist, NV define, write or lock that never happened, a read-back it rewrote) stops the board with
// tpm_response_not_vouched, and the inventory never says provisioned. (The default profile does not
// write-lock; a faked NV_WriteLock is caught in provisioning's TestVouchedSessionCatchesForgeries.)
func TestInterposerForgeriesStopTheBoard(t *testing.T) {
	ctx := context.Background()
	vendor := fixturestest.NewSwtpmVendor(t)
	roots, _, err := loadPEMs(vendor.RootPath(), vendor.IntermediatePath())
	if err != nil {
		t.Fatal(err)
	}
	c := startCA(t, "sqlite://"+filepath.Join(t.TempDir(), "ca.db"), roots[0], roots[1:]...)
	for i, tc := range []struct {
		name string
		cc   tpm2.TPMCC
		how  fixtures.Forgery
	}{
		{"persist faked", tpm2.TPMCCEvictControl, fixtures.FakeSuccess},
		{"NV define faked", tpm2.TPMCCNVDefineSpace, fixtures.FakeSuccess},
		{"NV write faked", tpm2.TPMCCNVWrite, fixtures.FakeSuccess},
		{"NV read-back rewritten", tpm2.TPMCCNVRead, fixtures.FlipResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			board := fixturestest.NewSwtpmBoardFrom(t, vendor, fixtures.SwtpmBoardOptions{P256EKCert: true})
			var p *fixtures.Interposer
			armed := false
			st, inv := newStation(t, "sqlite://"+filepath.Join(t.TempDir(), "inv.db"), c, func(cfg *station.Config) {
				cfg.Open = func(addr string) (transport.TPMCloser, error) {
					real, err := fixtures.Open(addr)
					if err != nil {
						return nil, err
					}
					// The EK certificates are read with NV_Read before the session: forge only after
					// the keys exist (the first EvictControl, NV_DefineSpace or later NV_Read).
					p = &fixtures.Interposer{TPM: real, Forge: func(cc tpm2.TPMCC) fixtures.Forgery {
						if cc == tpm2.TPMCCEvictControl {
							armed = true
						}
						if cc == tc.cc && (armed || cc != tpm2.TPMCCNVRead) {
							return tc.how
						}
						return fixtures.Forward
					}}
					return interposed{p, real.Close}, nil
				}
			})
			openBatch(t, inv, "B1")
			serial := fmt.Sprintf("FORGED-%d", i)
			out := st.Provision(ctx, station.Job{Batch: "B1", Serial: serial, TPM: board.Addr()})
			if len(p.Forged()) == 0 {
				t.Fatal("the interposer forged nothing")
			}
			if out.Failure == nil || out.Failure.Code != station.ReasonNotVouched {
				t.Fatalf("board %s: %s %+v, want %s", serial, out.State, out.Failure, station.ReasonNotVouched)
			}
			t.Logf("%s: %s", tc.name, out.Failure.Line())
			b, err := inv.GetBoardBySerial(ctx, serial)
			if err != nil {
				t.Fatal(err)
			}
			if b.State == records.StateProvisioned {
				t.Fatalf("the inventory says %s provisioned", serial)
			}
		})
	}
}
