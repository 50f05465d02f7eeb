package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/station"
)

// boardPool is a set of swtpm boards of one vendor, reused between runs: before each run a board's
// persisted keys and certificate indices are cleared (provisioning.Clear) and the run gets a fresh
// inventory and a fresh CA database, so every run provisions factory-new boards as far as the station and
// the CA can tell.
type boardPool struct {
	vendor *fixtures.SwtpmVendor
	boards []*fixtures.SwtpmBoard
	cad    *caDir
}

func newBoardPool(env *Env, n int) (*boardPool, error) {
	v, err := fixtures.NewSwtpmVendor(filepath.Join(env.Dir, "vendor"))
	if err != nil {
		return nil, err
	}
	root, err := os.ReadFile(v.RootPath())
	if err != nil {
		return nil, err
	}
	inter, err := os.ReadFile(v.IntermediatePath())
	if err != nil {
		return nil, err
	}
	p := &boardPool{vendor: v, boards: make([]*fixtures.SwtpmBoard, n)}
	if p.cad, err = newCADir(env.CABin, filepath.Join(env.Dir, "stationca"), append(root, inter...)); err != nil {
		return nil, err
	}
	// swtpm_setup is mostly RSA key generation: two at a time on two cores.
	var wg sync.WaitGroup
	errs := make([]error, n)
	sem := make(chan struct{}, 2)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			p.boards[i], errs[i] = v.NewBoard(filepath.Join(env.Dir, "boards", fmt.Sprint(i)), fixtures.SwtpmBoardOptions{P256EKCert: true})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

func (p *boardPool) close() {
	for _, b := range p.boards {
		if b != nil {
			_ = b.Close()
		}
	}
}

// reset clears the first n boards.
func (p *boardPool) reset(n int) error {
	layout := station.DefaultProfile().Layout()
	for _, b := range p.boards[:n] {
		tpm, err := fixtures.Open(b.Addr())
		if err != nil {
			return err
		}
		err = provisioning.Clear(tpm, layout)
		tpm.Close()
		if err != nil {
			return fmt.Errorf("resetting board %s: %w", b.Dir(), err)
		}
	}
	return nil
}

// lineRun is one run of a line: slots in parallel, each provisioning perSlot boards in turn.
type lineRun struct {
	Slots, PerSlot int
	Profile        *fixtures.LatencyProfile // nil: the software TPM's own speed
}

// lineResult is what a run measured.
type lineResult struct {
	Outcomes []*station.Outcome
	Elapsed  time.Duration
}

// run provisions Slots*PerSlot boards of the pool with a real station: SQLite inventory, the upstream CA
// process over mutual TLS on loopback (state in PostgreSQL), timing recorder on every TPM.
func (p *boardPool) run(ctx context.Context, env *Env, name string, r lineRun) (*lineResult, error) {
	n := r.Slots * r.PerSlot
	if n > len(p.boards) {
		return nil, fmt.Errorf("run %s needs %d boards, the pool has %d", name, n, len(p.boards))
	}
	if err := p.reset(n); err != nil {
		return nil, err
	}
	dir := filepath.Join(env.Dir, "runs", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	proc, err := p.cad.serve(env.PG, filepath.Join(dir, "ca.log"))
	if err != nil {
		return nil, err
	}
	defer proc.stop()
	inv, err := inventory.Open(ctx, "sqlite://"+filepath.Join(dir, "inventory.db"))
	if err != nil {
		return nil, err
	}
	defer inv.Close()
	open := func(addr string) (transport.TPMCloser, error) {
		t, err := fixtures.Open(addr)
		if err != nil || r.Profile == nil {
			return t, err
		}
		return fixtures.WithLatency(t, *r.Profile, nil, nil), nil
	}
	st, err := station.New(station.Config{
		StationID: "bench",
		Inventory: inv,
		CA:        provisioning.NewClient(proc.URL, p.cad.client.Clone()),
		Open:      open,
		Timed:     func(t transport.TPM) station.TimedTPM { return fixtures.NewRecorder(t) },
	})
	if err != nil {
		return nil, err
	}
	batch := "B-" + name
	if _, err := st.OpenBatch(ctx, inventory.NewBatch{ID: batch, Product: "default", Quantity: n, Operator: "bench"}); err != nil {
		return nil, err
	}
	res := &lineResult{Outcomes: make([]*station.Outcome, n)}
	start := time.Now()
	var wg sync.WaitGroup
	for slot := range r.Slots {
		wg.Go(func() {
			for k := range r.PerSlot {
				i := slot*r.PerSlot + k
				res.Outcomes[i] = st.Provision(ctx, station.Job{Batch: batch, Serial: fmt.Sprintf("%s-%04d", name, i), Slot: slot, TPM: p.boards[i].Addr()})
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	for _, o := range res.Outcomes {
		if o.Failure != nil {
			return res, fmt.Errorf("run %s: board %s failed: %s", name, o.Serial, o.Failure.Line())
		}
	}
	return res, nil
}

// OverheadResult is figure 1 for one TPM speed.
type OverheadResult struct {
	Label    string
	Boards   int
	Wall     time.Duration // median per board
	TPM      time.Duration // median per board
	Ratio    float64       // median of per-board wall/TPM
	RatioMax float64
	Steps    []StepCost // per step, medians over the boards
	Between  time.Duration
	Journal  time.Duration // median of the station's journal commits per board (part of Between)
}

// StepCost is one step's wall time and the part of it the TPM did not account for.
type StepCost struct {
	Step      string
	Wall, TPM time.Duration
}

func overhead(label string, res *lineResult) *OverheadResult {
	o := &OverheadResult{Label: label, Boards: len(res.Outcomes)}
	var walls, tpms, betweens, journals []time.Duration
	var ratios []float64
	perStep := map[string][2][]time.Duration{}
	var order []string
	for _, out := range res.Outcomes {
		walls, tpms = append(walls, out.Duration), append(tpms, out.TPMTime)
		ratios = append(ratios, float64(out.Duration)/float64(out.TPMTime))
		var inSteps time.Duration
		for _, s := range out.Steps {
			v, ok := perStep[s.Step]
			if !ok {
				order = append(order, s.Step)
			}
			v[0], v[1] = append(v[0], s.Duration), append(v[1], s.TPMTime)
			perStep[s.Step] = v
			inSteps += s.Duration
		}
		betweens = append(betweens, out.Duration-inSteps)
		journals = append(journals, out.JournalTime)
	}
	o.Wall, o.TPM, o.Between, o.Journal = median(walls), median(tpms), median(betweens), median(journals)
	slices.Sort(ratios)
	o.Ratio, o.RatioMax = ratios[len(ratios)/2], ratios[len(ratios)-1]
	for _, s := range order {
		o.Steps = append(o.Steps, StepCost{Step: s, Wall: median(perStep[s][0]), TPM: median(perStep[s][1])})
	}
	return o
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// SlotsResult is figure 3: throughput per slot count.
type SlotsResult struct {
	Profile string
	PerSlot int
	Rows    []SlotRow
}

// SlotRow is one slot count.
type SlotRow struct {
	Slots    int
	Boards   int
	Elapsed  time.Duration
	PerHour  float64
	Speedup  float64 // throughput / throughput of 1 slot
	TPMShare float64 // sum of TPM time / (slots * elapsed)
}

func fixturesOptsP256() fixtures.SwtpmBoardOptions {
	return fixtures.SwtpmBoardOptions{P256EKCert: true}
}
