package soak

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/provisioning/ca"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station"
)

// FaultKind names what the driver does to the line.
type FaultKind string

// The faults of issue 14, point 3.
const (
	FaultStation   FaultKind = "station-kill" // SIGKILL every running station process, then reconcile
	FaultCA        FaultKind = "ca-kill"      // SIGKILL upstream-ca serve, restart it
	FaultPostgres  FaultKind = "pg-kill"      // SIGKILL the postmaster, restart it (crash recovery)
	FaultRelayDrop FaultKind = "relay-drop"   // cut a station's relay connection to a board mid-flow
)

// FaultKinds in the order the soak reports them.
var FaultKinds = []FaultKind{FaultStation, FaultCA, FaultPostgres, FaultRelayDrop}

// Config is one soak run.
type Config struct {
	Dir    string    // scratch folder (the caller removes it)
	Bins   *Binaries // the real station, upstream-ca and board-agent
	Boards int
	Slots  int
	Seed   int64
	// Faults is how many faults of each kind to inject, at moments spread over the run by Seed.
	Faults map[FaultKind]int
	// MaxAttempts bounds the station runs one board gets that no fault hit (the first and the retries an
	// operator would make after a "retry the board" failure the line cannot explain); 0 means 8. Runs a
	// fault hit are retried too, up to MaxAttempts plus two per fault configured.
	MaxAttempts int
	// Race adds the two-CA race (RaceConfig defaults) after the line.
	Race bool
	Log  func(format string, args ...any)

	// tamper, in this package's tests, changes what the run left just before the invariants are checked,
	// to show that the check catches it.
	tamper func(ctx context.Context, l *line) error
}

// Result is what a run counted.
type Result struct {
	Seed          int64
	Boards, Slots int
	Provisioned   int
	Failed        int            // failed or stopped, each with a reason
	FailedReasons map[string]int // reason code -> boards
	// SeenReasons counts the reasons the inventory recorded for failed station runs that a retry or
	// resume then took up: what the faults looked like to the line.
	SeenReasons map[string]int
	// RunOutcomes counts station provision runs by how they ended: the process's exit ("exit 0", "exit 1",
	// "killed") and the board's state in the inventory right after.
	RunOutcomes    map[string]int
	Faults         map[FaultKind]int
	RelayConnsCut  int
	CARestarts     int
	PGRestarts     int
	StationKilled  int // station processes killed by station-kill faults
	Reconciles     int // station reconcile runs (after each station kill and the final one)
	Resumed        int // boards a reconcile resumed to PASS
	Retried        int // station runs after a failure or an interruption
	Recoveries     int // boards that ended provisioned after a failure, an interruption or a resume
	Attempts       int // station provision runs in all
	CACertificates int // certificates in the CA's table at the end
	AuditOK        bool
	Race           *RaceResult
	Violations     []string
	Elapsed        time.Duration
}

// boardResult is what the driver knows of one board at the end.
type boardResult struct {
	serial      string
	state       records.BoardState
	reason      string
	attempts    int
	interrupted bool // a fault hit one of its runs
	tpmIAK      []byte
	tpmIDevID   []byte
	tpmErr      error
}

type line struct {
	cfg          Config
	rng          *rand.Rand
	pg           *PG
	ca           *CA
	stationCA    string          // the CA's station access CA, which the board-agents trust
	firstFailure atomic.Bool     // the first failed station run was logged
	client       tls.Certificate // the station's client certificate, for reading a board's TPM directly
	inv          *inventory.Store
	stConf       string
	batch        string
	vendorDir    string
	res          *Result
	boards       []*boardResult

	// gate: slots hold it shared while a station process runs; a station kill takes it whole, so the
	// reconcile after the kill runs with no station process beside it, as after a real station restart.
	gate    sync.RWMutex
	mu      sync.Mutex
	running map[*proc]int // station provision processes -> slot
	inSlot  map[int]*board
	done    atomic.Int64
	killGen atomic.Int64 // bumped by every station kill
	// faultsActive counts faults taking effect now (at most one: they fire in turn); lastFaultEnd is when
	// the latest one ended (Unix ns). A station run that overlaps a fault, or starts within faultShadow
	// of its end, was hit by it.
	faultsActive atomic.Int32
	lastFaultEnd atomic.Int64
	// starved: a fault has waited for the line with no station running (see starve); the board feeder
	// lets one of the boards it holds back onto the line.
	starved chan struct{}
}

func (l *line) logf(format string, args ...any) {
	if l.cfg.Log != nil {
		l.cfg.Log(format, args...)
	}
}

// Run sets up the line (its own PostgreSQL, one CA process, a station config), provisions cfg.Boards
// boards on cfg.Slots slots while the driver injects the faults, then reconciles, verifies the audit
// chain and checks the invariants. An error means the soak itself could not run; invariant violations
// are in Result.Violations.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.Slots < 1 || cfg.Boards < 1 {
		return nil, errors.New("soak: needs at least one slot and one board")
	}
	start := time.Now()
	l := &line{cfg: cfg, rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x50a4)), running: map[*proc]int{}, inSlot: map[int]*board{}, starved: make(chan struct{}, 1),
		res: &Result{Seed: cfg.Seed, Boards: cfg.Boards, Slots: cfg.Slots, FailedReasons: map[string]int{}, SeenReasons: map[string]int{}, RunOutcomes: map[string]int{}, Faults: map[FaultKind]int{}}}
	l.vendorDir = filepath.Join(cfg.Dir, "vendor")
	vendor, err := fixtures.LoadOrCreateManufacturer(l.vendorDir)
	if err != nil {
		return nil, err
	}
	if l.pg, err = StartPG(ctx, cfg.Dir, "inventory", "ca"); err != nil {
		return nil, err
	}
	defer l.pg.Stop()
	caDir, err := InitCA(ctx, cfg.Bins.CA, filepath.Join(cfg.Dir, "ca"), append(vendor.RootPEM(), vendor.IntermediatePEM()...))
	if err != nil {
		return nil, err
	}
	l.stationCA = filepath.Join(caDir.dir, ca.AccessCertFile)
	if l.client, err = tls.LoadX509KeyPair(caDir.StationCert, caDir.StationKey); err != nil {
		return nil, err
	}
	if l.ca, err = caDir.Serve(l.pg.URL("ca"), filepath.Join(cfg.Dir, "ca.log")); err != nil {
		return nil, err
	}
	defer l.ca.Stop()
	l.stConf, err = l.writeStationConfig("station.json", nil)
	if err != nil {
		return nil, err
	}
	if l.inv, err = inventory.Open(ctx, l.pg.URL("inventory")); err != nil {
		return nil, err
	}
	defer l.inv.Close()
	l.batch = fmt.Sprintf("SOAK-%d", cfg.Seed)
	if out, code := l.station(ctx, l.stConf, "batch", "open", "--id", l.batch, "--product", "default",
		"--quantity", fmt.Sprint(cfg.Boards), "--operator", "soak"); code != 0 {
		return nil, fmt.Errorf("station batch open: exit %d: %s", code, out)
	}
	l.logf("soak: seed %d, %d boards on %d slots, faults %v; PostgreSQL on port %d, CA %s, scratch %s",
		cfg.Seed, cfg.Boards, cfg.Slots, cfg.Faults, l.pg.Port, l.ca.URL(), cfg.Dir)

	l.boards = make([]*boardResult, cfg.Boards)
	for i := range l.boards {
		l.boards[i] = &boardResult{serial: fmt.Sprintf("SOAK%d-%05d", cfg.Seed%100000, i+1)}
	}
	lineCtx, stopLine := context.WithCancel(ctx)
	defer stopLine()
	faultsDone := make(chan struct{})
	go func() { defer close(faultsDone); l.injectFaults(lineCtx) }()
	next := make(chan *boardResult)
	go func() {
		defer close(next)
		faultsOver := false
		for i, b := range l.boards {
			if i >= len(l.boards)-cfg.Slots && !faultsOver {
				// The last boards wait for the faults still to come, so that every fault lands on a running
				// line rather than after it. A fault that waits for the line to move while no station runs
				// (a relay drop needs a station mid-flow) lets one held board go.
				select {
				case <-faultsDone:
					faultsOver = true
				case <-l.starved:
				case <-lineCtx.Done():
					return
				}
			}
			select {
			case next <- b:
			case <-lineCtx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for slot := 1; slot <= cfg.Slots; slot++ {
		wg.Go(func() {
			for b := range next {
				l.runBoard(lineCtx, slot, b)
				if n := l.done.Add(1); n%max(int64(cfg.Boards/20), 1) == 0 {
					l.logf("soak: %d of %d boards done (%.0f s)", n, cfg.Boards, time.Since(start).Seconds())
				}
			}
		})
	}
	wg.Wait()
	stopLine()
	<-faultsDone
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// The line is done: the operator's reconcile closes whatever a station left in progress (none of the
	// boards is in a slot any more), then the audit chain is verified.
	out, code := l.station(ctx, l.stConf, "reconcile")
	l.res.Reconciles++
	if code != 0 {
		l.violate("final station reconcile: exit %d: %s", code, lastLine(out))
	}
	l.res.Resumed += strings.Count(out, ": PASS")
	out, code = l.station(ctx, l.stConf, "audit", "verify")
	l.res.AuditOK = code == 0
	if !l.res.AuditOK {
		l.violate("station audit verify: exit %d: %s", code, lastLine(out))
	}
	if cfg.tamper != nil {
		if err := cfg.tamper(ctx, l); err != nil {
			return nil, err
		}
	}
	if err := l.check(ctx); err != nil {
		return nil, err
	}
	if cfg.Race {
		rr, err := RunRace(ctx, RaceConfig{Dir: filepath.Join(cfg.Dir, "race"), CABin: cfg.Bins.CA, PG: l.pg, Vendor: vendor, Log: cfg.Log})
		if err != nil {
			return nil, err
		}
		l.res.Race = rr
		l.res.Violations = append(l.res.Violations, rr.Violations...)
	}
	l.res.Elapsed = time.Since(start)
	return l.res, nil
}

func (l *line) violate(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.res.Violations = append(l.res.Violations, fmt.Sprintf(format, args...))
}

func (l *line) writeStationConfig(name string, slots map[int]string) (string, error) {
	s := station.Settings{StationID: "soak-line", DB: l.pg.URL("inventory"), CAURL: l.ca.URL(), CATrust: l.ca.Trust,
		ClientCert: l.ca.StationCert, ClientKey: l.ca.StationKey}
	for id, addr := range slots {
		s.Slots = append(s.Slots, station.Slot{ID: id, TPM: addr})
	}
	sort.Slice(s.Slots, func(i, j int) bool { return s.Slots[i].ID < s.Slots[j].ID })
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(l.cfg.Dir, name)
	return path, os.WriteFile(path, b, 0o600)
}

// station runs a station command to its end and returns its combined output and exit status (-1 when it
// was killed or did not start).
func (l *line) station(ctx context.Context, conf string, args ...string) (string, int) {
	cmd := exec.CommandContext(ctx, l.cfg.Bins.Station, append([]string{"--config", conf}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	return string(out), exitCode(err)
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() >= 0 {
		return ee.ExitCode()
	}
	return -1
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// provisionTimeout bounds one station run; a run that hangs past it is a finding, killed and retried.
const provisionTimeout = 3 * time.Minute

// runBoard puts a fresh board in the slot and runs the station on it until the inventory records it as
// provisioned, stopped, or failed MaxAttempts times; then reads its TPM and takes it out of the slot.
func (l *line) runBoard(ctx context.Context, slot int, br *boardResult) {
	var b *board
	for {
		var err error
		if b, err = startBoard(ctx, l.cfg.Bins.Agent, l.vendorDir, fixtures.NewSimSeed(), br.serial, l.stationCA, l.client); err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		l.logf("soak: slot %d: board %s did not start: %v; again", slot, br.serial, err)
		time.Sleep(time.Second)
	}
	l.mu.Lock()
	l.inSlot[slot] = b
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.inSlot, slot)
		l.mu.Unlock()
		b.stop()
	}()
	// Runs a fault hit do not count against MaxAttempts (a dense fault plan can hit one board's every
	// run, and the operator retries what the line explains), but every run counts against the cap.
	quietRuns, maxRuns := 0, l.cfg.MaxAttempts
	for _, n := range l.cfg.Faults {
		maxRuns += 2 * n
	}
	for quietRuns < l.cfg.MaxAttempts && br.attempts < maxRuns && ctx.Err() == nil {
		if br.attempts > 0 {
			l.mu.Lock()
			l.res.Retried++
			l.mu.Unlock()
			// An operator retries after a moment; a service the driver restarts needs that moment too.
			time.Sleep(time.Duration(200*min(br.attempts, 8)) * time.Millisecond)
		}
		br.attempts++
		start := time.Now()
		killed, exit := l.provision(ctx, slot, b)
		if killed {
			br.interrupted = true
		}
		if !killed && !l.hitByFault(start) {
			quietRuns++
		}
		bd, err := l.boardState(ctx, br.serial)
		state := "not claimed"
		if err == nil {
			state = string(bd.State)
		}
		l.mu.Lock()
		l.res.RunOutcomes[exit+", "+state]++
		l.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			continue // not claimed yet (killed before its claim), or the inventory is down
		}
		br.state, br.reason = bd.State, bd.ReasonCode
		if bd.State == records.StateProvisioned || bd.State == records.StateStopped {
			break
		}
		if bd.State == records.StateFailed && br.reason != "" {
			br.interrupted = true // a fault made it fail (no board in the soak fails on its own)
			l.mu.Lock()
			l.res.SeenReasons[br.reason]++
			l.mu.Unlock()
		}
	}
	if br.state != records.StateProvisioned && br.state != records.StateStopped && br.state != records.StateFailed && ctx.Err() == nil {
		l.logf("soak: board %s: slot %d gave up after %d station runs; the inventory says %q", br.serial, slot, br.attempts, br.state)
	}
	if br.state == records.StateProvisioned {
		br.tpmIAK, br.tpmIDevID, br.tpmErr = b.tpmCerts()
	}
}

// provision runs `station provision` on the board once; killed says a fault (station kill, timeout)
// ended the process, exit how it ended ("exit N" or "killed").
func (l *line) provision(ctx context.Context, slot int, b *board) (killed bool, exit string) {
	l.gate.RLock()
	defer l.gate.RUnlock()
	gen := l.killGen.Load()
	pctx, cancel := context.WithTimeout(ctx, provisionTimeout)
	defer cancel()
	cmd := exec.CommandContext(pctx, l.cfg.Bins.Station, "--config", l.stConf, "provision", "--tpm", b.Addr(),
		"--serial", b.serial, "--batch", l.batch, "--slot", fmt.Sprint(slot))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p, err := startProc(cmd)
	if err != nil {
		l.logf("soak: slot %d: starting station: %v", slot, err)
		return false, "not started"
	}
	l.mu.Lock()
	l.running[p] = slot
	l.res.Attempts++
	l.mu.Unlock()
	<-p.done
	l.mu.Lock()
	delete(l.running, p)
	l.mu.Unlock()
	if pctx.Err() == context.DeadlineExceeded {
		l.violate("board %s: station provision hung past %v: %s", b.serial, provisionTimeout, lastLine(out.String()))
		return true, "hung"
	}
	code := exitCode(p.err)
	exit = fmt.Sprintf("exit %d", code)
	if code < 0 {
		exit = "killed"
	} else if code != 0 && l.firstFailure.CompareAndSwap(false, true) {
		// The first station run that failed, in full: what every later one is likely to repeat.
		l.logf("soak: board %s: first failed station run (%s): %s", b.serial, exit, lastLine(out.String()))
	}
	return code < 0 || l.killGen.Load() != gen, exit
}

// boardState reads the board from the inventory, waiting out a PostgreSQL restart.
func (l *line) boardState(ctx context.Context, serial string) (*records.Board, error) {
	deadline := time.Now().Add(90 * time.Second)
	for {
		bd, err := l.inv.GetBoardBySerial(ctx, serial)
		if err == nil || errors.Is(err, records.ErrBoardNotFound) || time.Now().After(deadline) || ctx.Err() != nil {
			return bd, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type fault struct {
	at   int64 // fire once this many boards are done
	kind FaultKind
}

// injectFaults fires the configured faults at board counts drawn from the seed over the first 70% of
// the run (faults queue behind each other: a restart takes a moment), each after a further random delay so it lands inside some board's flow.
func (l *line) injectFaults(ctx context.Context) {
	var plan []fault
	span := max(l.cfg.Boards*7/10, 1)
	for _, k := range FaultKinds {
		for range l.cfg.Faults[k] {
			plan = append(plan, fault{at: int64(l.rng.IntN(span)), kind: k})
		}
	}
	sort.SliceStable(plan, func(i, j int) bool { return plan[i].at < plan[j].at })
	for _, f := range plan {
		for i := 0; l.done.Load() < f.at; i++ {
			if i%50 == 49 {
				l.starve() // on a short line the boards it waits for may be the ones held back
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		delay := time.Duration(l.rng.IntN(400)) * time.Millisecond
		down := time.Duration(l.rng.IntN(800)) * time.Millisecond
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		l.fire(ctx, f.kind, down)
	}
}

// starve tells the board feeder that a fault has waited half a second for the line to move (a station
// mid-flow, more boards done) while no station runs, so that it lets one of the boards it holds back go.
func (l *line) starve() {
	l.mu.Lock()
	idle := len(l.running) == 0
	l.mu.Unlock()
	if !idle {
		return
	}
	select {
	case l.starved <- struct{}{}:
	default:
	}
}

// faultShadow is how long after a fault ends a station run still counts as hit by it: a restarted CA
// or PostgreSQL takes a moment to serve again, a station's connections a moment to notice.
const faultShadow = time.Second

// hitByFault says whether a station run that started at start and has just ended overlapped a fault
// or started in a fault's shadow.
func (l *line) hitByFault(start time.Time) bool {
	return l.faultsActive.Load() > 0 || l.lastFaultEnd.Load() >= start.Add(-faultShadow).UnixNano()
}

func (l *line) fire(ctx context.Context, kind FaultKind, down time.Duration) {
	injected := true
	// The fault takes effect from here (a relay drop: from the moment it cuts, not while it waits for a
	// station to cut) to its end.
	if kind != FaultRelayDrop {
		l.faultsActive.Add(1)
	}
	defer func() {
		if kind != FaultRelayDrop || injected {
			l.lastFaultEnd.Store(time.Now().UnixNano())
			l.faultsActive.Add(-1)
		}
		if injected {
			l.mu.Lock()
			l.res.Faults[kind]++
			l.mu.Unlock()
			l.logf("soak: %s injected (%d boards done)", kind, l.done.Load())
		}
	}()
	switch kind {
	case FaultStation:
		l.killStation(ctx)
	case FaultCA:
		l.ca.Kill()
		time.Sleep(down)
		if err := l.ca.Start(); err != nil {
			l.violate("CA restart: %v", err)
		}
		l.mu.Lock()
		l.res.CARestarts++
		l.mu.Unlock()
	case FaultPostgres:
		l.pg.Kill()
		time.Sleep(down)
		if err := l.pg.Start(ctx); err != nil {
			l.violate("PostgreSQL restart: %v", err)
		}
		l.mu.Lock()
		l.res.PGRestarts++
		l.mu.Unlock()
	case FaultRelayDrop:
		// Cut a slot whose station is mid-flow; wait for one when none is.
		injected = false
		for i := range 3000 {
			l.mu.Lock()
			var slots []int
			for _, s := range l.running {
				slots = append(slots, s)
			}
			sort.Ints(slots)
			var b *board
			if len(slots) > 0 {
				b = l.inSlot[slots[l.rng.IntN(len(slots))]]
			}
			l.mu.Unlock()
			if b != nil {
				l.faultsActive.Add(1)
				if n := b.proxy.Drop(); n > 0 {
					l.mu.Lock()
					l.res.RelayConnsCut += n
					l.mu.Unlock()
					injected = true
					return
				}
				l.faultsActive.Add(-1)
			}
			if b == nil && i%50 == 49 {
				l.starve() // the last boards may be held back for this very fault
			}
			time.Sleep(10 * time.Millisecond)
		}
		l.logf("soak: relay-drop: no station was connected to a board for 30 s; not injected")
	}
}

// killStation is a station crash: every station process is SIGKILLed at once; then, with none running,
// the restarted station's `station reconcile` resumes the boards it left in progress in their slots.
func (l *line) killStation(ctx context.Context) {
	killAll := func() {
		l.mu.Lock()
		ps := make([]*proc, 0, len(l.running))
		for p := range l.running {
			ps = append(ps, p)
		}
		l.res.StationKilled += len(ps)
		l.mu.Unlock()
		for _, p := range ps {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	l.killGen.Add(1)
	killAll()
	l.gate.Lock()
	defer l.gate.Unlock()
	l.mu.Lock()
	slots := map[int]string{}
	for s, b := range l.inSlot {
		slots[s] = b.Addr()
	}
	l.mu.Unlock()
	conf, err := l.writeStationConfig("reconcile.json", slots)
	if err != nil {
		l.violate("writing the reconcile config: %v", err)
		return
	}
	out, code := l.station(ctx, conf, "reconcile")
	l.mu.Lock()
	l.res.Reconciles++
	l.res.Resumed += strings.Count(out, ": PASS")
	l.mu.Unlock()
	if code != 0 && code != 1 {
		// A reconcile that could not run (the CA or the inventory down) leaves the boards in progress; each
		// slot's next station run resumes its board.
		l.logf("soak: reconcile after a station kill: exit %d: %s", code, lastLine(out))
	}
}
