package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ProcessResult is figure 2's whole-process side: `station provision` run as one process per board, as a
// test executive runs it (binary start, config, inventory open, TLS to the CA, the flow, exit), and
// `station board show` as a process, on the same swtpm boards, SQLite inventory and CA as figure 1.
type ProcessResult struct {
	Boards    int
	Before    *ProcessResult // the same figures of Env.StationBinBefore, run in alternation with these
	Provision time.Duration  // median wall time of one `station provision` process
	Flow      time.Duration  // median of the flow as the process itself reports it (duration_ms)
	Show      time.Duration  // median wall time of one `station board show` process
	Shows     int
	// the fastest of each: on a shared machine, the least disturbed run
	ProvisionMin, ShowMin time.Duration
	// median CPU time (user + system) of one process: steadier than wall time when the neighbours are busy
	ProvisionCPU, ShowCPU time.Duration
	// Start-up alone: `station help` (parse, print, exit) through this binary and through station-full
	// beside it (make build's two builds), in alternation, Starts times each; zero without station-full.
	Starts                   int
	StartCPU, StartFullCPU   time.Duration // median CPU of one process
	StartWall, StartFullWall time.Duration // median wall time
}

// runProcesses provisions n boards of the pool, each with its own `station provision` process, then runs
// `station board show` shows times. Wall times are taken around exec: fork, exec and exit are included.
//
// With Env.StationBinBefore set, that binary provisions as many boards again, in alternation with this one
// (A B A B ...), on the same inventory and CA, and runs as many board shows: a before/after comparison
// within one run.
func runProcesses(ctx context.Context, env *Env, p *boardPool, n, shows int) (*ProcessResult, error) {
	bins := []string{env.StationBin}
	if env.StationBinBefore != "" {
		bins = append(bins, env.StationBinBefore)
	}
	if n*len(bins) > len(p.boards) {
		return nil, fmt.Errorf("whole-process run needs %d boards, the pool has %d", n*len(bins), len(p.boards))
	}
	if err := p.reset(n * len(bins)); err != nil {
		return nil, err
	}
	dir := filepath.Join(env.Dir, "runs", "process")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	proc, err := p.cad.serve(env.PG, filepath.Join(dir, "ca.log"))
	if err != nil {
		return nil, err
	}
	defer proc.stop()
	globals := []string{"--db", "sqlite://" + filepath.Join(dir, "inventory.db"), "--station-id", "bench",
		"--ca", proc.URL, "--ca-trust", filepath.Join(p.cad.station, "ca-trust.pem"),
		"--client-cert", filepath.Join(p.cad.station, "bench.crt"), "--client-key", filepath.Join(p.cad.station, "bench.key")}
	var lastCPU time.Duration
	station := func(bin string, args ...string) (string, time.Duration, error) {
		cmd := exec.CommandContext(ctx, bin, append(append([]string{}, args...), globals...)...)
		cmd.Dir = dir
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(t0)
		if cmd.ProcessState != nil {
			lastCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		if err != nil {
			return "", 0, fmt.Errorf("station %s: %w: %s", strings.Join(args[:min(2, len(args))], " "), err, lastLines(out, 3))
		}
		return string(out), d, nil
	}
	if _, _, err := station(env.StationBin, "init"); err != nil {
		return nil, err
	}
	if _, _, err := station(env.StationBin, "batch", "open", "--id", "B-process", "--product", "default", "--quantity", fmt.Sprint(n*len(bins)), "--operator", "bench"); err != nil {
		return nil, err
	}
	walls, flows, showWalls := make([][]time.Duration, len(bins)), make([][]time.Duration, len(bins)), make([][]time.Duration, len(bins))
	cpus, showCPUs := make([][]time.Duration, len(bins)), make([][]time.Duration, len(bins))
	for i := range n {
		for k, bin := range bins {
			b := i*len(bins) + k
			out, d, err := station(bin, "provision", "--tpm", p.boards[b].Addr(), "--serial", fmt.Sprintf("process-%04d", b), "--batch", "B-process")
			if err != nil {
				return nil, err
			}
			var flowMS float64
			at := strings.Index(out, " in ")
			if at < 0 || !strings.Contains(out, "PASS") {
				return nil, fmt.Errorf("station provision printed %q", strings.TrimSpace(out))
			}
			if _, err := fmt.Sscanf(out[at+4:], "%f ms", &flowMS); err != nil {
				return nil, fmt.Errorf("station provision printed %q", strings.TrimSpace(out))
			}
			walls[k], flows[k] = append(walls[k], d), append(flows[k], time.Duration(flowMS*float64(time.Millisecond)))
			cpus[k] = append(cpus[k], lastCPU)
		}
	}
	for i := range shows {
		for k, bin := range bins {
			out, d, err := station(bin, "board", "show", fmt.Sprintf("process-%04d", (i%n)*len(bins)+k))
			if err != nil {
				return nil, err
			}
			if !strings.Contains(out, "provisioned") {
				return nil, fmt.Errorf("station board show printed %q", lastLines([]byte(out), 3))
			}
			showWalls[k], showCPUs[k] = append(showWalls[k], d), append(showCPUs[k], lastCPU)
		}
	}
	var res *ProcessResult
	for k := len(bins) - 1; k >= 0; k-- {
		res = &ProcessResult{Boards: n, Shows: shows, Before: res, Provision: median(walls[k]), Flow: median(flows[k]), Show: median(showWalls[k]),
			ProvisionMin: slices.Min(walls[k]), ShowMin: slices.Min(showWalls[k]), ProvisionCPU: median(cpus[k]), ShowCPU: median(showCPUs[k])}
	}
	if err := startUp(ctx, env.StationBin, max(shows, 10), res); err != nil {
		return nil, err
	}
	return res, nil
}

// startUp times `station help` through bin and through station-full beside it, in alternation: the
// process start-up that every command pays before its own work, for the two builds of cmd/station. No
// station-full there (an older layout), no figure.
func startUp(ctx context.Context, bin string, n int, res *ProcessResult) error {
	full := filepath.Join(filepath.Dir(bin), "station-full")
	if _, err := os.Stat(full); err != nil {
		return nil
	}
	var cpu, wall [2][]time.Duration
	for range n {
		for k, b := range []string{bin, full} {
			cmd := exec.CommandContext(ctx, b, "help")
			t0 := time.Now()
			out, err := cmd.CombinedOutput()
			d := time.Since(t0)
			if err != nil {
				return fmt.Errorf("%s help: %w: %s", b, err, lastLines(out, 3))
			}
			wall[k] = append(wall[k], d)
			cpu[k] = append(cpu[k], cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
		}
	}
	res.Starts = n
	res.StartCPU, res.StartFullCPU = median(cpu[0]), median(cpu[1])
	res.StartWall, res.StartFullWall = median(wall[0]), median(wall[1])
	return nil
}
