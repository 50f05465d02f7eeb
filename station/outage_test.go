package station_test

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station"
)

// cutProxy forwards loopback TCP to target until cut, which drops every connection and refuses new
// ones until restore: a database link that goes down and comes back.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.down {
				p.mu.Unlock()
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// TestDatabaseDownMidBoard: the PostgreSQL link drops in the middle of a board. The board stops with a
// clear infrastructure reason, the station keeps running, nothing recorded is lost, and once the link is
// back the same board resumes and passes.
func TestDatabaseDownMidBoard(t *testing.T) {
	ctx := context.Background()
	m, err := fixtures.NewManufacturer("DB Down Vendor")
	if err != nil {
		t.Fatal(err)
	}
	c := startCA(t, "sqlite://"+filepath.Join(t.TempDir(), "ca.db"), m.Root(), m.Intermediate())
	url := pgSchemaURL(t)
	proxy := newCutProxy(t, "127.0.0.1:5432")
	proxied := strings.Replace(url, "127.0.0.1:5432", proxy.ln.Addr().String(), 1)
	cutAt := provisioning.StepCertify
	st, inv := newStation(t, proxied, c, simOpener(m), func(cfg *station.Config) {
		cfg.Fault = func(step, phase string) {
			if step == cutAt && phase == "after" {
				proxy.cut()
			}
		}
	})
	openBatch(t, inv, "B1")
	out := st.Provision(ctx, station.Job{Batch: "B1", Serial: "DB-1", TPM: "sim:21"})
	mustFail(t, out, station.ReasonInventory, records.StateInProgress)
	if !out.Failure.Infra {
		t.Fatal("a database outage is not marked as the station's fault")
	}
	// Another board while the database is down: refused cleanly, not hung.
	mustFail(t, st.Provision(ctx, station.Job{Batch: "B1", Serial: "DB-2", TPM: "sim:22", Slot: 1}), station.ReasonInventory, records.StateFailed)

	proxy.restore()
	cutAt = ""
	// A run that cannot reach the board's TPM fails before the inventory check: it says so, and the board's
	// record stays in progress for the resume (the line must not take the printed failure as recorded).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "swtpm://" + ln.Addr().String()
	ln.Close()
	out = st.Provision(ctx, station.Job{Batch: "B1", Serial: "DB-1", TPM: gone})
	mustFail(t, out, station.ReasonTPMUnreachable, records.StateFailed)
	if !strings.Contains(out.Failure.Line(), "not recorded") {
		t.Fatalf("a failure before the claim does not say it was not recorded: %s", out.Failure.Line())
	}
	if b, err := inv.GetBoardBySerial(ctx, "DB-1"); err != nil || b.State != records.StateInProgress {
		t.Fatalf("board DB-1 after a run that did not reach its TPM: %+v %v", b, err)
	}
	res := st.Provision(ctx, station.Job{Batch: "B1", Serial: "DB-1", TPM: "sim:21"})
	mustPass(t, res)
	mustPass(t, st.Provision(ctx, station.Job{Batch: "B1", Serial: "DB-2", TPM: "sim:22", Slot: 1}))
	steps, err := inv.ListSteps(ctx, "DB-1")
	if err != nil || len(steps) == 0 || steps[0].Step != station.StepConnect {
		t.Fatalf("journal of DB-1 lost its first attempt: %v %v", steps, err)
	}
	if _, err := inv.VerifyChain(ctx, ""); err != nil {
		t.Fatal(err)
	}
}

// TestTPMDisconnectMidBoard: the board's TPM stops answering between two steps; the board fails with
// tpm_unreachable, and after the TPM is back a retry passes.
func TestTPMDisconnectMidBoard(t *testing.T) {
	ctx := context.Background()
	board, vendor := fixturestest.NewSwtpmBoard(t)
	roots, _, err := loadPEMs(vendor.RootPath(), vendor.IntermediatePath())
	if err != nil {
		t.Fatal(err)
	}
	c := startCA(t, "sqlite://"+filepath.Join(t.TempDir(), "ca.db"), roots[0], roots[1:]...)
	stopAt := provisioning.StepActivate
	st, inv := newStation(t, "sqlite://"+filepath.Join(t.TempDir(), "inv.db"), c, func(cfg *station.Config) {
		cfg.Fault = func(step, phase string) {
			if step == stopAt && phase == "before" {
				_ = board.Stop()
			}
		}
	})
	openBatch(t, inv, "B1")
	mustFail(t, st.Provision(ctx, station.Job{Batch: "B1", Serial: "TPM-1", TPM: board.Addr()}), station.ReasonTPMUnreachable, records.StateFailed)
	b, err := inv.GetBoardBySerial(ctx, "TPM-1")
	if err != nil || b.State != records.StateFailed || b.ReasonCode != station.ReasonTPMUnreachable {
		t.Fatalf("board after TPM loss: %+v %v", b, err)
	}
	if err := board.Start(); err != nil {
		t.Fatal(err)
	}
	stopAt = ""
	mustPass(t, st.Provision(ctx, station.Job{Batch: "B1", Serial: "TPM-1", TPM: board.Addr()}))
}
