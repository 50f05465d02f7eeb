package records

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// Counts are a batch's numbers as every surface shows them: the line view, the QA view, the close-batch
// dialog, `batch list` and `batch show`, and each report form. They are computed here and only here, so
// QA never signs two different figures for the same batch.
//
// The definitions:
//   - Passed: boards provisioned.
//   - Failed: boards that failed and may be retried (state failed).
//   - Stopped: boards the station stopped (state stopped: a TPM not accepted, an EK mismatch, an abort);
//     only a rework takes them again.
//   - Refused: boards turned away before they had a record of their own (a clone, a swapped part, a board
//     refused before its inventory check), one per refused board, however often it was scanned
//     (CountRefused says which refusals are the same board).
//   - SetAside = Stopped + Refused: boards that go to QA rather than back into the line.
//   - Done = Passed + Failed + SetAside: every board that reached an end.
//   - Yield = Passed / Done, in percent, once Done > 0.
//   - InProgress: boards still running (or left running by a crash); not done.
type Counts struct {
	Quantity   int
	Passed     int
	Failed     int
	Stopped    int
	Refused    int
	InProgress int
	SetAside   int
	Done       int
	// Yield is Passed over Done in percent; HasYield is false while nothing is done.
	Yield    float64
	HasYield bool
	// Over is how many boards are done beyond the planned quantity (0 when none is planned).
	Over int
}

// CountBatch computes a batch's Counts from its boards' states and the number of refusals.
func CountBatch(quantity int, states []BoardState, refused int) Counts {
	var passed, failed, stopped, inProgress int
	for _, s := range states {
		switch s {
		case StateProvisioned:
			passed++
		case StateFailed:
			failed++
		case StateStopped:
			stopped++
		default:
			inProgress++
		}
	}
	return newCounts(quantity, passed, failed, stopped, refused, inProgress)
}

func newCounts(quantity, passed, failed, stopped, refused, inProgress int) Counts {
	c := Counts{Quantity: quantity, Passed: passed, Failed: failed, Stopped: stopped, Refused: refused, InProgress: inProgress}
	c.SetAside = c.Stopped + c.Refused
	c.Done = c.Passed + c.Failed + c.SetAside
	if c.Done > 0 {
		c.Yield, c.HasYield = 100*float64(c.Passed)/float64(c.Done), true
	}
	if c.Quantity > 0 && c.Done > c.Quantity {
		c.Over = c.Done - c.Quantity
	}
	return c
}

// CountRefused is Counts.Refused from a batch's refusal events (EventClaimRefused, EventBoardRefused; other
// events are ignored): one per refused board, not one per scan. A board scanned again after its refusal is
// refused again, and counting each scan would put one clone twice into set aside and done. The same board
// is:
//   - a clone (EK bound to another serial): the same EK colliding with the same other serial, under
//     whatever serial it was scanned (the copied TPM is the board, its label is not);
//   - a swapped part (serial bound to another EK): the same serial with the same EK;
//   - a board refused before its inventory check: the same serial for the same reason.
//
// Other refused claims (a board in progress elsewhere, already provisioned, already stopped) are not counted:
// the board has a record of its own and is counted by its state.
func CountRefused(events []Event) int {
	seen := map[string]bool{}
	for _, e := range events {
		var p struct {
			Reason      string `json:"reason"`
			Code        string `json:"code"`
			EK          string `json:"ek_pub_sha256"`
			OtherSerial string `json:"other_serial"`
		}
		// A payload that does not parse still is a refusal; it counts on its own (its sequence number).
		bad := json.Unmarshal(e.Payload, &p) != nil
		var key string
		switch {
		case e.Kind == EventBoardRefused && bad:
			key = fmt.Sprintf("event %d", e.Seq)
		case e.Kind == EventBoardRefused:
			key = fmt.Sprintf("refused %q %q", p.Code, e.Serial)
		case e.Kind != EventClaimRefused || bad:
			continue
		case p.Reason == "ek_bound_to_other_serial":
			key = fmt.Sprintf("clone %q %q", p.EK, p.OtherSerial)
		case p.Reason == "serial_bound_to_other_ek":
			key = fmt.Sprintf("swap %q %q", e.Serial, p.EK)
		default:
			continue
		}
		seen[key] = true
	}
	return len(seen)
}

// Counts are the summary's numbers by the one definition (the inventory counts boards by state and
// refusals; Done and the rest follow from those here).
func (b BatchSummary) Counts() Counts {
	return newCounts(b.Quantity, b.Passed, b.Failed, b.Stopped, b.Refused, b.InProgress)
}

// YieldText is the yield as shown everywhere: "80.0%", or "-" while nothing is done.
func (c Counts) YieldText() string {
	if !c.HasYield {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", c.Yield)
}

// DoneText is "done of quantity" ("9/8"), or the done count alone when no quantity is planned.
func (c Counts) DoneText() string {
	if c.Quantity > 0 {
		return fmt.Sprintf("%d/%d", c.Done, c.Quantity)
	}
	return fmt.Sprint(c.Done)
}

// OverWarning is the warning for a batch done beyond its quantity, "" when it is not.
func (c Counts) OverWarning() string {
	if c.Over == 0 {
		return ""
	}
	return fmt.Sprintf("%d over the batch quantity of %d: check the work order", c.Over, c.Quantity)
}

// Line is the counts in one line of text, the same words on every surface:
// "done 5/8  passed 4  failed 0  set aside 1 (0 stopped, 1 refused)  yield 80.0%".
func (c Counts) Line() string {
	s := fmt.Sprintf("done %s  passed %d  failed %d  set aside %d (%d stopped, %d refused)  in progress %d  yield %s",
		c.DoneText(), c.Passed, c.Failed, c.SetAside, c.Stopped, c.Refused, c.InProgress, c.YieldText())
	if w := c.OverWarning(); w != "" {
		s += "  WARNING " + w
	}
	return s
}

// Operator figures: a rate or a median from too few boards or too short a span says nothing, so a
// figure is shown only with at least MinFigureBoards boards or MinFigureSpan of work behind it.
const (
	MinFigureBoards = 5
	MinFigureSpan   = 2 * time.Minute
)

// FiguresOK says whether boards finished over span are enough for a rate or a median to mean something:
// at least MinFigureBoards boards, or at least one over MinFigureSpan. The line view and the reports ask
// the same question.
func FiguresOK(boards int, span time.Duration) bool {
	return boards > 0 && (boards >= MinFigureBoards || span >= MinFigureSpan)
}

// Figures are the line's speed: units per hour and median cycle time, each valid only when OK.
type Figures struct {
	UnitsPerHour float64
	Median       time.Duration
	OK           bool
}

// LineFigures computes the figures from the cycle times of the boards that passed and the span of work
// from the first start to the last end. With fewer than MinFigureBoards boards and a span under
// MinFigureSpan they are not OK (shown as a dash).
func LineFigures(cycles []time.Duration, span time.Duration) Figures {
	n := len(cycles)
	if !FiguresOK(n, span) {
		return Figures{}
	}
	f := Figures{Median: Median(cycles), OK: true}
	if span > 0 {
		f.UnitsPerHour = float64(n) / span.Hours()
	}
	return f
}

// RateText is the units per hour as shown ("412 u/h"), "- u/h" when not OK.
func (f Figures) RateText() string {
	if !f.OK || f.UnitsPerHour <= 0 {
		return "- u/h"
	}
	return fmt.Sprintf("%.0f u/h", f.UnitsPerHour)
}

// MedianText is the median cycle time as shown ("median 5.2 s"), "median -" when not OK.
func (f Figures) MedianText() string {
	if !f.OK {
		return "median -"
	}
	return "median " + FormatDuration(f.Median)
}

// Median is the median of ds (the mean of the middle two for an even count); 0 for none.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// FormatDuration is how every surface prints a board's time: milliseconds under a second ("87 ms",
// never "0.0 s"), tenths of a second under a minute ("5.2 s"), then minutes and hours.
func FormatDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0 ms"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < time.Minute:
		// Tenths, truncated so that 59.96 s never prints as "60.0 s".
		return fmt.Sprintf("%.1f s", float64(d.Truncate(100*time.Millisecond))/float64(time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}
