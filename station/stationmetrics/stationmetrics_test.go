package stationmetrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tpmline/tpmline/station/progress"
)

func TestObserve(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := New(reg)
	step := progress.Steps[0]
	for _, ev := range []progress.Event{
		{Kind: progress.EvStarted, Slot: 1}, {Kind: progress.EvStarted, Slot: 2}, {Kind: progress.EvStarted, Slot: 2},
		{Kind: progress.EvStepDone, Slot: 1, Step: step, Elapsed: 30 * time.Millisecond},
		{Kind: progress.EvPassed, Slot: 1},
		{Kind: progress.EvFailed, Slot: 2, Failure: &progress.Failure{Code: progress.ReasonTPMError}},
		{Kind: progress.EvStarted, Slot: 3},
		{Kind: progress.EvFailed, Slot: 3, Failure: &progress.Failure{Code: progress.ReasonClone, Stop: true}},
		{Kind: progress.EvStarted, Slot: 4},
	} {
		s.Observe(ev)
	}
	want := `
# HELP tpmline_station_boards_total Boards finished, by outcome (provisioned, or the failure code).
# TYPE tpmline_station_boards_total counter
tpmline_station_boards_total{outcome="ek_bound_to_other_serial"} 1
tpmline_station_boards_total{outcome="provisioned"} 1
tpmline_station_boards_total{outcome="tpm_error"} 1
# HELP tpmline_station_slots_busy Slots with a board in progress.
# TYPE tpmline_station_slots_busy gauge
tpmline_station_slots_busy 1
# HELP tpmline_station_tpm_errors_total Boards that failed on a TPM error, by failure code.
# TYPE tpmline_station_tpm_errors_total counter
tpmline_station_tpm_errors_total{code="tpm_error"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tpmline_station_boards_total", "tpmline_station_slots_busy", "tpmline_station_tpm_errors_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(s.steps); n != 1 {
		t.Fatalf("step histograms: %d", n)
	}
}
