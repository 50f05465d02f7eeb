package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/provisioning"
)

// CALoadConfig sizes figure 4.
type CALoadConfig struct {
	Enrollments int // timed enrollments
	Warmup      int // untimed enrollments first (TLS sessions, connection pools, JIT-free Go: mostly caches)
	Workers     int // concurrent stations' worth of requests in flight
	Clients     int // TLS client connections (provisioning.Client instances) the workers share
	// CryptoIterations sizes the cryptography-only measurement (measureCryptoOnly) run after the warm-up.
	CryptoIterations int
	// NoAuditHeads leaves out of each enrollment request the signed audit chain head a station sends with
	// it (provisioning.EnrollRequest AuditHead): the CA then neither verifies nor stores one.
	NoAuditHeads bool
}

// CALoadResult is what figure 4 measured.
type CALoadResult struct {
	Enrollments   int
	Workers       int
	Elapsed       time.Duration
	PerSecond     float64
	P50, P99, Max time.Duration
	// RSS of the CA process after the warm-up, after 10% of the timed run, at the end, and its maximum
	// over the run (sampled every 1% of the run).
	RSSWarm, RSS10, RSSEnd, RSSMax int64
	// CPU per enrollment of the CA process, of the load generator (this process: the soft boards'
	// ActivateCredential and Certify, the HTTP client) and of the CA's PostgreSQL backends, all on the
	// same cores.
	CACPUPerEnrollment, ClientCPUPerEnrollment, PGCPUPerEnrollment time.Duration
	// Crypto is the CA's cryptography alone, measured in this process after the warm-up (measureCryptoOnly).
	Crypto    *CryptoOnly
	PoolBuild time.Duration // pre-generating the soft boards (untimed)
	Errors    int
}

// runCALoad starts a fresh `upstream-ca serve` on PostgreSQL trusting a fresh in-memory TPM vendor and
// drives complete enrollments at it from Workers goroutines, each enrollment a distinct soft board.
func runCALoad(ctx context.Context, env *Env, cfg CALoadConfig) (*CALoadResult, error) {
	vendor, err := fixtures.NewManufacturer("Bench Soft TPM Vendor")
	if err != nil {
		return nil, err
	}
	cad, err := newCADir(env.CABin, filepath.Join(env.Dir, "caload"), append(vendor.RootPEM(), vendor.IntermediatePEM()...))
	if err != nil {
		return nil, err
	}
	res := &CALoadResult{Enrollments: cfg.Enrollments, Workers: cfg.Workers}

	// The boards' keys and EK certificates are what a TPM makes once at its factory and at key creation:
	// made before the clock starts, on both cores.
	t0 := time.Now()
	total := cfg.Warmup + cfg.Enrollments
	boards := make([]*SoftBoard, total)
	var next atomic.Int64
	var wg sync.WaitGroup
	var genErr atomic.Value
	for range runtime.NumCPU() {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				b, err := NewSoftBoard(vendor, fmt.Sprintf("LOAD%08d", i), nil)
				if err != nil {
					genErr.Store(err)
					return
				}
				boards[i] = b
			}
		})
	}
	wg.Wait()
	if err, _ := genErr.Load().(error); err != nil {
		return nil, err
	}
	res.PoolBuild = time.Since(t0)

	proc, err := cad.serve(env.PG, filepath.Join(env.Dir, "caload", "serve.log"))
	if err != nil {
		return nil, err
	}
	defer proc.stop()

	clients := make([]*provisioning.Client, max(cfg.Clients, 1))
	for i := range clients {
		clients[i] = provisioning.NewClient(proc.URL, cad.client.Clone())
	}
	head, err := cad.auditHeads()
	if err != nil {
		return nil, err
	}
	enroll := func(c *provisioning.Client, b *SoftBoard) error {
		req := b.EnrollRequest("bench")
		if !cfg.NoAuditHeads {
			if req.AuditHead, err = head(); err != nil {
				return fmt.Errorf("board %s: %w", b.Serial, err)
			}
		}
		ch, err := c.Enroll(ctx, req)
		if err != nil {
			return fmt.Errorf("board %s: enroll: %w", b.Serial, err)
		}
		ans, err := b.Answer(ch)
		if err != nil {
			return fmt.Errorf("board %s: %w", b.Serial, err)
		}
		certs, err := c.Activate(ctx, ans)
		if err != nil {
			return fmt.Errorf("board %s: activate: %w", b.Serial, err)
		}
		if len(certs.IAKCert) == 0 || len(certs.IDevIDCert) == 0 {
			return fmt.Errorf("board %s: CA answered without certificates", b.Serial)
		}
		return nil
	}
	// run drives boards[from:to] through the CA; lat gets each enrollment's latency when non-nil.
	var firstErr atomic.Value
	var errCount atomic.Int64
	run := func(from, to int, lat []time.Duration, tick func(done int)) {
		var cursor atomic.Int64
		cursor.Store(int64(from))
		var done atomic.Int64
		var wg sync.WaitGroup
		for w := range cfg.Workers {
			c := clients[w%len(clients)]
			wg.Go(func() {
				for {
					i := int(cursor.Add(1)) - 1
					if i >= to || ctx.Err() != nil {
						return
					}
					s := time.Now()
					if err := enroll(c, boards[i]); err != nil {
						errCount.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
					if lat != nil {
						lat[i-from] = time.Since(s)
					}
					boards[i] = nil // the CA, not the generator, is what must stay flat
					if tick != nil {
						tick(int(done.Add(1)))
					}
				}
			})
		}
		wg.Wait()
	}
	run(0, cfg.Warmup, nil, nil)
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	res.RSSWarm, _, _ = procStatus(proc.pid())
	if res.Crypto, err = measureCryptoOnly(vendor, max(cfg.CryptoIterations, 1)); err != nil {
		return nil, fmt.Errorf("crypto-only: %w", err)
	}
	pg0, err := proc.pgBackendCPU(ctx)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL backends of the CA: %w", err)
	}
	_, cpu0, _ := procStatus(proc.pid())
	_, self0, _ := procStatus(os.Getpid())

	lat := make([]time.Duration, cfg.Enrollments)
	step := max(cfg.Enrollments/100, 1)
	var mu sync.Mutex
	tick := func(done int) {
		if done%step != 0 {
			return
		}
		rss, _, err := procStatus(proc.pid())
		if err != nil {
			return
		}
		mu.Lock()
		res.RSSMax = max(res.RSSMax, rss)
		if done == 10*step {
			res.RSS10 = rss
		}
		mu.Unlock()
	}
	start := time.Now()
	run(cfg.Warmup, total, lat, tick)
	res.Elapsed = time.Since(start)
	res.RSSEnd, _, _ = procStatus(proc.pid())
	_, cpu1, _ := procStatus(proc.pid())
	_, self1, _ := procStatus(os.Getpid())
	pg1, err := proc.pgBackendCPU(ctx)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL backends of the CA: %w", err)
	}
	res.RSSMax = max(res.RSSMax, res.RSSEnd)
	res.Errors = int(errCount.Load())
	if err, _ := firstErr.Load().(error); err != nil {
		return res, fmt.Errorf("%d of %d enrollments failed; first: %w", res.Errors, cfg.Enrollments, err)
	}
	res.PerSecond = float64(cfg.Enrollments) / res.Elapsed.Seconds()
	res.CACPUPerEnrollment = (cpu1 - cpu0) / time.Duration(cfg.Enrollments)
	res.ClientCPUPerEnrollment = (self1 - self0) / time.Duration(cfg.Enrollments)
	var pg time.Duration
	for pid, c := range pg1 {
		pg += c - pg0[pid] // a backend opened during the run counts from zero
	}
	res.PGCPUPerEnrollment = pg / time.Duration(cfg.Enrollments)
	slices.Sort(lat)
	res.P50, res.P99, res.Max = percentile(lat, 50), percentile(lat, 99), lat[len(lat)-1]
	return res, nil
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := (len(sorted)*p + 99) / 100
	return sorted[max(k-1, 0)]
}
