package tui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station/progress"
)

// Page names.
const (
	pageSignIn   = "signin"
	pageBatch    = "batch"
	pageNewBatch = "newbatch"
	pageLine     = "line"
	pageQA       = "qa"
	pageHelp     = "help"
	pageModal    = "modal"
)

// App is the operator terminal.
type App struct {
	cfg   Config
	now   func() time.Time
	app   *tview.Application
	pages *tview.Pages
	m     *lineModel

	// line view widgets
	line   *lineView
	log    *tview.TextView
	scan   *tview.InputField
	footer *tview.Box
	notice string // replaces the footer's key list until the next key
	logged bool   // the log has a line

	// screens
	signin   *tview.InputField
	batches  *tview.List
	batchMsg *tview.TextView
	newBatch *tview.Form
	newMsg   *tview.TextView
	qa       *tview.Table
	qaMsg    *tview.TextView
	qaRows   []records.BatchSummary

	ctx     context.Context
	cancel  context.CancelFunc
	cancels map[int]context.CancelFunc // per slot: the running board's context
	runs    sync.WaitGroup             // every goroutine that calls the station or the fixture
	busy    atomic.Int32               // slots running, for the ticker (the model is UI-only)

	// The inbound queue: station events and goroutine results, applied in order on the UI goroutine.
	qmu   sync.Mutex
	queue []func()
	wake  chan struct{}
	done  chan struct{}
}

// New builds the terminal; Run shows it.
func New(cfg Config) *App {
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	if cfg.Tick == 0 {
		cfg.Tick = 500 * time.Millisecond
	}
	// The top line names the station (docs/operator.md), whatever else the title says.
	if id := cfg.Station.ID(); cfg.Title == "" {
		cfg.Title = "station " + id
	} else if !strings.Contains(cfg.Title, id) {
		cfg.Title = "station " + id + " " + cfg.Title
	}
	a := &App{cfg: cfg, now: cfg.Now, m: newLineModel(cfg.Fixture.Slots()), cancels: map[int]context.CancelFunc{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	a.m.operator = cfg.Operator
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.build()
	return a
}

// Event feeds one station event to the terminal. Safe from any goroutine and never blocks, so it can be
// the station's OnEvent.
func (a *App) Event(e progress.Event) {
	if e.Time.IsZero() {
		e.Time = a.now()
	}
	a.post(func() {
		if line := a.m.apply(e); line != "" {
			a.logLine(e.Time, line)
		}
		if e.Kind == progress.EvPassed || e.Kind == progress.EvFailed {
			a.refreshBatch()
		}
	})
}

// post queues f to run on the UI goroutine; the pump hands the queue to tview in one QueueUpdateDraw.
func (a *App) post(f func()) {
	a.qmu.Lock()
	a.queue = append(a.queue, f)
	a.qmu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *App) pump() {
	for {
		select {
		case <-a.done:
			return
		case <-a.wake:
		}
		a.app.QueueUpdateDraw(a.drain)
	}
}

func (a *App) drain() {
	a.qmu.Lock()
	q := a.queue
	a.queue = nil
	a.qmu.Unlock()
	for _, f := range q {
		f()
	}
	a.busy.Store(int32(a.m.running()))
}

// goDo runs f in a tracked goroutine (station and fixture calls block).
func (a *App) goDo(f func()) {
	a.runs.Add(1)
	go func() {
		defer a.runs.Done()
		f()
	}()
}

// SetScreen makes the terminal draw on screen instead of the real terminal (tests use a simulation
// screen); call it before Run.
func (a *App) SetScreen(screen tcell.Screen) { a.app.SetScreen(screen) }

// ScreenText is what a simulation screen shows, as lines of plain text, read on the UI goroutine (the
// simulation screen hands out its live cell buffer). It is how tests outside this package read the real
// screens (cmd/station drives a batch through the real station and compares every surface's counts); the
// terminal must be running (Run).
func ScreenText(a *App, screen tcell.SimulationScreen) string {
	var b strings.Builder
	a.app.QueueUpdate(func() {
		cells, w, ht := screen.GetContents()
		for y := 0; y < ht; y++ {
			for x := 0; x < w; x++ {
				c := cells[y*w+x]
				if len(c.Runes) == 0 {
					b.WriteByte(' ')
					continue
				}
				b.WriteString(string(c.Runes))
			}
			b.WriteByte('\n')
		}
	})
	return b.String()
}

// Run shows the terminal until the operator quits or ctx ends. Boards still running are aborted on the way
// out and waited for (at most wait), so their records end in a known state.
func (a *App) Run(ctx context.Context, wait time.Duration) error {
	go a.pump()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	stopCtx := context.AfterFunc(ctx, a.app.Stop)
	defer stopCtx()
	if a.cfg.Tick > 0 {
		go a.tick()
	}
	// Boards into every slot, in parallel (the demo starts a simulated board per slot).
	for _, s := range a.m.slots {
		a.newPart(s, false)
	}
	if a.m.operator == "" {
		a.pages.SwitchToPage(pageSignIn)
	} else {
		a.showBatches()
	}
	err := a.app.Run()
	close(a.done)
	a.cancel()
	finished := make(chan struct{})
	go func() { a.runs.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(wait):
	}
	return err
}

func (a *App) tick() {
	t := time.NewTicker(a.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-a.done:
			return
		case <-t.C:
			if a.busy.Load() > 0 {
				a.post(func() {})
			}
		}
	}
}

// build makes every screen.
func (a *App) build() {
	a.app = tview.NewApplication()
	a.pages = tview.NewPages()

	// The log wraps: a line cut at the screen's edge would hide what an operator reads it for (a batch's
	// quantity, a failure's reason).
	a.log = tview.NewTextView().SetDynamicColors(true).SetScrollable(true).SetMaxLines(1000).SetWrap(true).SetWordWrap(true)
	a.log.SetChangedFunc(func() {})
	a.scan = tview.NewInputField().SetLabel("Scan ▸ ").SetFieldWidth(0)
	a.scan.SetDoneFunc(func(k tcell.Key) {
		if k == tcell.KeyEnter {
			a.scanned(a.scan.GetText(), false)
		}
	})
	if !a.cfg.Color {
		a.scan.SetFieldStyle(tcell.StyleDefault.Reverse(true)).SetLabelStyle(tcell.StyleDefault.Bold(true))
	}
	a.line = &lineView{Box: tview.NewBox(), a: a}
	a.footer = tview.NewBox()
	a.footer.SetDrawFunc(func(screen tcell.Screen, x, y, w, h int) (int, int, int, int) {
		t := themeFor(a.cfg.Color)
		text := renderFooter(w, a.canClone(), a.cfg.Color)
		if a.notice != "" {
			text = t.warn + tview.Escape(fit(a.notice, w)) + t.reset
		}
		tview.Print(screen, text, x, y, w, tview.AlignLeft, tview.Styles.PrimaryTextColor)
		return x, y, w, h
	})
	lineFlex := tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(a.line, 0, 1, false).
		AddItem(a.scan, 1, 0, true).
		AddItem(a.footer, 1, 0, false)

	a.buildSignIn()
	a.buildBatchScreens()
	a.buildQA()

	a.pages.AddPage(pageLine, lineFlex, true, true)
	a.pages.AddPage(pageBatch, a.batchPage(), true, false)
	a.pages.AddPage(pageNewBatch, a.newBatchPage(), true, false)
	a.pages.AddPage(pageQA, a.qaPage(), true, false)
	a.pages.AddPage(pageSignIn, a.signInPage(), true, false)
	a.app.SetRoot(a.pages, true).SetInputCapture(a.capture)
}

func (a *App) canClone() bool {
	_, ok := a.cfg.Fixture.(Cloner)
	return ok
}

// logLine appends one line to the event log (UI goroutine).
func (a *App) logLine(at time.Time, line string) {
	if a.logged {
		fmt.Fprint(a.log, "\n")
	}
	a.logged = true
	fmt.Fprint(a.log, renderLogLine(at, line, a.cfg.Color))
	a.log.ScrollToEnd()
}

// say shows a one-line notice in the footer and logs it.
func (a *App) say(format string, args ...any) {
	a.notice = fmt.Sprintf(format, args...)
	a.logLine(a.now(), a.notice)
}

// refreshBatch reloads the current batch's counts from the progress.
func (a *App) refreshBatch() {
	if a.m.batch == nil {
		return
	}
	id := a.m.batch.ID
	a.goDo(func() {
		list, err := a.cfg.Station.ListBatches(a.ctx, "")
		a.post(func() {
			if err != nil {
				a.say("batch counts: %v", err)
				return
			}
			for i := range list {
				if list[i].ID == id && a.m.batch != nil && a.m.batch.ID == id {
					b := list[i]
					before, after := a.m.batch.Counts(), b.Counts()
					a.m.batch = &b
					switch {
					case after.Over > before.Over:
						a.say("batch %s: done %s, %s", b.ID, after.DoneText(), after.OverWarning())
					case after.Quantity > 0 && before.Done < after.Quantity && after.Done >= after.Quantity:
						a.say("batch %s complete: done %s, %d passed; F8 to close it", b.ID, after.DoneText(), after.Passed)
					}
				}
			}
		})
	})
}

// setBatch makes b the line's batch.
func (a *App) setBatch(b *records.Batch) {
	a.m.batch = &records.BatchSummary{Batch: *b}
	a.refreshBatch()
}

// scanned handles a serial from the scanner (or typed and Enter); focused forces the focused slot.
func (a *App) scanned(text string, focused bool) {
	serial := strings.TrimSpace(text)
	a.scan.SetText("")
	if serial == "" {
		return
	}
	if a.m.batch == nil || a.m.batch.State != "open" {
		a.say("scan %s refused: no open batch; press F8 to open or choose one", serial)
		return
	}
	if err := a.cfg.Station.CheckSerial(a.m.batch.Product, serial); err != nil {
		a.say("scan refused: %v; check the label and scan again", err)
		return
	}
	if s := a.m.serialIn(serial); s != nil {
		a.say("%s is already running in slot %d", serial, s.ID)
		return
	}
	var s *slotState
	if focused {
		if s = a.m.focused(); s == nil || !s.free() {
			a.say("slot %d is not free: wait for it or clear it (F6)", a.m.focused().ID)
			return
		}
	} else {
		var err error
		if s, err = a.m.pickSlot(); err != nil {
			a.say("scan %s: %v", serial, err)
			return
		}
	}
	a.launch(s, serial, "", s.Used)
}

// launch starts a board in slot s (UI goroutine). newPart first puts a fresh board into the fixture.
// launch runs a board in slot s; a supervisor's badge makes it a rework.
func (a *App) launch(s *slotState, serial, supervisor string, newPart bool) {
	rework := supervisor != ""
	a.notice = ""
	ctx, cancel := context.WithCancel(a.ctx)
	s.Run++
	run, slot, batch := s.Run, s.ID, a.m.batch.ID
	*s = slotState{ID: s.ID, Run: s.Run, Status: slotRunning, Serial: serial, Rework: rework, Started: a.now(), Used: true}
	if newPart {
		s.Step = "new board"
	}
	a.cancels[slot] = cancel
	a.busy.Store(int32(a.m.running()))
	a.goDo(func() {
		defer cancel()
		if newPart {
			if err := a.cfg.Fixture.NewPart(ctx, slot); err != nil {
				a.post(func() {
					if s.Run == run {
						*s = slotState{ID: slot, Run: run, Status: slotNoBoard, Message: fmt.Sprintf("%v; F6 to try again", err)}
						a.logLine(a.now(), fmt.Sprintf("slot %d  no board for %s: %v", slot, serial, err))
					}
				})
				return
			}
		}
		out := a.cfg.Station.Provision(ctx, progress.Job{Batch: batch, Serial: serial, Slot: slot, TPM: a.cfg.Fixture.TPM(slot), Rework: rework, Supervisor: supervisor})
		a.post(func() {
			if line := a.m.finish(slot, run, out, a.now()); line != "" {
				a.logLine(a.now(), line)
			}
			a.refreshBatch()
		})
	})
}

// newPart readies slot s for the next board (UI goroutine); clone puts a copy of the last passed part in.
func (a *App) newPart(s *slotState, clone bool) {
	s.Run++
	run, slot := s.Run, s.ID
	*s = slotState{ID: slot, Run: run, Status: slotLoading}
	a.goDo(func() {
		var note string
		var err error
		if clone {
			note, err = a.cfg.Fixture.(Cloner).ClonePart(a.ctx, slot)
		} else {
			err = a.cfg.Fixture.NewPart(a.ctx, slot)
		}
		a.post(func() {
			if s.Run != run {
				return
			}
			if err != nil {
				*s = slotState{ID: slot, Run: run, Status: slotNoBoard, Message: fmt.Sprintf("%v; F6 to try again", err)}
				if !errors.Is(err, context.Canceled) {
					a.logLine(a.now(), fmt.Sprintf("slot %d  no board: %v", slot, err))
				}
				return
			}
			*s = slotState{ID: slot, Run: run, Status: slotReady, Note: note}
			if note != "" {
				a.logLine(a.now(), fmt.Sprintf("slot %d  %s", slot, note))
			}
		})
	})
}

// lineView draws the header, the batch counters, one panel per slot and the event log.
type lineView struct {
	*tview.Box
	a     *App
	boxes []*tview.Box
}

// lineLayout places the slots: cols x rows panels of slotH lines, the log below with logH lines.
type lineLayout struct{ cols, rows, slotH, logH int }

// layoutLine fits n slot panels and a log of at least three lines into w x h cells (two header lines on
// top). Panels are at least 36 cells wide where the width allows, at most 12 lines high.
func layoutLine(w, h, n int) lineLayout {
	if n < 1 {
		n = 1
	}
	cols := min(n, max(1, w/36))
	rows := (n + cols - 1) / cols
	cols = (n + rows - 1) / rows
	avail := h - 2
	slotH := min(12, (avail-3)/rows)
	if slotH < 3 {
		slotH = 3
	}
	return lineLayout{cols: cols, rows: rows, slotH: slotH, logH: max(0, avail-rows*slotH)}
}

func (v *lineView) Draw(screen tcell.Screen) {
	v.DrawForSubclass(screen, v)
	a := v.a
	x, y, w, h := v.GetInnerRect()
	fg := tview.Styles.PrimaryTextColor
	now := a.now()
	tview.Print(screen, renderHeader(a.cfg.Title, a.m.operator, a.m.batch, w, a.cfg.Color), x, y, w, tview.AlignLeft, fg)
	tview.Print(screen, renderCounters(a.m.counters(), a.m.running(), w, a.cfg.Color), x, y+1, w, tview.AlignLeft, fg)
	l := layoutLine(w, h, len(a.m.slots))
	for len(v.boxes) < len(a.m.slots) {
		v.boxes = append(v.boxes, tview.NewBox().SetBorder(true).SetBorderPadding(0, 0, 1, 1))
	}
	cw := w / l.cols
	for i, s := range a.m.slots {
		r, c := i/l.cols, i%l.cols
		bw := cw
		if c == l.cols-1 {
			bw = w - c*cw
		}
		by := y + 2 + r*l.slotH
		if by+l.slotH > y+h {
			break
		}
		b := v.boxes[i]
		focused := i == a.m.focus
		b.SetRect(x+c*cw, by, bw, l.slotH)
		b.SetTitle(slotTitle(s, focused)).SetTitleAlign(tview.AlignLeft).SetTitleColor(borderColor(s, focused, a.cfg.Color))
		b.SetBorderColor(borderColor(s, focused, a.cfg.Color))
		if focused && !a.cfg.Color {
			b.SetBorderAttributes(tcell.AttrBold)
		} else {
			b.SetBorderAttributes(tcell.AttrNone)
		}
		b.Draw(screen)
		ix, iy, iw, ih := b.GetInnerRect()
		for j, text := range renderSlot(s, iw, ih, now, a.cfg.Color) {
			tview.Print(screen, text, ix, iy+j, iw, tview.AlignLeft, fg)
		}
	}
	if l.logH < 2 {
		return
	}
	ly := y + 2 + l.rows*l.slotH
	t := themeFor(a.cfg.Color)
	tview.Print(screen, t.dim+strings.Repeat("─", 2)+" events (PgUp/PgDn) "+strings.Repeat("─", max(0, w-22))+t.reset, x, ly, w, tview.AlignLeft, fg)
	a.log.SetRect(x, ly+1, w, l.logH-1)
	a.log.Draw(screen)
}

func borderColor(s *slotState, focused, color bool) tcell.Color {
	if !color {
		return tview.Styles.BorderColor
	}
	switch {
	case focused:
		return tcell.ColorYellow
	case s.Status == slotPassed:
		return tcell.ColorGreen
	case s.Status == slotFailed || s.Status == slotNoBoard:
		return tcell.ColorRed
	}
	return tview.Styles.BorderColor
}
