package tui

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station/progress"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, rewriting it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

var cloneFailure = &progress.Failure{Code: progress.ReasonClone, Text: "EK already bound to serial SN-0003",
	Next: "set the board aside for QA (possible cloned TPM or mislabelled board)", Stop: true}

func sampleSlots() map[string]*slotState {
	return map[string]*slotState{
		"ready":   {ID: 1, Status: slotReady},
		"clone":   {ID: 1, Status: slotReady, Note: "clone of the TPM provisioned as SN-0003: scan a new serial to see the clone refused"},
		"loading": {ID: 1, Status: slotLoading},
		"running": {ID: 1, Status: slotRunning, Serial: "SN-0001", Step: "enroll", Done: 10, Started: t0},
		"abort":   {ID: 1, Status: slotAborting, Serial: "SN-0001", Step: "activate", Done: 11, Started: t0},
		"passed":  {ID: 1, Status: slotPassed, Serial: "SN-0002", Done: len(progress.BoardSteps(false)), Elapsed: 5200 * time.Millisecond},
		"failed": {ID: 1, Status: slotFailed, Serial: "SN-0004", Done: 6, LastStep: progress.StepClaim,
			Elapsed: 1300 * time.Millisecond, Failure: cloneFailure},
		"noboard": {ID: 1, Status: slotNoBoard, Message: "simulated board exited before it was ready: bad flag; F6 to try again"},
	}
}

// TestRenderSlotGolden renders every slot state at the 80x24 panel size (36x6) and a large one (44x10),
// with and without colour.
func TestRenderSlotGolden(t *testing.T) {
	now := t0.Add(3400 * time.Millisecond)
	var b strings.Builder
	slots := sampleSlots()
	for _, name := range []string{"ready", "clone", "loading", "noboard", "running", "abort", "passed", "failed"} {
		for _, size := range [][2]int{{36, 6}, {44, 10}} {
			for _, color := range []bool{true, false} {
				lines := renderSlot(slots[name], size[0], size[1], now, color)
				fmt.Fprintf(&b, "== %s %dx%d", name, size[0], size[1])
				if !color {
					b.WriteString(" NO_COLOR")
				}
				b.WriteString("\n")
				for _, l := range lines {
					b.WriteString(l + "\n")
				}
			}
		}
	}
	golden(t, "slots.golden", b.String())
}

// plain strips tview tags from rendered lines (tags are [x:y:z] or [-:-:-]).
func plain(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '[' {
			if j := strings.IndexByte(s[i:], ']'); j > 0 && !strings.ContainsAny(s[i+1:i+j], " ") {
				inner := s[i+1 : i+j]
				if strings.Count(inner, ":") == 2 || inner == "-" {
					i += j
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return strings.ReplaceAll(b.String(), "[]", "[")
}

func TestRenderSlotFitsAndSays(t *testing.T) {
	slots := sampleSlots()
	for name, s := range slots {
		for _, w := range []int{18, 36, 60} {
			for _, h := range []int{1, 4, 6, 10} {
				lines := renderSlot(s, w, h, t0, false)
				if len(lines) > h {
					t.Errorf("%s %dx%d: %d lines", name, w, h, len(lines))
				}
				for _, l := range lines {
					if n := width(plain(l)); n > w {
						t.Errorf("%s %dx%d: line %q is %d cells", name, w, h, plain(l), n)
					}
				}
			}
		}
	}
	// At the 80x24 size a failure shows FAIL, its code, and the other serial; a pass shows PASS.
	fail := plain(strings.Join(renderSlot(slots["failed"], 36, 6, t0, false), "\n"))
	for _, want := range []string{"FAIL", progress.ReasonClone, "EK already bound to serial SN-0003", "→ set the board aside"} {
		if !strings.Contains(fail, want) {
			t.Errorf("failed slot at 36x6 lacks %q:\n%s", want, fail)
		}
	}
	if pass := plain(strings.Join(renderSlot(slots["passed"], 36, 6, t0, false), "\n")); !strings.Contains(pass, "PASS") {
		t.Errorf("passed slot lacks PASS:\n%s", pass)
	}
	// Without colour the one-line banner is reverse video, so it stands out on a monochrome terminal.
	if l := renderSlot(slots["passed"], 36, 6, t0, false)[2]; !strings.HasPrefix(l, "[::rb]") {
		t.Errorf("NO_COLOR banner is not reverse video: %q", l)
	}
}

func TestRenderCountersHeaderFooter(t *testing.T) {
	many := make([]time.Duration, 38)
	for i := range many {
		many[i] = 5200 * time.Millisecond
	}
	c := Counters{Counts: records.CountBatch(100, nil, 0), Figures: records.LineFigures(many, 38*time.Hour/412)}
	c.Counts = (records.BatchSummary{Batch: records.Batch{Quantity: 100}, Passed: 38, Failed: 1, Stopped: 1}).Counts()
	got := plain(renderCounters(c, 3, 80, false))
	want := "done 40/100 passed 38 failed 1 set aside 1 yield 95.0% 412 u/h median 5.2 s"
	if got != want {
		t.Errorf("counters\n got %q\nwant %q", got, want)
	}
	if got := plain(renderCounters(Counters{}, 0, 100, true)); got != "done 0  passed 0  failed 0  set aside 0  yield -  - u/h  median -  running 0" {
		t.Errorf("empty counters %q", got)
	}
	// Over the quantity: the line says so, first.
	over := Counters{Counts: (records.BatchSummary{Batch: records.Batch{Quantity: 8}, Passed: 9}).Counts()}
	if got := plain(renderCounters(over, 0, 80, false)); !strings.HasPrefix(got, "done 9/8 (1 OVER)") {
		t.Errorf("over quantity %q", got)
	}
	b := &records.BatchSummary{Batch: records.Batch{ID: "B7", Product: "default", WorkOrder: "WO-1", State: "open"}}
	if got := plain(renderHeader("demo station", "ana", b, 80, false)); got != "batch B7 · default · WO WO-1 │ operator ana │ demo station" {
		t.Errorf("header %q", got)
	}
	// Narrow: the batch is cut before the station goes.
	if got := plain(renderHeader("demo station", "ana", b, 30, false)); got != "batch B7 · def… │ demo station" {
		t.Errorf("narrow header %q", got)
	}
	if got := plain(renderHeader("s1", "", nil, 80, false)); !strings.HasPrefix(got, "no batch: F8") {
		t.Errorf("header without batch %q", got)
	}
	foot := plain(renderFooter(80, true, false))
	if width(foot) > 80 || !strings.HasPrefix(foot, "F1 help F2 start") || !strings.Contains(foot, "F7 clone") {
		t.Errorf("footer %q", foot)
	}
	if strings.Contains(plain(renderFooter(200, false, false)), "clone") {
		t.Error("footer offers clone on a fixture that cannot clone")
	}
}

func TestLayoutLine(t *testing.T) {
	for _, c := range []struct {
		w, h, n int
		want    lineLayout
	}{
		{80, 22, 4, lineLayout{cols: 2, rows: 2, slotH: 8, logH: 4}},
		{160, 46, 4, lineLayout{cols: 4, rows: 1, slotH: 12, logH: 32}},
		{120, 38, 4, lineLayout{cols: 2, rows: 2, slotH: 12, logH: 12}},
		{80, 22, 8, lineLayout{cols: 2, rows: 4, slotH: 4, logH: 4}},
		{80, 22, 1, lineLayout{cols: 1, rows: 1, slotH: 12, logH: 8}},
	} {
		if got := layoutLine(c.w, c.h, c.n); got != c.want {
			t.Errorf("layoutLine(%d,%d,%d) = %+v, want %+v", c.w, c.h, c.n, got, c.want)
		}
	}
}

func TestWrapAndFit(t *testing.T) {
	if got := wrap("set the board aside for QA (possible cloned TPM)", 12, 2); len(got) != 2 || got[0] != "set the" || width(got[1]) > 12 || !strings.HasSuffix(got[1], "…") {
		t.Errorf("wrap: %q", got)
	}
	if got := fit("abcdef", 4); got != "abc…" {
		t.Errorf("fit: %q", got)
	}
	if got := progressBar(9, 18, 20); got != "███████░░░░░░░░ 9/18" {
		t.Errorf("progress: %q", got)
	}
	if got := progressBar(9, 18, 20); width(got) != 20 {
		t.Errorf("progress width %d: %q", width(got), got)
	}
}
