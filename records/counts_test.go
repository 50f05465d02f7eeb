package records

import (
	"testing"
	"time"
)

func TestCountBatchDefinitions(t *testing.T) {
	states := []BoardState{StateProvisioned, StateProvisioned, StateProvisioned, StateProvisioned, StateFailed, StateStopped, StateInProgress}
	c := CountBatch(8, states, 2)
	want := Counts{Quantity: 8, Passed: 4, Failed: 1, Stopped: 1, Refused: 2, InProgress: 1, SetAside: 3, Done: 8,
		Yield: 50, HasYield: true}
	if c != want {
		t.Errorf("counts\n got %+v\nwant %+v", c, want)
	}
	if got := c.Line(); got != "done 8/8  passed 4  failed 1  set aside 3 (1 stopped, 2 refused)  in progress 1  yield 50.0%" {
		t.Errorf("line %q", got)
	}
	// The summary the inventory hands out gives the same counts.
	sum := BatchSummary{Batch: Batch{Quantity: 8}, Passed: 4, Failed: 1, Stopped: 1, Refused: 2, InProgress: 1}
	if sum.Counts() != c {
		t.Errorf("summary counts %+v, want %+v", sum.Counts(), c)
	}
	// A refusal is a board done and not passed: 4 passed and one clone refused is 80 %, not 100 %.
	if c := CountBatch(10, states[:4], 1); c.Done != 5 || c.SetAside != 1 || c.YieldText() != "80.0%" {
		t.Errorf("4 passed + 1 refused: %+v", c)
	}
}

func TestCountsOverQuantity(t *testing.T) {
	c := CountBatch(8, make([]BoardState, 9), 0)
	if c.Over != 0 {
		t.Errorf("boards in progress are not done: %+v", c)
	}
	st := make([]BoardState, 9)
	for i := range st {
		st[i] = StateProvisioned
	}
	c = CountBatch(8, st, 0)
	if c.Over != 1 || c.DoneText() != "9/8" || c.OverWarning() != "1 over the batch quantity of 8: check the work order" {
		t.Errorf("9 of 8: %+v %q", c, c.OverWarning())
	}
	if CountBatch(0, st, 0).Over != 0 {
		t.Error("a batch without a planned quantity is never over it")
	}
	if c := CountBatch(0, nil, 0); c.HasYield || c.YieldText() != "-" || c.DoneText() != "0" {
		t.Errorf("empty batch %+v", c)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:          "0 ms",
		0:                     "0 ms",
		87 * time.Millisecond: "87 ms",
		999*time.Millisecond + 900*time.Microsecond: "999 ms",
		time.Second:                 "1.0 s",
		5249 * time.Millisecond:     "5.2 s",
		59960 * time.Millisecond:    "59.9 s",
		61 * time.Second:            "1m01s",
		2*time.Hour + 3*time.Minute: "2h03m",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestLineFiguresNeedEnoughData(t *testing.T) {
	s := time.Second
	// One simulated board in 87 ms: no rate (it would say 41379 u/h), no median.
	if f := LineFigures([]time.Duration{87 * time.Millisecond}, 87*time.Millisecond); f.OK || f.RateText() != "- u/h" || f.MedianText() != "median -" {
		t.Errorf("one board: %+v", f)
	}
	four := []time.Duration{4 * s, 1 * s, 3 * s, 2 * s}
	if f := LineFigures(four, 90*s); f.OK {
		t.Errorf("4 boards in 90 s: %+v", f)
	}
	// Four boards over two minutes: enough time.
	if f := LineFigures(four, 2*time.Minute); !f.OK || f.RateText() != "120 u/h" || f.Median != 2500*time.Millisecond {
		t.Errorf("4 boards in 2 min: %+v", f)
	}
	// Five boards: enough boards.
	five := append(four, 9*s)
	if f := LineFigures(five, 30*s); !f.OK || f.RateText() != "600 u/h" || f.MedianText() != "median 3.0 s" {
		t.Errorf("5 boards in 30 s: %+v %q", f, f.MedianText())
	}
	if f := LineFigures(nil, time.Hour); f.OK {
		t.Errorf("no board: %+v", f)
	}
}

func TestMedian(t *testing.T) {
	s := time.Second
	for _, c := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{3 * s}, 3 * s},
		{[]time.Duration{5 * s, 1 * s, 3 * s}, 3 * s},
		{[]time.Duration{4 * s, 1 * s, 3 * s, 2 * s}, 2500 * time.Millisecond},
	} {
		in := append([]time.Duration(nil), c.in...)
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Fatalf("Median reordered its input: %v", c.in)
			}
		}
	}
}

// TestCountRefusedOncePerBoard: a refused board scanned again is refused again, and counts once (a clone
// scanned twice put one board twice into set aside and done); distinct boards each count.
func TestCountRefusedOncePerBoard(t *testing.T) {
	claim := func(serial, payload string) Event {
		return Event{Kind: EventClaimRefused, Serial: serial, Payload: []byte(payload)}
	}
	clone := `{"reason":"ek_bound_to_other_serial","ek_pub_sha256":"aa","other_serial":"SN-1"}`
	swap := `{"reason":"serial_bound_to_other_ek","ek_pub_sha256":"bb","bound_ek_pub_sha256":"cc"}`
	early := Event{Kind: EventBoardRefused, Serial: "SN-7", Payload: []byte(`{"code":"tpm_not_accepted","slot":1}`)}
	for _, c := range []struct {
		name   string
		events []Event
		want   int
	}{
		{"none", nil, 0},
		{"one clone", []Event{claim("SN-9", clone)}, 1},
		{"the same clone scanned twice", []Event{claim("SN-9", clone), claim("SN-9", clone)}, 1},
		{"the same clone under another label", []Event{claim("SN-9", clone), claim("SN-10", clone)}, 1},
		{"two clones of one board", []Event{claim("SN-9", clone),
			claim("SN-10", `{"reason":"ek_bound_to_other_serial","ek_pub_sha256":"dd","other_serial":"SN-1"}`)}, 2},
		{"a clone of another board", []Event{claim("SN-9", clone),
			claim("SN-9", `{"reason":"ek_bound_to_other_serial","ek_pub_sha256":"aa","other_serial":"SN-2"}`)}, 2},
		{"a swap scanned twice", []Event{claim("SN-2", swap), claim("SN-2", swap)}, 1},
		{"a swap and a clone", []Event{claim("SN-2", swap), claim("SN-9", clone)}, 2},
		{"refused before the check, twice", []Event{early, early}, 1},
		{"refused before the check, another board", []Event{early, {Kind: EventBoardRefused, Serial: "SN-8", Payload: early.Payload}}, 2},
		{"claims refused for a board with a record", []Event{claim("SN-1", `{"reason":"already_provisioned"}`),
			claim("SN-3", `{"reason":"in_progress_elsewhere"}`), claim("SN-4", `{"reason":"stopped"}`)}, 0},
		{"other events", []Event{{Kind: EventBoardClaimed, Serial: "SN-1", Payload: []byte(`{}`)}}, 0},
		{"unreadable payloads", []Event{claim("SN-9", `{`), {Seq: 4, Kind: EventBoardRefused, Serial: "SN-7", Payload: []byte(`{`)},
			{Seq: 5, Kind: EventBoardRefused, Serial: "SN-7", Payload: []byte(`{`)}}, 2},
	} {
		if got := CountRefused(c.events); got != c.want {
			t.Errorf("%s: CountRefused = %d, want %d", c.name, got, c.want)
		}
	}
}
