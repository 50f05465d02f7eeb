//go:build !headless

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/tpmline/tpmline/internal/metrics"
	"github.com/tpmline/tpmline/station"
	"github.com/tpmline/tpmline/station/stationmetrics"
)

// metricsListen is the global --metrics-listen flag: where the station serves Prometheus /metrics.
var metricsListen string

// The one metrics endpoint of the process, started by the first station it wires.
var stationMetrics struct {
	once sync.Once
	obs  *stationmetrics.Station
	err  error
}

// withMetrics counts every station event into the process's metrics (when --metrics-listen is set) and
// passes it on to onEvent. The endpoint lives as long as the process.
func withMetrics(onEvent func(station.Event)) (func(station.Event), error) {
	if metricsListen == "" {
		return onEvent, nil
	}
	m := &stationMetrics
	m.once.Do(func() {
		reg := metrics.NewRegistry()
		m.obs = stationmetrics.New(reg)
		ln, err := listen(metricsListen)
		if err != nil {
			m.err = usagef("--metrics-listen: %v", err)
			return
		}
		go func() {
			if err := metrics.ServeListener(context.Background(), ln, reg, nil); err != nil {
				fmt.Fprintf(os.Stderr, "station: metrics endpoint stopped: %v\n", err)
			}
		}()
	})
	if m.err != nil {
		return nil, m.err
	}
	return func(e station.Event) {
		m.obs.Observe(e)
		if onEvent != nil {
			onEvent(e)
		}
	}, nil
}

func listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
