//go:build !headless

package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/station"
	"github.com/tpmline/tpmline/station/qa"
	"github.com/tpmline/tpmline/tui"
)

// The terminal's view of the station and of the benches this file wires.
var (
	_ tui.Station = (*station.Station)(nil)
	_ tui.Fixture = (*fixtures.DemoBench)(nil)
	_ tui.Cloner  = (*fixtures.DemoBench)(nil)
	_ tui.Fixture = (*staticFixture)(nil)
)

// cmdTUI opens the operator terminal on the configured station: its slots (the config's "slots" with
// their TPM addresses), inventory and CA.
func cmdTUI(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	operator := fs.String("operator", "", "operator `ID` (skips the sign-in screen)")
	if err := parse(fs, args); err != nil {
		return err
	}
	s, err := g.settings()
	if err != nil {
		return err
	}
	if len(s.Slots) == 0 {
		return refusef("no slots configured: add \"slots\" (each an id and a tpm address) to the config given with --config, or run 'station demo'")
	}
	ca, err := caClient(s)
	if err != nil {
		return err
	}
	for _, sl := range s.Slots {
		if err := checkTPM(fmt.Sprintf("slot %d's tpm", sl.ID), sl.TPM); err != nil {
			return refusef("%v (in the config's slots)", err)
		}
	}
	inv, err := openInventory(ctx, s)
	if err != nil {
		return err
	}
	defer inv.Close()
	return runTerminal(ctx, termSetup{settings: s, inv: inv, ca: ca, fixture: newStaticFixture(s.Slots),
		title: "station " + s.StationID, operator: *operator, logDir: defaultDataDir(),
		report: reportHook(s, inv, filepath.Join(defaultDataDir(), "reports")), slots: slotMap(s.Slots)})
}

// demoTerminal opens the operator terminal on the demo's simulated boards.
func demoTerminal(ctx context.Context, env *demoEnv, s *station.Settings, inv *inventory.Store, ca provisioning.CA, slots int, operator string) error {
	fx := fixtures.NewDemoBench(ctx, env.agent, filepath.Join(env.dir, "vendor"), slots)
	fx.AgentArgs = env.agentArgs()
	defer fx.Close()
	// The bench remembers every passed board, so the operator can put its clone into a slot.
	passed := func(e station.Event) {
		if e.Kind == station.EvPassed {
			fx.Passed(e.Slot, e.Serial)
		}
	}
	return runTerminal(ctx, termSetup{settings: s, inv: inv, ca: ca, fixture: fx, observe: passed,
		title: "(demo)", operator: operator, logDir: env.dir,
		report: reportHook(s, inv, filepath.Join(env.dir, "reports"))})
}

type termSetup struct {
	settings *station.Settings
	inv      station.Inventory
	ca       provisioning.CA
	fixture  tui.Fixture
	observe  func(station.Event) // sees every event before the terminal does
	title    string
	operator string
	logDir   string // where library logs go while the terminal owns the screen
	report   tui.ReportFunc
	slots    map[int]string // the TPM address of each slot whose board survives a restart
}

// reportHook makes the QA view's batch report: PDF, CSV and JSON in dir, each signed by the station.
func reportHook(s *station.Settings, inv *inventory.Store, dir string) tui.ReportFunc {
	return func(ctx context.Context, batchID string) (string, error) {
		sg, err := signer(s)
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		base := filepath.Join(dir, batchID)
		if _, err := qa.WriteBatchReports(ctx, inv, batchID, sg, base+".pdf", base+".csv", base+".json"); err != nil {
			return "", err
		}
		return base + ".pdf (and .csv, .json, each with .sig)", nil
	}
}

// runTerminal wires a station to the terminal and runs it until the operator quits.
func runTerminal(ctx context.Context, t termSetup) error {
	// The terminal owns the screen: anything the standard logger would print (the HTTP stack's notes)
	// goes to a file instead.
	if err := os.MkdirAll(t.logDir, 0o755); err == nil {
		if f, err := os.OpenFile(filepath.Join(t.logDir, "station.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			defer f.Close()
			prev := log.Writer()
			log.SetOutput(f)
			defer log.SetOutput(prev)
		}
	}
	// Boards this station left in progress (a crash, a power cut) are resumed or closed before the
	// terminal opens, so every slot starts from a known state.
	pre, err := newStation(t.settings, t.inv, t.ca, nil, nil)
	if err != nil {
		return err
	}
	if _, _, err := reconcile(ctx, pre, t.slots, os.Stderr); err != nil {
		return err
	}
	var ui *tui.App
	st, err := newStation(t.settings, t.inv, t.ca, func(e station.Event) {
		if t.observe != nil {
			t.observe(e)
		}
		ui.Event(e)
	}, nil)
	if err != nil {
		return err
	}
	ui = tui.New(tui.Config{Station: st, Fixture: t.fixture, Title: t.title, Color: os.Getenv("NO_COLOR") == "",
		Operator: t.operator, BatchReport: t.report})
	return ui.Run(ctx, 15*time.Second)
}
