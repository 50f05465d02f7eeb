package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ProcessResult is figure 2's whole-process side: `station provision` run as one process per board, as a
// test executive runs it (binary start, config, inventory open, TLS to the CA, the flow, exit), and
// `station board show` as a process, on the same swtpm boards, SQLite inventory and CA as figure 1.
type ProcessResult struct {
	Boards    int
	Provision time.Duration // median wall time of one `station provision` process
	Flow      time.Duration // median of the flow as the process itself reports it (duration_ms)
	Show      time.Duration // median wall time of one `station board show` process
	Shows     int
}

// runProcesses provisions n boards of the pool, each with its own `station provision` process, then runs
// `station board show` shows times. Wall times are taken around exec: fork, exec and exit are included.
func runProcesses(ctx context.Context, env *Env, p *boardPool, n, shows int) (*ProcessResult, error) {
	if n > len(p.boards) {
		return nil, fmt.Errorf("whole-process run needs %d boards, the pool has %d", n, len(p.boards))
	}
	if err := p.reset(n); err != nil {
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
	station := func(args ...string) (string, time.Duration, error) {
		cmd := exec.CommandContext(ctx, env.StationBin, append(append([]string{}, args...), globals...)...)
		cmd.Dir = dir
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(t0)
		if err != nil {
			return "", 0, fmt.Errorf("station %s: %w: %s", strings.Join(args[:min(2, len(args))], " "), err, lastLines(out, 3))
		}
		return string(out), d, nil
	}
	if _, _, err := station("init"); err != nil {
		return nil, err
	}
	if _, _, err := station("batch", "open", "--id", "B-process", "--product", "default", "--quantity", fmt.Sprint(n), "--operator", "bench"); err != nil {
		return nil, err
	}
	res := &ProcessResult{Boards: n, Shows: shows}
	var walls, flows, showWalls []time.Duration
	for i := range n {
		out, d, err := station("provision", "--tpm", p.boards[i].Addr(), "--serial", fmt.Sprintf("process-%04d", i), "--batch", "B-process")
		if err != nil {
			return nil, err
		}
		var flowMS float64
		if _, err := fmt.Sscanf(out[strings.Index(out, " in ")+4:], "%f ms", &flowMS); err != nil || !strings.Contains(out, "PASS") {
			return nil, fmt.Errorf("station provision printed %q", strings.TrimSpace(out))
		}
		walls, flows = append(walls, d), append(flows, time.Duration(flowMS*float64(time.Millisecond)))
	}
	for i := range shows {
		out, d, err := station("board", "show", fmt.Sprintf("process-%04d", i%n))
		if err != nil {
			return nil, err
		}
		if !strings.Contains(out, "provisioned") {
			return nil, fmt.Errorf("station board show printed %q", lastLines([]byte(out), 3))
		}
		showWalls = append(showWalls, d)
	}
	res.Provision, res.Flow, res.Show = median(walls), median(flows), median(showWalls)
	return res, nil
}
