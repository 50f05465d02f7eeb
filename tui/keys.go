package tui

import (
	"fmt"
	"strings"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"
)

// Keys. Serials are typed into the scan field, so every command is a function key (or a key no serial
// starts with) and letters always reach the field.

// capture is the application's key filter: global keys first, then the front page's.
func (a *App) capture(ev *tcell.EventKey) *tcell.EventKey {
	front, _ := a.pages.GetFrontPage()
	if ev.Key() == tcell.KeyCtrlC || ev.Key() == tcell.KeyF10 || ev.Key() == tcell.KeyCtrlQ {
		if front != pageModal {
			a.askQuit()
		}
		return nil
	}
	switch front {
	case pageLine:
		return a.lineKey(ev)
	case pageHelp:
		if ev.Key() == tcell.KeyEscape || ev.Key() == tcell.KeyF1 {
			a.pages.RemovePage(pageHelp)
			return nil
		}
	case pageQA:
		switch ev.Key() {
		case tcell.KeyEscape, tcell.KeyF9:
			a.pages.SwitchToPage(pageLine)
			return nil
		case tcell.KeyF1:
			a.showHelp()
			return nil
		}
	case pageBatch:
		switch ev.Key() {
		case tcell.KeyEscape, tcell.KeyF8:
			if a.m.batch == nil {
				a.batchMsg.SetText(a.warn("choose or open a batch first: the line needs one to provision"))
				return nil
			}
			a.pages.SwitchToPage(pageLine)
			return nil
		case tcell.KeyF1:
			a.showHelp()
			return nil
		}
	case pageNewBatch:
		if ev.Key() == tcell.KeyEscape {
			a.showBatches()
			return nil
		}
	}
	return ev
}

func (a *App) warn(s string) string {
	t := themeFor(a.cfg.Color)
	return t.warn + tview.Escape(s) + t.reset
}

// lineKey handles the line view's keys; what it does not use goes to the scan field.
func (a *App) lineKey(ev *tcell.EventKey) *tcell.EventKey {
	a.notice = ""
	s := a.m.focused()
	switch ev.Key() {
	case tcell.KeyF1:
		a.showHelp()
	case tcell.KeyRune:
		if ev.Rune() == '?' && a.scan.GetText() == "" {
			a.showHelp()
			return nil
		}
		return ev
	case tcell.KeyTab, tcell.KeyDown:
		a.m.moveFocus(1)
	case tcell.KeyBacktab, tcell.KeyUp:
		a.m.moveFocus(-1)
	case tcell.KeyPgUp, tcell.KeyPgDn:
		a.log.InputHandler()(ev, func(tview.Primitive) {})
	case tcell.KeyEscape:
		a.scan.SetText("")
	case tcell.KeyF2:
		a.startKey(s)
	case tcell.KeyF3:
		a.retry(s)
	case tcell.KeyF4:
		a.abort(s)
	case tcell.KeyF5:
		a.askRework(s)
	case tcell.KeyF6:
		a.clear(s)
	case tcell.KeyF7:
		a.clone(s)
	case tcell.KeyF8:
		a.showBatches()
	case tcell.KeyF9:
		a.showQA()
	default:
		return ev
	}
	return nil
}

// startKey starts the focused slot with the typed serial, or runs its last serial again.
func (a *App) startKey(s *slotState) {
	if typed := strings.TrimSpace(a.scan.GetText()); typed != "" {
		a.scanned(typed, true)
		return
	}
	if s.Status == slotFailed && s.Serial != "" {
		a.retry(s)
		return
	}
	a.say("F2: type a serial in the scan field first, then F2 starts it in slot %d", s.ID)
}

func (a *App) retry(s *slotState) {
	switch {
	case s.Status != slotFailed || s.Serial == "":
		a.say("retry: slot %d has no failed board", s.ID)
	case a.m.batch == nil || a.m.batch.State != "open":
		a.say("retry refused: no open batch; press F8")
	case s.Failure != nil && s.Failure.Stop:
		a.say("retry refused: %s is set aside (%s); only a rework (F5) takes it again", s.Serial, s.Failure.Code)
	default:
		a.logLine(a.now(), fmt.Sprintf("slot %d  %s  retry", s.ID, s.Serial))
		a.launch(s, s.Serial, "", false)
	}
}

func (a *App) abort(s *slotState) {
	if s.Status != slotRunning {
		a.say("abort: slot %d is not running", s.ID)
		return
	}
	if c := a.cancels[s.ID]; c != nil {
		c()
	}
	s.Status = slotAborting
	a.logLine(a.now(), fmt.Sprintf("slot %d  %s  abort asked by operator %s", s.ID, s.Serial, a.m.operator))
}

func (a *App) clear(s *slotState) {
	if s.busy() {
		a.say("clear: slot %d is busy; abort it first (F4)", s.ID)
		return
	}
	a.logLine(a.now(), fmt.Sprintf("slot %d  cleared: next board", s.ID))
	a.newPart(s, false)
}

func (a *App) clone(s *slotState) {
	if !a.canClone() {
		a.say("F7 (clone) is a demo key: this fixture has real boards")
		return
	}
	if s.busy() {
		a.say("clone: slot %d is busy", s.ID)
		return
	}
	a.newPart(s, true)
}

// askRework asks for a supervisor's badge before running the focused board as a rework.
func (a *App) askRework(s *slotState) {
	if s.Serial == "" || (s.Status != slotFailed && s.Status != slotPassed) {
		a.say("rework: slot %d has no finished board to rework", s.ID)
		return
	}
	if a.m.batch == nil || a.m.batch.State != "open" {
		a.say("rework refused: no open batch; press F8")
		return
	}
	serial := s.Serial
	form := tview.NewForm()
	form.AddPasswordField("Supervisor badge", "", 24, '*', nil)
	form.AddButton("Rework", func() {
		sup := strings.TrimSpace(form.GetFormItemByLabel("Supervisor badge").(*tview.InputField).GetText())
		if sup == "" {
			return
		}
		a.closeModal()
		if s.Serial != serial || !s.free() {
			a.say("rework of %s cancelled: the slot changed meanwhile", serial)
			return
		}
		a.logLine(a.now(), fmt.Sprintf("slot %d  %s  rework confirmed by supervisor %s", s.ID, serial, sup))
		a.launch(s, serial, sup, false)
	})
	form.AddButton("Cancel", a.closeModal)
	form.SetCancelFunc(a.closeModal)
	text := tview.NewTextView().SetWrap(true).SetText("A rework clears this board's TPM keys and provisions it again, " +
		"even when it was set aside. A supervisor scans their badge to confirm.")
	box := column(text, 3, form, 7)
	box.SetBorder(true).SetTitle(" Rework " + tview.Escape(serial) + " ")
	a.showModal(box, 62, 12)
}

// askQuit quits, asking first when boards are running.
func (a *App) askQuit() {
	n := a.m.running()
	if n == 0 {
		a.app.Stop()
		return
	}
	m := tview.NewModal().SetText(fmt.Sprintf("%d board(s) are running. Quitting aborts them at the next safe point "+
		"and they end failed. Quit anyway?", n)).
		AddButtons([]string{"Keep working", "Quit"}).
		SetDoneFunc(func(_ int, label string) {
			a.closeModal()
			if label == "Quit" {
				a.app.Stop()
			}
		})
	a.pages.AddPage(pageModal, m, true, true)
}

// showModal shows p centred in a w x h frame above the current page.
func (a *App) showModal(p tview.Primitive, w, h int) {
	frame := tview.NewFlex().
		AddItem(nil, 0, 1, false).
		AddItem(tview.NewFlex().SetDirection(tview.FlexRow).
			AddItem(nil, 0, 1, false).
			AddItem(p, h, 0, true).
			AddItem(nil, 0, 1, false), w, 0, true).
		AddItem(nil, 0, 1, false)
	a.pages.AddPage(pageModal, frame, true, true)
}

func (a *App) closeModal() { a.pages.RemovePage(pageModal) }

// column stacks two primitives with fixed heights inside a bordered box's look.
func column(top tview.Primitive, th int, bottom tview.Primitive, bh int) *tview.Flex {
	return tview.NewFlex().SetDirection(tview.FlexRow).AddItem(top, th, 0, false).AddItem(bottom, bh, 0, true)
}
