package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ScriptResult is the tpm2-tools shop-floor script on a swtpm board.
type ScriptResult struct {
	Boards   int
	PerBoard time.Duration // median "board total (excl cleanup)" as the script reports it
	Output   string
}

// runScript runs ../shared/bench/tpm2-tools-flow.sh for n boards on a fresh board of the pool's vendor.
func runScript(ctx context.Context, env *Env, p *boardPool, n int) (*ScriptResult, error) {
	b, err := p.vendor.NewBoard(filepath.Join(env.Dir, "scriptboard"), fixturesOptsP256())
	if err != nil {
		return nil, err
	}
	defer b.Close()
	out := filepath.Join(env.Dir, "script-out")
	cmd := exec.CommandContext(ctx, "bash", env.Script)
	cmd.Env = append(os.Environ(), "N="+strconv.Itoa(n), "AK=ecc", "ROOT="+p.vendor.RootPath(), "INTER="+p.vendor.IntermediatePath(),
		"TPM2TOOLS_TCTI="+b.TCTI(), "OUT="+out)
	raw, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("tpm2-tools script: %w: %s", err, lastLines(raw, 5))
	}
	res := &ScriptResult{Boards: n, Output: string(raw)}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "== board total (excl cleanup)") {
			continue
		}
		f := strings.Fields(line)
		// step name, then min, med, max in ms
		if len(f) >= 3 {
			ms, err := strconv.ParseFloat(f[len(f)-2], 64)
			if err == nil {
				res.PerBoard = time.Duration(ms * float64(time.Millisecond))
			}
		}
	}
	if res.PerBoard == 0 {
		return nil, fmt.Errorf("tpm2-tools script printed no board total: %s", lastLines(raw, 5))
	}
	return res, nil
}
