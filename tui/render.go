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
	case slotRetiring:
		add(t.bold, fit(s.Serial, w))
		add("", fit(s.Step+": revoking at the CA, clearing the TPM…", w))
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
	lines = append(lines, t.bold+esc(spread(serial, records.FormatDuration(elapsed), w))+t.reset)
	total := len(s.steps())
	lines = append(lines, esc(progressBar(s.Done, total, w)))

	switch s.Status {
	case slotRunning, slotAborting:
		step := s.Step
		switch {
		case step == progress.StepRecord:
			add("", fit("recording the board", w))
		default:
			if step == "" {
				step = "starting"
			}
			add("", fit(fmt.Sprintf("step %d/%d: %s", min(s.Done+1, total), total, step), w))
		}
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
	// The next action is what the operator acts on, so it is shown whole where it fits beside at least one
	// line of the reason (which then gets the lines left). Where it cannot be whole anyway, the reason (what
	// happened, naming the other serial) comes first and the next action gets what is left.
	var nl, rl []string
	if next != "" {
		if whole := wrap("→ "+next, w, rest); len(whole) < rest && !strings.HasSuffix(whole[len(whole)-1], "…") {
			nl = whole
		}
	}
	if nl != nil || next == "" {
		rl = wrap(reason, w, max(1, rest-len(nl)))
	} else {
		rl = wrap(reason, w, max(1, rest-1))
		nl = wrap("→ "+next, w, max(0, rest-len(rl)))
	}
	for _, l := range rl {
		add("", l)
	}
	for _, l := range nl {
		if len(lines) < h {
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

// renderHeader is the top line: the batch first (what the operator works on), then who, then where. The
// station is named even where the operator's name does not fit; a work order that is the batch ID is not
// said twice.
func renderHeader(title, operator string, b *records.BatchSummary, w int, color bool) string {
	t := themeFor(color)
	batch := "no batch: F8 to open one"
	if b != nil {
		batch = fmt.Sprintf("batch %s · %s", b.ID, b.Product)
		if b.WorkOrder != "" && b.WorkOrder != b.ID {
			batch += " · WO " + b.WorkOrder
		}
		if b.State != "open" {
			batch += " (closed: F8)"
		}
	}
	join := func(parts ...string) string { return strings.Join(parts, " │ ") }
	line := join(batch, title)
	if operator != "" {
		if all := join(batch, "operator "+operator, title); width(all) <= w {
			line = all
		}
	}
	if width(line) > w {
		// Cut the batch's words before dropping the station's name.
		if room := w - width(title) - 3; room >= 12 {
			line = join(fit(batch, room), title)
		} else {
			line = batch
		}
	}
	return t.bold + tview.Escape(fit(line, w)) + t.reset
}

// renderCounters is the batch counter line: the numbers of records.Counts in its words, the figures a
// dash until they mean something; over the quantity it warns.
func renderCounters(c Counters, running int, w int, color bool) string {
	t := themeFor(color)
	done := "done " + c.DoneText()
	if c.Over > 0 {
		done += fmt.Sprintf(" (%d OVER)", c.Over)
	}
	parts := []string{done, fmt.Sprintf("passed %d", c.Passed), fmt.Sprintf("failed %d", c.Failed),
		fmt.Sprintf("set aside %d", c.SetAside), "yield " + c.YieldText(), c.Figures.RateText(), c.Figures.MedianText(),
		fmt.Sprintf("running %d", running)}
	// Two spaces between the numbers when they fit, one when not, then the least needed go first.
	line := strings.Join(parts, "  ")
	for sep := " "; width(line) > w && len(parts) > 1; parts = parts[:len(parts)-1] {
		if line = strings.Join(parts, sep); width(line) <= w {
			break
		}
	}
	s := tview.Escape(fit(line, w))
	switch {
	case c.Over > 0:
		return t.warn + s + t.reset
	case c.Quantity > 0 && c.Done >= c.Quantity:
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

// footerKeys are the line view's keys, in the order the footer lists them; keep is the order in which
// they are kept when not all fit (quit and help first: an operator must always see how to leave and
// where the rest is; QA, which help lists, goes first).
var footerKeys = []struct {
	key, what string
	keep      int
}{
	{"F1", "help", 1}, {"F2", "start", 2}, {"F3", "retry", 3}, {"F4", "abort", 4}, {"F5", "rework", 6},
	{"F6", "clear", 5}, {"F7", "clone", 8}, {"F8", "batch", 7}, {"F9", "QA", 9}, {"F10", "quit", 0},
}

// renderFooter lists the keys that fit in w cells, quit always among them; clone only where the fixture
// can clone.
func renderFooter(w int, clone bool, color bool) string {
	t := themeFor(color)
	type item struct {
		key, what string
		keep      int
	}
	var items []item
	for _, k := range footerKeys {
		if k.key == "F7" && !clone {
			continue
		}
		items = append(items, item{k.key, k.what, k.keep})
	}
	size := func(its []item) int {
		n := 0
		for i, it := range its {
			if i > 0 {
				n++
			}
			n += width(it.key + " " + it.what)
		}
		return n
	}
	for size(items) > w && len(items) > 1 {
		drop := 0
		for i := range items {
			if items[i].keep > items[drop].keep {
				drop = i
			}
		}
		items = append(items[:drop], items[drop+1:]...)
	}
	var b strings.Builder
	for i, it := range items {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(t.bold + it.key + t.reset + " " + it.what)
	}
	if size(items) > w {
		return t.bold + "F10" + t.reset + " quit"
	}
	return b.String()
}

// batchRow is one QA table row: the batch and its counts (records.Counts).
func batchRow(b records.BatchSummary) []string {
	c := b.Counts()
	qty := "-"
	if c.Quantity > 0 {
		qty = fmt.Sprint(c.Quantity)
	}
	done := fmt.Sprint(c.Done)
	if c.Over > 0 {
		done += " OVER"
	}
	return []string{b.ID, b.Product, b.WorkOrder, b.State, qty, done, fmt.Sprint(c.Passed), fmt.Sprint(c.Failed),
		fmt.Sprint(c.SetAside), fmt.Sprint(c.InProgress), c.YieldText(), b.OpenedAt.Local().Format("2006-01-02 15:04")}
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
  F5                 rework the focused slot's board, or take it out of service (RMA, deprovision):
                     asks for a supervisor's badge (and the reason for an RMA or a deprovision)
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
