package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/station"
	"github.com/tpmline/tpmline/tui"
)

// terminal is the real operator terminal (package tui) running on a simulation screen for a test: keys go
// in as an operator types them, and what the screen shows is read back as text.
type terminal struct {
	t   *testing.T
	app *tui.App
	scr tcell.SimulationScreen
}

// startTerminal runs the terminal over st with one slot at addr, its clock standing at 2026-03-02 09:00
// UTC, on a w×h screen, until the test ends.
func startTerminal(t *testing.T, st tui.Station, addr string, w, h int) *terminal {
	t.Helper()
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	app := tui.New(tui.Config{Station: st, Fixture: newStaticFixture([]station.Slot{{ID: 1, TPM: addr}}),
		Operator: "ana", Now: func() time.Time { return t0 }, Tick: -1})
	scr := tcell.NewSimulationScreen("UTF-8")
	app.SetScreen(scr)
	scr.SetSize(w, h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the terminal did not stop")
		}
	})
	return &terminal{t: t, app: app, scr: scr}
}

// waitFor waits up to 20 s for the screen to show every one of want, and returns the screen's text.
func (m *terminal) waitFor(want ...string) string {
	m.t.Helper()
	deadline := clock.Now().Add(20 * time.Second)
	for {
		s := tui.ScreenText(m.app, m.scr)
		missing := ""
		for _, w := range want {
			if !strings.Contains(s, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return s
		}
		if clock.Now().After(deadline) {
			m.t.Fatalf("screen never showed %q:\n%s", missing, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// key presses k n times.
func (m *terminal) key(k tcell.Key, n int) {
	for range n {
		m.scr.InjectKey(k, 0, tcell.ModNone)
	}
}

// typeText types s.
func (m *terminal) typeText(s string) {
	for _, r := range s {
		m.scr.InjectKey(tcell.KeyRune, r, tcell.ModNone)
	}
}
