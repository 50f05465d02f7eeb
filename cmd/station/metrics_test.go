package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/tpmline/tpmline/station"
)

// TestWithMetrics: with --metrics-listen, the events every wired station emits are counted and served
// at /metrics, and the station's own event handler still sees them.
func TestWithMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	metricsListen = addr
	defer func() { metricsListen = "" }()
	seen := 0
	on, err := withMetrics(func(station.Event) { seen++ })
	if err != nil {
		t.Fatal(err)
	}
	on(station.Event{Kind: station.EvStarted, Slot: 1})
	on(station.Event{Kind: station.EvPassed, Slot: 1})
	on(station.Event{Kind: station.EvStarted, Slot: 2})
	if seen != 3 {
		t.Fatalf("the station's handler saw %d events", seen)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`tpmline_station_boards_total{outcome="provisioned"} 1`, "tpmline_station_slots_busy 1"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, b)
		}
	}
}
