package tui

import (
	"fmt"
	"strings"
	"time"

	"github.com/rivo/tview"

	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station/progress"
)

// Rendering: pure functions from state to lines of tview-tagged text, each fitting its width. Colour is
// a parameter; without it (NO_COLOR) PASS and FAIL stand out by shape and reverse video alone.

// theme holds the style tags for one colour mode.
type theme struct {
	pass, fail, warn, dim, bold, reset, banPass, banFail, focus string
}

func themeFor(color bool) theme {
	if color {
		return theme{pass: "[green::b]", fail: "[red::b]", warn: "[yellow::b]", dim: "[gray::-]", bold: "[::b]",
			reset: "[-:-:-]", banPass: "[black:green:b]", banFail: "[white:red:b]", focus: "[yellow::b]"}
	}
	return theme{pass: "[::b]", fail: "[::b]", warn: "[::b]", dim: "[::d]", bold: "[::b]",
		reset: "[-:-:-]", banPass: "[::rb]", banFail: "[::rb]", focus: "[::rb]"}
}

// bigFont draws the banner words three rows high, four cells a letter.
var bigFont = map[rune][3]string{
	'P': {"█▀▀█", "█▄▄█", "█   "},
	'A': {"▄▀▀▄", "█▄▄█", "█  █"},
	'S': {"▄▀▀▀", " ▀▀▄", "▄▄▄▀"},
	'F': {"█▀▀▀", "█▀▀ ", "█   "},
	'I': {"█", "█", "█"},
	'L': {"█   ", "█   ", "█▄▄▄"},
}

// bigWord renders word in bigFont (letters missing from the font are skipped).
func bigWord(word string) [3]string {
	var rows [3]string
	for i, r := range word {
		g, ok := bigFont[r]
		if !ok {
			continue
		}
		for j := range rows {
			if i > 0 {
				rows[j] += " "
			}
			rows[j] += g[j]
		}
	}
	return rows
}

// width is the number of cells s takes (s holds no tags).
func width(s string) int { return tview.TaggedStringWidth(tview.Escape(s)) }

// fit cuts s (plain text) to w cells, ending with "…" when cut.
func fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if width(s) <= w {
		return s
	}
	r := []rune(s)
	for len(r) > 0 && width(string(r))+1 > w {
		r = r[:len(r)-1]
	}
	return string(r) + "…"
}

// pad centres s (plain text) in w cells.
func center(s string, w int) string {
	s = fit(s, w)
	left := (w - width(s)) / 2
	right := w - width(s) - left
	return strings.Repeat(" ", left) + s + strings.Repeat(" ", right)
}

// spread puts left and right on one line of w cells (right cut first).
func spread(left, right string, w int) string {
	left = fit(left, w)
	gap := w - width(left) - width(right)
	if gap < 1 {
		return left
	}
	return left + strings.Repeat(" ", gap) + right
}

// wrap word-wraps plain text to w cells, at most max lines (the last cut with "…").
func wrap(text string, w, max int) []string {
	if w <= 0 || max <= 0 {
		return nil
	}
	var lines []string
	cur := ""
	for _, word := range strings.Fields(text) {
		switch {
		case cur == "":
			cur = word
		case width(cur)+1+width(word) <= w:
			cur += " " + word
		default:
			lines = append(lines, cur)
			cur = word
		}
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	for i := range lines {
		lines[i] = fit(lines[i], w)
	}
	if len(lines) > max {
		lines = append(lines[:max-1], fit(strings.Join(lines[max-1:], " "), w))
	}
	return lines
}

// progressBar draws done of total steps in w cells: "██████░░░░  7/18".
func progressBar(done, total, w int) string {
	label := fmt.Sprintf(" %d/%d", done, total)
	bw := w - len(label)
	if bw < 3 {
		return fit(strings.TrimSpace(label), w)
	}
	if done > total {
		done = total
	}
	full := 0
	if total > 0 {
		full = done * bw / total
	}
	return strings.Repeat("█", full) + strings.Repeat("░", bw-full) + label
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0.0 s"
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// slotTitle is the panel's border title; the focused slot is marked so it shows without colour too.
func slotTitle(s *slotState, focused bool) string {
	if focused {
		return fmt.Sprintf("▶ Slot %d ", s.ID)
	}
	return fmt.Sprintf(" Slot %d ", s.ID)
}

// renderSlot renders a slot panel's inside: w cells wide, at most h lines.
func renderSlot(s *slotState, w, h int, now time.Time, color bool) []string {
	if w <= 0 || h <= 0 {
		return nil
	}
	t := themeFor(color)
	esc := tview.Escape
	var lines []string
	add := func(tag, text string) { lines = append(lines, tag+esc(text)+t.reset) }

	elapsed := s.Elapsed
	if s.Status == slotRunning || s.Status == slotAborting {
		elapsed = now.Sub(s.Started)
	}
	switch s.Status {
	case slotLoading:
		add(t.dim, fit("putting a board in…", w))
		return clip(lines, h)
	case slotNoBoard:
		add(t.warn, fit("NO BOARD", w))
		for _, l := range wrap(s.Message, w, h-1) {
			add("", l)
		}
		return clip(lines, h)
	case slotReady:
		add(t.bold, fit("ready: scan a serial", w))
		if s.Note != "" {
			for _, l := range wrap(s.Note, w, h-1) {
				add(t.warn, l)
			}
		}
		return clip(lines, h)
	}

	serial := s.Serial
	if s.Rework {
		serial += " (rework)"
	}
	lines = append(lines, t.bold+esc(spread(serial, fmtDuration(elapsed), w))+t.reset)
	lines = append(lines, esc(progressBar(s.Done, len(progress.Steps), w)))

	switch s.Status {
	case slotRunning, slotAborting:
		step := s.Step
		if step == "" {
			step = "starting"
		}
		add("", fit(fmt.Sprintf("step %d/%d: %s", min(s.Done+1, len(progress.Steps)), len(progress.Steps), step), w))
		if s.Status == slotAborting {
			add(t.warn, fit("aborting at the next safe point", w))
		}
		return clip(lines, h)
	}

	word, ban, fg := "PASS", t.banPass, t.pass
	var code, reason, next string
	if s.Status == slotPassed {
		reason = "IAK and IDevID certified and written"
		next = "remove the board; scan the next serial"
	} else {
		word, ban, fg = "FAIL", t.banFail, t.fail
		if f := s.Failure; f != nil {
			code, reason, next = f.Code, f.Text, f.Next
		}
		if s.LastStep != "" && h-len(lines) >= 8 {
			reason = "at " + s.LastStep + ": " + reason
		}
	}
	rest := h - len(lines)
	// Three-row letters when they leave room for the reason, otherwise one reverse-video bar.
	if rows := bigWord(word); rest >= 7 && w >= width(rows[0])+2 {
		for _, r := range rows {
			lines = append(lines, fg+esc(center(r, w))+t.reset)
		}
		if code != "" {
			add(fg, center(code, w))
		}
	} else {
		banner := word
		if code != "" {
			banner += " · " + code
		}
		lines = append(lines, ban+esc(center(banner, w))+t.reset)
	}
	rest = h - len(lines)
	if rest <= 0 {
		return clip(lines, h)
	}
	// The reason (what happened, naming the board) comes first; the next action gets what is left.
	rl := wrap(reason, w, max(1, rest-1))
	for _, l := range rl {
		add("", l)
	}
	if left := rest - len(rl); left > 0 && next != "" {
		for _, l := range wrap("→ "+next, w, left) {
			add(fg, l)
		}
	}
	return clip(lines, h)
}

func clip(lines []string, h int) []string {
	if len(lines) > h {
		return lines[:h]
	}
	return lines
}

// renderHeader is the top line: the batch first (what the operator works on), then who, then where.
func renderHeader(title, operator string, b *records.BatchSummary, w int, color bool) string {
	t := themeFor(color)
	batch := "no batch: F8 to open one"
	if b != nil {
		batch = fmt.Sprintf("batch %s · %s · WO %s", b.ID, b.Product, b.WorkOrder)
		if b.State != "open" {
			batch += " (closed: F8)"
		}
	}
	parts := []string{batch}
	if operator != "" {
		parts = append(parts, "operator "+operator)
	}
	parts = append(parts, title)
	line := ""
	for _, p := range parts {
		next := p
		if line != "" {
			next = line + " │ " + p
		}
		if width(next) > w && line != "" {
			break
		}
		line = next
	}
	return t.bold + tview.Escape(fit(line, w)) + t.reset
}

// renderCounters is the batch counter line.
func renderCounters(c Counters, running int, w int, color bool) string {
	t := themeFor(color)
	done := fmt.Sprintf("done %d", c.Done)
	if c.Quantity > 0 {
		done = fmt.Sprintf("done %d/%d", c.Done, c.Quantity)
	}
	yield := "yield -"
	if c.HasYield {
		yield = fmt.Sprintf("yield %.1f%%", c.Yield)
	}
	median := "median -"
	if c.Median > 0 {
		median = "median " + fmtDuration(c.Median)
	}
	// A board refused before it had a record (a clone) failed and was set aside like a stopped one.
	failed := fmt.Sprintf("failed %d", c.Failed+c.Stopped+c.Refused)
	if aside := c.Stopped + c.Refused; aside > 0 {
		failed += fmt.Sprintf(" (%d set aside)", aside)
	}
	parts := []string{done, fmt.Sprintf("passed %d", c.Passed), failed, yield,
		fmt.Sprintf("%.0f u/h", c.UnitsPerHour), median, fmt.Sprintf("running %d", running)}
	// Two spaces between the numbers when they fit, one when not, then the least needed go first.
	line := strings.Join(parts, "  ")
	for sep := " "; width(line) > w && len(parts) > 1; parts = parts[:len(parts)-1] {
		if line = strings.Join(parts, sep); width(line) <= w {
			break
		}
	}
	s := tview.Escape(fit(line, w))
	if c.Quantity > 0 && c.Done >= c.Quantity {
		return t.pass + s + t.reset
	}
	return s
}

// renderLogLine is one event log line.
func renderLogLine(at time.Time, line string, color bool) string {
	t := themeFor(color)
	tag := ""
	switch {
	case strings.Contains(line, "  PASS  "):
		tag = t.pass
	case strings.Contains(line, "  FAIL  "):
		tag = t.fail
	}
	return t.dim + at.Format("15:04:05") + t.reset + " " + tag + tview.Escape(line) + t.reset
}

// footerKeys are the line view's keys, in the order the footer lists them.
var footerKeys = []struct{ key, what string }{
	{"F1", "help"}, {"F2", "start"}, {"F3", "retry"}, {"F4", "abort"}, {"F5", "rework"},
	{"F6", "clear"}, {"F7", "clone"}, {"F8", "batch"}, {"F9", "QA"}, {"F10", "quit"},
}

// renderFooter lists the keys that fit in w cells; clone only where the fixture can clone.
func renderFooter(w int, clone bool, color bool) string {
	t := themeFor(color)
	var b strings.Builder
	used := 0
	for _, k := range footerKeys {
		if k.key == "F7" && !clone {
			continue
		}
		item := k.key + " " + k.what
		n := width(item)
		if used > 0 {
			n++
		}
		if used+n > w {
			break
		}
		if used > 0 {
			b.WriteString(" ")
		}
		b.WriteString(t.bold + k.key + t.reset + " " + k.what)
		used += n
	}
	return b.String()
}

// batchRow is one QA table row: the batch and its counts.
func batchRow(b records.BatchSummary) []string {
	yield := "-"
	if y, ok := Yield(b.Passed, b.Done); ok {
		yield = fmt.Sprintf("%.1f%%", y)
	}
	qty := "-"
	if b.Quantity > 0 {
		qty = fmt.Sprint(b.Quantity)
	}
	return []string{b.ID, b.Product, b.WorkOrder, b.State, qty, fmt.Sprint(b.Done), fmt.Sprint(b.Passed),
		fmt.Sprint(b.Failed), fmt.Sprint(b.Stopped + b.Refused), fmt.Sprint(b.InProgress), yield, b.OpenedAt.Local().Format("2006-01-02 15:04")}
}

// batchColumns are the QA table's headings, matching batchRow.
var batchColumns = []string{"batch", "product", "work order", "state", "qty", "done", "passed", "failed", "set aside", "in prog.", "yield", "opened"}

// helpText is the help screen.
func helpText(clone bool) string {
	var b strings.Builder
	b.WriteString(`LINE VIEW
  Scan a serial      the scanner types it and Enter: it goes to a slot with a fresh board (the
                     focused one first), else to the focused slot if its board ended, else to
                     the slot that passed longest ago (a failed slot only when focused)
  Tab / Shift-Tab    move between slots (also Up / Down)
  F2                 start the focused slot with the serial typed in the scan field
                     (with the field empty: run the focused slot's serial again)
  F3                 retry the focused slot's board (same serial, same board)
  F4                 abort the focused slot's run (it stops at the next safe point)
  F5                 rework the focused slot's board: asks for a supervisor's badge
  F6                 clear the focused slot: the board left the fixture, put the next one in
`)
	if clone {
		b.WriteString(`  F7                 demo: put a clone of the last passed board's TPM into the focused slot;
                     scanning a new serial into it must FAIL (EK already bound to serial X)
`)
	}
	b.WriteString(`  F8                 batch: open a new batch, switch batch, close the batch
  F9                 QA view: batches and their counts
  F1 or ?            this help (? only with the scan field empty)
  F10 or Ctrl-C      quit (asks first when boards are running)
  PgUp / PgDn        scroll the event log
  Esc                clear the scan field; close a dialog

PASS   the board's IAK and IDevID are created, certified by the CA and written to its TPM.
       Remove it and scan the next serial.
FAIL   the panel says why (reason code: text) and what to do next (→ ...).
       Do what it says: retry (F3), set the board aside for QA, or ask a supervisor for a rework (F5).

Esc or F1 closes this help.`)
	return b.String()
}
