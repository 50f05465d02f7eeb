// Command tpmline-bench runs tpmline's performance benchmarks (package bench) and writes the table of
// docs/benchmarks.md. `make bench` runs it with its defaults; flags size each figure.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/tpmline/tpmline/bench"
)

func main() {
	d := bench.DefaultConfig()
	caBin := flag.String("ca-bin", "bin/upstream-ca", "the upstream-ca binary (make build)")
	stationBin := flag.String("station-bin", "bin/station", "the station binary (make build), run as a process per board in figure 2")
	stationBefore := flag.String("station-bin-before", "", "figure 2: an older station binary, run in alternation with -station-bin for a before/after in one run")
	pg := flag.String("pg", envOr("TPMLINE_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL base URL (a schema per figure, dropped after)")
	script := flag.String("script", "../shared/bench/tpm2-tools-flow.sh", "the tpm2-tools shop-floor script")
	doc := flag.String("doc", "docs/benchmarks.md", "page whose generated block is replaced (empty: print only)")
	only := flag.String("only", "", "comma-separated figures to run (1-6); empty: all")
	flag.IntVar(&d.OverheadBoards, "overhead-boards", d.OverheadBoards, "figure 1/2: boards at swtpm speed")
	flag.IntVar(&d.ChipBoards, "chip-boards", d.ChipBoards, "figure 1: boards under the chip profile")
	flag.StringVar(&d.Chip, "chip", d.Chip, "latency profile for figures 1 and 3")
	flag.IntVar(&d.ScriptBoards, "script-boards", d.ScriptBoards, "figure 2: boards through the tpm2-tools script")
	flag.IntVar(&d.ProcessBoards, "process-boards", d.ProcessBoards, "figure 2: boards provisioned by a station provision process each")
	flag.IntVar(&d.Shows, "shows", d.Shows, "figure 2: station board show processes")
	slots := flag.String("slots", "1,2,4,8,16", "figure 3: slot counts")
	flag.IntVar(&d.PerSlot, "per-slot", d.PerSlot, "figure 3: boards per slot")
	flag.IntVar(&d.CA.Enrollments, "ca-enrollments", d.CA.Enrollments, "figure 4: timed enrollments (the long run: 100000)")
	flag.IntVar(&d.CA.Warmup, "ca-warmup", d.CA.Warmup, "figure 4: untimed enrollments first")
	flag.IntVar(&d.CA.Workers, "ca-workers", d.CA.Workers, "figure 4: enrollments in flight")
	flag.IntVar(&d.CA.Clients, "ca-clients", d.CA.Clients, "figure 4: TLS client connections")
	flag.BoolVar(&d.CA.NoAuditHeads, "ca-no-audit-heads", d.CA.NoAuditHeads, "figure 4: enrollments without the station's signed audit chain head (as stations before issue 12 sent them)")
	flag.IntVar(&d.PDFBoards, "pdf-boards", d.PDFBoards, "figure 5: boards in the PDF report")
	flag.IntVar(&d.EKListBoards, "eklist-boards", d.EKListBoards, "figure 5: boards in the EK list")
	flag.IntVar(&d.InventoryBoards, "inventory-boards", d.InventoryBoards, "figure 6: boards seeded")
	flag.IntVar(&d.InventoryLookups, "inventory-lookups", d.InventoryLookups, "figure 6: lookups per kind")
	child := flag.String("child", "", "internal: run one figure-5 measurement in this process")
	childN := flag.Int("child-n", 0, "internal: its size")
	cpuProfile := flag.String("cpuprofile", "", "write this process's CPU profile (the station side of figures 1-3, the load generator of figure 4) to this file")
	flag.Parse()

	if *child != "" {
		if err := bench.Child(*child, *childN, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "tpmline-bench:", err)
			os.Exit(1)
		}
		return
	}
	d.SlotCounts = nil
	for _, s := range strings.Split(*slots, ",") {
		var n int
		if _, err := fmt.Sscan(s, &n); err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "tpmline-bench: bad slot count %q\n", s)
			os.Exit(2)
		}
		d.SlotCounts = append(d.SlotCounts, n)
	}
	if *only != "" {
		d.Only = map[string]bool{}
		for _, f := range strings.Split(*only, ",") {
			d.Only[strings.TrimSpace(f)] = true
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "tpmline-bench: cpu profile:", err)
			os.Exit(1)
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tpmline-bench:", err)
		os.Exit(1)
	}
	d.Self = self
	if *stationBefore != "" {
		if *stationBefore, err = filepath.Abs(*stationBefore); err != nil {
			fmt.Fprintln(os.Stderr, "tpmline-bench:", err)
			os.Exit(1)
		}
	}
	for _, p := range []*string{caBin, stationBin, script} {
		if *p, err = filepath.Abs(*p); err != nil {
			fmt.Fprintln(os.Stderr, "tpmline-bench:", err)
			os.Exit(1)
		}
	}
	dir, err := os.MkdirTemp("", "tpmline-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tpmline-bench:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	env := &bench.Env{Dir: dir, CABin: *caBin, StationBin: *stationBin, StationBinBefore: *stationBefore, PG: *pg, Script: *script, Log: func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}}
	res := bench.Run(ctx, env, d)
	pprof.StopCPUProfile() // a no-op without -cpuprofile
	md := res.Markdown()
	fmt.Print(md)
	if *doc != "" && len(d.Only) == 0 {
		if err := bench.WriteDoc(*doc, md); err != nil {
			fmt.Fprintln(os.Stderr, "tpmline-bench:", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "wrote %s\n", *doc)
	}
	if len(res.Errors) > 0 {
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
