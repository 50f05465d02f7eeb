// Package metrics owns the Prometheus metrics of upstream-ca (CA) and the /metrics endpoint both
// binaries serve behind a listen flag (github.com/prometheus/client_golang). The station's metrics, counted
// from its progress events, are in stationmetrics.
package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry is a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// LatencyBuckets cover a CA request (~1 ms) to a slow board step (tens of seconds).
var LatencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// CA is upstream-ca's metrics.
type CA struct {
	requests *prometheus.CounterVec   // by path and outcome (ok or the protocol error code)
	latency  *prometheus.HistogramVec // by path
	issued   *prometheus.CounterVec   // by kind
}

// NewCA registers the CA's metrics in reg. revoked, when set, is read at each scrape (the number of
// revoked certificates in the store, by kind).
func NewCA(reg prometheus.Registerer, revoked func() map[string]int) *CA {
	c := &CA{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tpmline_ca_requests_total",
			Help: "Enrollment API requests by path and outcome (ok, or the protocol error code of a refusal)."}, []string{"path", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tpmline_ca_request_duration_seconds",
			Help: "Enrollment API request latency by path.", Buckets: LatencyBuckets}, []string{"path"}),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tpmline_ca_certificates_issued_total",
			Help: "Certificates issued by kind (iak, idevid)."}, []string{"kind"}),
	}
	reg.MustRegister(c.requests, c.latency, c.issued)
	if revoked != nil {
		reg.MustRegister(&revokedCollector{f: revoked, desc: prometheus.NewDesc("tpmline_ca_certificates_revoked",
			"Certificates revoked, by kind (iak, idevid, station), as the store holds them.", []string{"kind"}, nil)})
	}
	return c
}

// Request counts one request; an activation that succeeded issued an IAK and an IDevID certificate.
func (c *CA) Request(path, outcome string, d time.Duration, issued bool) {
	if c == nil {
		return
	}
	c.requests.WithLabelValues(path, outcome).Inc()
	c.latency.WithLabelValues(path).Observe(d.Seconds())
	if issued {
		c.issued.WithLabelValues("iak").Inc()
		c.issued.WithLabelValues("idevid").Inc()
	}
}

type revokedCollector struct {
	f    func() map[string]int
	desc *prometheus.Desc
}

func (r *revokedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- r.desc }

func (r *revokedCollector) Collect(ch chan<- prometheus.Metric) {
	for kind, n := range r.f() {
		ch <- prometheus.MustNewConstMetric(r.desc, prometheus.GaugeValue, float64(n), kind)
	}
}

// Serve answers GET /metrics from reg on addr until ctx ends. It is plain HTTP: bind it to an address
// only the monitoring network reaches.
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for /metrics: %w", err)
	}
	return ServeListener(ctx, ln, reg, log)
}

// ServeListener is Serve on an open listener.
func ServeListener(ctx context.Context, ln net.Listener, reg *prometheus.Registry, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	if log != nil {
		log.Info("metrics serving", "addr", ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}
