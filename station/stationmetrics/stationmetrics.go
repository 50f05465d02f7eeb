// Package stationmetrics counts the station's Prometheus metrics from its progress events (station/progress),
// beside the flow rather than inside it: boards by outcome, step durations, slots busy, TPM errors.
package stationmetrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tpmline/tpmline/station/progress"
)

// Station is the station's metrics.
type Station struct {
	boards    *prometheus.CounterVec   // by outcome: provisioned, or the failure code
	steps     *prometheus.HistogramVec // by step
	busy      prometheus.Gauge
	tpmErrors *prometheus.CounterVec // by failure code
	mu        sync.Mutex             // slots: events come from every slot's goroutine
	slots     map[int]bool
}

// New registers the station's metrics in reg.
func New(reg prometheus.Registerer) *Station {
	s := &Station{
		boards: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tpmline_station_boards_total",
			Help: "Boards finished, by outcome (provisioned, or the failure code)."}, []string{"outcome"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tpmline_station_step_duration_seconds",
			Help: "Wall time of each step of the per-board flow.", Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"step"}),
		busy: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tpmline_station_slots_busy", Help: "Slots with a board in progress."}),
		tpmErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tpmline_station_tpm_errors_total",
			Help: "Boards that failed on a TPM error, by failure code."}, []string{"code"}),
		slots: map[int]bool{},
	}
	reg.MustRegister(s.boards, s.steps, s.busy, s.tpmErrors)
	return s
}

// Observe counts one event; slots may call it concurrently.
func (s *Station) Observe(ev progress.Event) {
	switch ev.Kind {
	case progress.EvStarted:
		s.setBusy(ev.Slot, true)
	case progress.EvStepDone:
		if ev.Step != "" {
			s.steps.WithLabelValues(ev.Step).Observe(ev.Elapsed.Seconds())
		}
	case progress.EvPassed:
		s.boards.WithLabelValues("provisioned").Inc()
		s.setBusy(ev.Slot, false)
	case progress.EvFailed:
		code := "failed"
		if ev.Failure != nil && ev.Failure.Code != "" {
			code = ev.Failure.Code
		}
		s.boards.WithLabelValues(code).Inc()
		if isTPMFailure(ev.Failure) {
			s.tpmErrors.WithLabelValues(code).Inc()
		}
		s.setBusy(ev.Slot, false)
	case progress.EvSlotIdle:
		s.setBusy(ev.Slot, false)
	}
}

func (s *Station) setBusy(slot int, busy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slots[slot] == busy {
		return
	}
	s.slots[slot] = busy
	if busy {
		s.busy.Inc()
	} else {
		s.busy.Dec()
	}
}

// isTPMFailure: the board's TPM answered with an error, could not be reached or was not started. A TPM
// refused by policy or already provisioned answered correctly and is not counted.
func isTPMFailure(f *progress.Failure) bool {
	if f == nil {
		return false
	}
	switch f.Code {
	case progress.ReasonTPMError, progress.ReasonTPMUnreachable, progress.ReasonTPMNotStarted:
		return true
	}
	return false
}
