package bench

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Env is where a run happens: a scratch folder, the binaries and services it uses.
type Env struct {
	Dir              string // scratch folder, removed by the caller
	CABin            string // the upstream-ca binary
	StationBin       string // the station binary (figure 2's whole-process side)
	StationBinBefore string // optional: an older station binary run in alternation with StationBin
	PG               string // PostgreSQL base URL; each figure makes and drops its own schema
	Script           string // ../shared/bench/tpm2-tools-flow.sh
	Log              func(format string, args ...any)
}

func (e *Env) logf(format string, args ...any) {
	if e.Log != nil {
		e.Log(format, args...)
	}
}

// Machine describes the machine a run happened on.
type Machine struct {
	NProc     int
	CPU       string
	GoVersion string
	Kernel    string
	Date      time.Time
	Swtpm     string
	Tools     string
	Postgres  string
}

// DescribeMachine reads what docs/benchmarks.md records about the machine.
func DescribeMachine(pg string) Machine {
	m := Machine{NProc: runtime.NumCPU(), GoVersion: runtime.Version(), Date: time.Now().UTC()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	first := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return "not found"
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	m.Swtpm = first("swtpm", "--version")
	m.Tools = first("tpm2_getrandom", "--version")
	m.Postgres = first("psql", "--version")
	return m
}
