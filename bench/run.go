package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tpmline/tpmline/fixtures"
)

// Config sizes a run. The defaults keep `make bench` under 10 minutes on a 2-core machine.
type Config struct {
	OverheadBoards   int    // figure 1, swtpm at its own speed
	ChipBoards       int    // figure 1, under the chip profile
	Chip             string // latency profile name (fixtures.LatencyProfileByName)
	ScriptBoards     int    // figure 2
	ProcessBoards    int    // figure 2: boards provisioned by one `station provision` process each
	Shows            int    // figure 2: `station board show` processes
	SlotCounts       []int  // figure 3
	PerSlot          int    // boards per slot in figure 3
	CA               CALoadConfig
	PDFBoards        int // figure 5
	EKListBoards     int
	InventoryBoards  int // figure 6
	InventoryLookups int
	Only             map[string]bool // figure numbers to run ("1".."6"); empty: all
	Self             string          // this executable, re-run for figure 5's isolated memory measurement
}

// DefaultConfig is what `make bench` runs.
func DefaultConfig() Config {
	return Config{OverheadBoards: 8, ChipBoards: 3, Chip: "slb9670", ScriptBoards: 3, ProcessBoards: 8, Shows: 8, SlotCounts: []int{1, 2, 4, 8, 16}, PerSlot: 2,
		CA:        CALoadConfig{Enrollments: 10_000, Warmup: 500, Workers: 8, Clients: 2, CryptoIterations: 2000},
		PDFBoards: 10_000, EKListBoards: 100_000, InventoryBoards: 1_000_000, InventoryLookups: 20_000}
}

// Results is everything a run measured.
type Results struct {
	Machine   Machine
	Config    Config
	Load      string // /proc/loadavg at the start
	Overhead  *OverheadResult
	Chip      *OverheadResult
	Script    *ScriptResult
	Process   *ProcessResult
	Slots     *SlotsResult
	CA        *CALoadResult
	PDF       *ChildResult
	EKList    *ChildResult
	Inventory *InventoryResult
	Errors    []string
	Total     time.Duration
}

func (c *Config) want(fig string) bool { return len(c.Only) == 0 || c.Only[fig] }

// Run runs the figures in order; a figure that fails is recorded and the others still run.
func Run(ctx context.Context, env *Env, cfg Config) *Results {
	start := time.Now()
	r := &Results{Machine: DescribeMachine(env.PG), Config: cfg}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.Load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	fail := func(fig string, err error) {
		msg := fmt.Sprintf("figure %s: %v", fig, err)
		env.logf("FAILED %s", msg)
		r.Errors = append(r.Errors, msg)
	}
	if cfg.want("1") || cfg.want("2") || cfg.want("3") {
		need := max(cfg.OverheadBoards, cfg.ChipBoards, 2*cfg.ProcessBoards)
		for _, s := range cfg.SlotCounts {
			if cfg.want("3") {
				need = max(need, s*cfg.PerSlot)
			}
		}
		env.logf("making %d swtpm boards", need)
		t0 := time.Now()
		pool, err := newBoardPool(env, need)
		if err != nil {
			fail("1-3", err)
		} else {
			defer pool.close()
			env.logf("boards ready in %v", time.Since(t0).Round(time.Millisecond))
			stationFigures(ctx, env, cfg, pool, r, fail)
		}
	}
	if cfg.want("4") {
		env.logf("figure 4: CA capacity, %d enrollments (+%d warm-up), %d workers", cfg.CA.Enrollments, cfg.CA.Warmup, cfg.CA.Workers)
		res, err := runCALoad(ctx, env, cfg.CA)
		r.CA = res
		if err != nil {
			fail("4", err)
		}
	}
	if cfg.want("5") {
		env.logf("figure 5: reports")
		var err error
		if r.PDF, err = runChild(cfg.Self, "pdf", cfg.PDFBoards); err != nil {
			fail("5", err)
		}
		if r.EKList, err = runChild(cfg.Self, "eklist", cfg.EKListBoards); err != nil {
			fail("5", err)
		}
	}
	if cfg.want("6") {
		env.logf("figure 6: inventory, %d boards in PostgreSQL", cfg.InventoryBoards)
		var err error
		if r.Inventory, err = runInventory(ctx, env, cfg.InventoryBoards, cfg.InventoryLookups); err != nil {
			fail("6", err)
		}
	}
	r.Total = time.Since(start)
	return r
}

func stationFigures(ctx context.Context, env *Env, cfg Config, pool *boardPool, r *Results, fail func(string, error)) {
	chip, err := fixtures.LatencyProfileByName(cfg.Chip)
	if err != nil {
		fail("1", err)
		return
	}
	if cfg.want("1") || cfg.want("2") {
		env.logf("figure 1: station overhead, %d boards on swtpm", cfg.OverheadBoards)
		if res, err := pool.run(ctx, env, "swtpm", lineRun{Slots: 1, PerSlot: cfg.OverheadBoards}); err != nil {
			fail("1", err)
		} else {
			r.Overhead = overhead("swtpm (software speed)", res)
		}
	}
	if cfg.want("1") {
		env.logf("figure 1: station overhead, %d boards on swtpm under the %s profile", cfg.ChipBoards, chip.Name)
		if res, err := pool.run(ctx, env, "chip", lineRun{Slots: 1, PerSlot: cfg.ChipBoards, Profile: &chip}); err != nil {
			fail("1", err)
		} else {
			r.Chip = overhead("swtpm + "+chip.Title+" latency", res)
		}
	}
	if cfg.want("2") {
		env.logf("figure 2: tpm2-tools script, %d boards", cfg.ScriptBoards)
		var err error
		if r.Script, err = runScript(ctx, env, pool, cfg.ScriptBoards); err != nil {
			fail("2", err)
		}
		env.logf("figure 2: %d boards, one station provision process each; %d board show processes", cfg.ProcessBoards, cfg.Shows)
		if r.Process, err = runProcesses(ctx, env, pool, cfg.ProcessBoards, cfg.Shows); err != nil {
			fail("2", err)
		}
	}
	if cfg.want("3") {
		r.Slots = &SlotsResult{Profile: chip.Title, PerSlot: cfg.PerSlot}
		var base float64
		for _, s := range cfg.SlotCounts {
			env.logf("figure 3: %d slots x %d boards under %s", s, cfg.PerSlot, chip.Name)
			res, err := pool.run(ctx, env, fmt.Sprintf("slots%d", s), lineRun{Slots: s, PerSlot: cfg.PerSlot, Profile: &chip})
			if err != nil {
				fail("3", err)
				return
			}
			row := SlotRow{Slots: s, Boards: len(res.Outcomes), Elapsed: res.Elapsed}
			row.PerHour = float64(row.Boards) / res.Elapsed.Hours()
			var tpm time.Duration
			for _, o := range res.Outcomes {
				tpm += o.TPMTime
			}
			row.TPMShare = float64(tpm) / (float64(s) * float64(res.Elapsed))
			if s == 1 || base == 0 {
				base = row.PerHour
			}
			row.Speedup = row.PerHour / base
			r.Slots.Rows = append(r.Slots.Rows, row)
		}
	}
}

// ChildResult is a figure run in a process of its own, so that its peak memory is its own.
type ChildResult struct {
	Boards  int
	Elapsed time.Duration // measured inside the child around the write
	Bytes   int64
	MaxRSS  int64 // the child's peak resident set (getrusage ru_maxrss)
}

func runChild(self, what string, n int) (*ChildResult, error) {
	cmd := exec.Command(self, "-child", what, "-child-n", strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s child: %w", what, err)
	}
	var ns, bytes int64
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "%d %d", &ns, &bytes); err != nil {
		return nil, fmt.Errorf("%s child printed %q", what, out)
	}
	res := &ChildResult{Boards: n, Elapsed: time.Duration(ns), Bytes: bytes}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.MaxRSS = ru.Maxrss << 10
	}
	return res, nil
}

// Child runs a child figure and prints "<nanoseconds> <bytes written>".
func Child(what string, n int, stdout io.Writer) error {
	w := &countWriter{}
	var d time.Duration
	var err error
	switch what {
	case "pdf":
		d, err = ReportPDF(w, n)
	case "eklist":
		entries, gerr := EKListEntries(n)
		if gerr != nil {
			return gerr
		}
		d, err = WriteEKListBench(w, "csv", entries)
	default:
		return fmt.Errorf("unknown child %q", what)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%d %d\n", d.Nanoseconds(), w.n)
	return err
}
