package tui

import (
	"fmt"
	"strings"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"

	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station/progress"
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

// CRL reasons the rework dialog records (RFC 5280 5.3.1 CRLReason): an RMA's default is unspecified
// and a deprovision's cessationOfOperation, as `station board rma|deprovision` default; "key compromised"
// ticked records keyCompromise for either.
const (
	crlUnspecified          = 0
	crlKeyCompromise        = 1
	crlCessationOfOperation = 5
)

// askRework asks for a supervisor's badge before running the focused board as a rework or, when the
// station can (Retirer), taking it out of service: RMA or deprovision, with the reason for the audit trail.
func (a *App) askRework(s *slotState) {
	if s.Serial == "" || (s.Status != slotFailed && s.Status != slotPassed) {
		a.say("rework: slot %d has no finished board to rework", s.ID)
		return
	}
	retirer, canRetire := a.cfg.Station.(Retirer)
	if !canRetire && (a.m.batch == nil || a.m.batch.State != "open") {
		a.say("rework refused: no open batch; press F8")
		return
	}
	serial := s.Serial
	form := tview.NewForm()
	msg := tview.NewTextView().SetWrap(true)
	form.AddPasswordField("Supervisor badge", "", 24, '*', nil)
	if canRetire {
		form.AddInputField("Reason (RMA, deprovision)", "", 36, nil, nil)
		form.AddCheckbox("Key compromised", false, nil)
	}
	// confirmed reads the form; ok is false when something is missing (said in the dialog).
	confirmed := func(needReason bool) (sup, reason string, crl int, ok bool) {
		sup = strings.TrimSpace(form.GetFormItemByLabel("Supervisor badge").(*tview.InputField).GetText())
		if sup == "" {
			msg.SetText(a.warn("scan the supervisor's badge first"))
			return "", "", 0, false
		}
		if needReason {
			reason = strings.TrimSpace(form.GetFormItemByLabel("Reason (RMA, deprovision)").(*tview.InputField).GetText())
			if reason == "" {
				msg.SetText(a.warn("type the reason: it goes into the audit trail and the batch report"))
				return "", "", 0, false
			}
			if form.GetFormItemByLabel("Key compromised").(*tview.Checkbox).IsChecked() {
				crl = crlKeyCompromise
			}
		}
		a.closeModal()
		if s.Serial != serial || !s.free() {
			a.say("%s cancelled: the slot changed meanwhile", serial)
			return "", "", 0, false
		}
		return sup, reason, crl, true
	}
	form.AddButton("Rework", func() {
		if a.m.batch == nil || a.m.batch.State != "open" {
			msg.SetText(a.warn("rework refused: no open batch; cancel and press F8"))
			return
		}
		sup, _, _, ok := confirmed(false)
		if !ok {
			return
		}
		a.logLine(a.now(), fmt.Sprintf("slot %d  %s  rework confirmed by supervisor %s", s.ID, serial, sup))
		a.launch(s, serial, sup, false)
	})
	text := "A rework clears this board's TPM keys and provisions it again, even when it was set aside. "
	if canRetire {
		for _, b := range []struct {
			label, kind string
			crl         int
		}{{"RMA", records.EventBoardRMA, crlUnspecified}, {"Deprovision", records.EventBoardDeprovisioned, crlCessationOfOperation}} {
			form.AddButton(b.label, func() {
				sup, reason, crl, ok := confirmed(true)
				if !ok {
					return
				}
				if crl == crlUnspecified {
					crl = b.crl
				}
				a.retire(s, retirer, progress.RetireJob{Serial: serial, Kind: b.kind, Reason: reason, CRLReason: crl,
					TPM: a.cfg.Fixture.TPM(s.ID), Supervisor: sup}, b.label)
			})
		}
		text += "RMA (returned for repair) or Deprovision (retired) revokes its certificates and clears its TPM; give the reason. "
	}
	form.AddButton("Cancel", a.closeModal)
	form.SetCancelFunc(a.closeModal)
	tv := tview.NewTextView().SetWrap(true).SetText(text + "A supervisor scans their badge to confirm.")
	box := tview.NewFlex().SetDirection(tview.FlexRow).AddItem(tv, 4, 0, false).AddItem(msg, 1, 0, false)
	if canRetire {
		box.AddItem(form, 9, 0, true)
		a.showModal(box, 76, 16)
	} else {
		box.AddItem(form, 5, 0, true)
		a.showModal(box, 62, 12)
	}
	box.SetBorder(true).SetTitle(" Rework " + tview.Escape(serial) + " ")
}

// retire runs job, an RMA or a deprovision of the board in slot s, through the station (UI goroutine);
// the slot is busy meanwhile, each step's outcome goes to the log, and the slot then shows the board as
// out of service: only a rework takes it again.
func (a *App) retire(s *slotState, r Retirer, job progress.RetireJob, label string) {
	a.logLine(a.now(), fmt.Sprintf("slot %d  %s  %s confirmed by supervisor %s: %s", s.ID, job.Serial, label, job.Supervisor, job.Reason))
	s.Run++
	run, slot, prev := s.Run, s.ID, *s
	s.Status, s.Step = slotRetiring, label
	a.goDo(func() {
		out, err := r.Retire(a.ctx, job)
		a.post(func() {
			if s.Run != run {
				return
			}
			if err != nil && out == nil {
				// Nothing was recorded (an unknown board, one in progress elsewhere): the slot is as it was.
				*s = prev
				s.Run = run
				a.say("slot %d  %s  %s refused: %v", slot, job.Serial, label, err)
				return
			}
			for _, l := range out.Lines() {
				a.logLine(a.now(), fmt.Sprintf("slot %d  %s  %s", slot, job.Serial, l.Text))
			}
			if err != nil {
				a.logLine(a.now(), fmt.Sprintf("slot %d  %s  %v", slot, job.Serial, err))
			}
			f := &progress.Failure{Code: out.Board.ReasonCode, Stop: true,
				Text: fmt.Sprintf("out of service (%s): %s", label, out.Board.ReasonText)}
			switch {
			case !out.OK():
				f.Next = "a step was not done (see the log): F5 and " + label + " again, or `station board " + strings.ToLower(label) + "`"
			case job.Kind == records.EventBoardRMA:
				f.Next = "remove the board for repair; a rework (F5) provisions it again"
			default:
				f.Next = "remove the board: it is retired"
			}
			*s = slotState{ID: slot, Run: run, Status: slotFailed, Serial: job.Serial, Failure: f, Used: true, Ended: a.now(),
				Elapsed: prev.Elapsed, Done: prev.Done}
			a.refreshBatch()
		})
	})
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
