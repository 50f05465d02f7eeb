package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// TimingsEnv, when set to 1, has a command print on stderr at its end how long each of its start-up
// phases took since main began (settings, inventory, CA client, station, the work, closing): how
// docs/benchmarks.md's whole-process breakdown is measured.
const TimingsEnv = "TPMLINE_TIMINGS"

type phaseTimer struct {
	start time.Time
	last  time.Time
	marks []string
}

var timings *phaseTimer

func init() {
	if os.Getenv(TimingsEnv) == "1" {
		now := time.Now()
		timings = &phaseTimer{start: now, last: now}
	}
}

// mark records that the phase name ended now; a no-op unless TPMLINE_TIMINGS=1.
func (t *phaseTimer) mark(name string) {
	if t == nil {
		return
	}
	now := time.Now()
	t.marks = append(t.marks, fmt.Sprintf("%s %.2f ms", name, float64(now.Sub(t.last))/float64(time.Millisecond)))
	t.last = now
}

func (t *phaseTimer) print(w io.Writer) {
	if t == nil {
		return
	}
	fmt.Fprintf(w, "station: timings: %s; main total %.2f ms\n", strings.Join(t.marks, ", "), float64(time.Since(t.start))/float64(time.Millisecond))
}
