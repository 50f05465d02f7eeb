package tui

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"

	"github.com/tpmline/tpmline/records"
)

// Sign-in, batch, QA and help screens.

func (a *App) buildSignIn() {
	a.signin = tview.NewInputField().SetLabel("Operator ▸ ").SetFieldWidth(24)
	if !a.cfg.Color {
		a.signin.SetFieldStyle(tcell.StyleDefault.Reverse(true))
	}
	a.signin.SetDoneFunc(func(k tcell.Key) {
		if k != tcell.KeyEnter {
			return
		}
		id := strings.TrimSpace(a.signin.GetText())
		if id == "" {
			return
		}
		a.m.operator = id
		a.signin.SetText("")
		a.logLine(a.now(), "operator "+id+" signed in")
		a.showBatches()
	})
}

func (a *App) signInPage() tview.Primitive {
	text := tview.NewTextView().SetTextAlign(tview.AlignCenter).SetDynamicColors(true).
		SetText(fmt.Sprintf("[::b]tpmline %s[::-]\n\nScan your badge or type your operator ID, then Enter.", tview.Escape(a.cfg.Title)))
	box := tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(text, 4, 0, false).
		AddItem(a.signin, 1, 0, true)
	box.SetBorder(true).SetTitle(" Sign in ")
	return centered(box, 60, 8)
}

func centered(p tview.Primitive, w, h int) tview.Primitive {
	return tview.NewFlex().
		AddItem(nil, 0, 1, false).
		AddItem(tview.NewFlex().SetDirection(tview.FlexRow).
			AddItem(nil, 0, 1, false).
			AddItem(p, h, 0, true).
			AddItem(nil, 0, 1, false), w, 0, true).
		AddItem(nil, 0, 1, false)
}

func (a *App) buildBatchScreens() {
	a.batches = tview.NewList().ShowSecondaryText(false)
	a.batchMsg = tview.NewTextView().SetDynamicColors(true).SetWrap(true)
	a.newMsg = tview.NewTextView().SetDynamicColors(true).SetWrap(true)
	a.newBatch = tview.NewForm()
}

func (a *App) batchPage() tview.Primitive {
	box := tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(a.batchMsg, 3, 0, false).
		AddItem(a.batches, 0, 1, true)
	box.SetBorder(true).SetTitle(" Batch (Enter: choose, Esc: back to the line) ")
	return centered(box, 76, 18)
}

func (a *App) newBatchPage() tview.Primitive {
	box := tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(a.newMsg, 2, 0, false).
		AddItem(a.newBatch, 0, 1, true)
	box.SetBorder(true).SetTitle(" Open a batch (Tab: next field, Esc: back) ")
	return centered(box, 60, 16)
}

// showBatches shows the batch screen and loads the open batches into it.
func (a *App) showBatches() {
	a.batches.Clear()
	a.batchMsg.SetText("loading open batches…")
	a.pages.SwitchToPage(pageBatch)
	a.goDo(func() {
		list, err := a.cfg.Station.ListBatches(a.ctx, "open")
		a.post(func() { a.fillBatches(list, err) })
	})
}

func (a *App) fillBatches(list []records.BatchSummary, err error) {
	a.batches.Clear()
	cur := "No batch chosen."
	if b := a.m.batch; b != nil {
		c := b.Counts()
		cur = fmt.Sprintf("Current batch %s (%s, WO %s): done %s, %d passed.", b.ID, b.Product, b.WorkOrder, c.DoneText(), c.Passed)
		if b.State != "open" {
			cur = fmt.Sprintf("Batch %s is closed: open the next batch.", b.ID)
		}
	}
	msg := tview.Escape(fmt.Sprintf("Operator %s. %s", a.m.operator, cur))
	if err != nil {
		msg += "\n" + a.warn(fmt.Sprintf("listing batches: %v", err))
	}
	a.batchMsg.SetText(msg)
	short := '1'
	for i := range list {
		b := list[i]
		label := fmt.Sprintf("Continue batch %s  %s  WO %s  done %s", b.ID, b.Product, b.WorkOrder, b.Counts().DoneText())
		if b.Station != a.cfg.Station.ID() {
			label += "  (opened at " + b.Station + ")"
		}
		var r rune
		if short <= '9' {
			r = short
			short++
		}
		a.batches.AddItem(tview.Escape(label), "", r, func() {
			a.m.batch = &b
			a.logLine(a.now(), fmt.Sprintf("batch %s chosen by operator %s", b.ID, a.m.operator))
			a.pages.SwitchToPage(pageLine)
			a.refreshBatch()
		})
	}
	a.batches.AddItem("Open a new batch…", "", 'n', a.showNewBatch)
	if b := a.m.batch; b != nil && b.State == "open" {
		a.batches.AddItem(tview.Escape(fmt.Sprintf("Close batch %s…", b.ID)), "", 'c', a.askCloseBatch)
	}
	if a.m.batch != nil {
		a.batches.AddItem("Back to the line", "", 'b', func() { a.pages.SwitchToPage(pageLine) })
	}
}

// showNewBatch shows the new batch form.
func (a *App) showNewBatch() {
	f := a.newBatch
	f.Clear(true)
	id := "B-" + a.now().Format("20060102-1504")
	f.AddInputField("Batch ID", id, 30, nil, nil)
	f.AddInputField("Product", "default", 30, nil, nil)
	f.AddInputField("Work order", "", 30, nil, nil)
	f.AddInputField("Quantity", "", 8, tview.InputFieldInteger, nil)
	f.AddButton("Open", a.openBatch)
	f.AddButton("Cancel", a.showBatches)
	f.SetFocus(0)
	a.newMsg.SetText("Product is a profile name; leave the work order empty to use the batch ID.")
	a.pages.SwitchToPage(pageNewBatch)
}

func (a *App) field(f *tview.Form, label string) string {
	return strings.TrimSpace(f.GetFormItemByLabel(label).(*tview.InputField).GetText())
}

func (a *App) openBatch() {
	f := a.newBatch
	nb := records.NewBatch{ID: a.field(f, "Batch ID"), Product: a.field(f, "Product"), WorkOrder: a.field(f, "Work order"),
		Operator: a.m.operator}
	if nb.ID == "" || nb.Product == "" {
		a.newMsg.SetText(a.warn("batch ID and product are required"))
		return
	}
	if q := a.field(f, "Quantity"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 0 {
			a.newMsg.SetText(a.warn("quantity must be a whole number, 0 or more"))
			return
		}
		nb.Quantity = n
	}
	if a.m.batch != nil && a.m.batch.State == "open" && a.m.running() > 0 {
		a.newMsg.SetText(a.warn(fmt.Sprintf("%d board(s) are running in batch %s: let them finish first", a.m.running(), a.m.batch.ID)))
		return
	}
	a.newMsg.SetText("opening…")
	a.goDo(func() {
		b, err := a.cfg.Station.OpenBatch(a.ctx, nb)
		a.post(func() {
			if err != nil {
				a.newMsg.SetText(a.warn(err.Error()))
				return
			}
			a.setBatch(b)
			a.logLine(a.now(), fmt.Sprintf("batch %s opened, quantity %d: product %s, WO %s, operator %s", b.ID, b.Quantity, b.Product, b.WorkOrder, a.m.operator))
			a.pages.SwitchToPage(pageLine)
		})
	})
}

// askCloseBatch closes the current batch after a confirmation.
func (a *App) askCloseBatch() {
	b := a.m.batch
	if b == nil || b.State != "open" {
		return
	}
	if n := a.m.running(); n > 0 {
		a.batchMsg.SetText(a.warn(fmt.Sprintf("%d board(s) are running: let them finish or abort them (F4) before closing the batch", n)))
		return
	}
	c := b.Counts()
	text := fmt.Sprintf("Close batch %s?\n\ndone %s: %d passed, %d failed, %d set aside, %d in progress, yield %s.\n",
		b.ID, c.DoneText(), c.Passed, c.Failed, c.SetAside, c.InProgress, c.YieldText())
	if w := c.OverWarning(); w != "" {
		text += "WARNING: " + w + ".\n"
	}
	text += "No board can be added afterwards."
	m := tview.NewModal().SetText(text).AddButtons([]string{"Cancel", "Close batch"}).
		SetDoneFunc(func(_ int, label string) {
			a.closeModal()
			if label != "Close batch" {
				return
			}
			id := b.ID
			a.goDo(func() {
				closed, err := a.cfg.Station.CloseBatch(a.ctx, id)
				a.post(func() {
					if err != nil {
						a.batchMsg.SetText(a.warn(fmt.Sprintf("closing batch %s: %v", id, err)))
						return
					}
					a.m.batch.State = closed.State
					a.m.batch.ClosedAt = closed.ClosedAt
					a.logLine(a.now(), fmt.Sprintf("batch %s closed by operator %s", id, a.m.operator))
					a.refreshBatch()
					a.showBatches()
				})
			})
		})
	a.pages.AddPage(pageModal, m, true, true)
}

func (a *App) buildQA() {
	a.qa = tview.NewTable().SetSelectable(true, false).SetFixed(1, 0).SetSeparator(' ')
	a.qaMsg = tview.NewTextView().SetDynamicColors(true)
	a.qa.SetSelectedFunc(func(row, _ int) {
		if row < 1 || row > len(a.qaRows) {
			return
		}
		a.report(a.qaRows[row-1].ID)
	})
}

func (a *App) qaPage() tview.Primitive {
	box := tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(a.qa, 0, 1, true).
		AddItem(a.qaMsg, 2, 0, false)
	box.SetBorder(true).SetTitle(" QA: batches (Enter: batch report, Esc: back to the line) ")
	return box
}

// showQA shows the QA view and loads every batch into it.
func (a *App) showQA() {
	a.pages.SwitchToPage(pageQA)
	a.qaMsg.SetText("loading batches…")
	a.goDo(func() {
		list, err := a.cfg.Station.ListBatches(a.ctx, "")
		a.post(func() { a.fillQA(list, err) })
	})
}

func (a *App) fillQA(list []records.BatchSummary, err error) {
	a.qa.Clear()
	a.qaRows = list
	for c, h := range batchColumns {
		a.qa.SetCell(0, c, tview.NewTableCell(h).SetSelectable(false).SetAttributes(tcell.AttrBold|tcell.AttrUnderline))
	}
	for r, b := range list {
		for c, v := range batchRow(b) {
			a.qa.SetCell(r+1, c, tview.NewTableCell(tview.Escape(v)))
		}
	}
	switch {
	case err != nil:
		a.qaMsg.SetText(a.warn(fmt.Sprintf("listing batches: %v", err)))
	case len(list) == 0:
		a.qaMsg.SetText("no batches yet")
	default:
		a.qaMsg.SetText(fmt.Sprintf("%d batches", len(list)))
		a.qa.Select(1, 0)
	}
}

// report runs the BatchReport hook for one batch.
func (a *App) report(id string) {
	if a.cfg.BatchReport == nil {
		a.qaMsg.SetText(a.warn(fmt.Sprintf("batch reports are not available in this build yet (Config.BatchReport); batch %s", id)))
		return
	}
	a.qaMsg.SetText(tview.Escape(fmt.Sprintf("making the report of batch %s…", id)))
	a.goDo(func() {
		where, err := a.cfg.BatchReport(a.ctx, id)
		a.post(func() {
			if err != nil {
				a.qaMsg.SetText(a.warn(fmt.Sprintf("report of batch %s: %v", id, err)))
				return
			}
			a.qaMsg.SetText(tview.Escape(fmt.Sprintf("report of batch %s written to %s", id, where)))
		})
	})
}

func (a *App) showHelp() {
	tv := tview.NewTextView().SetText(helpText(a.canClone())).SetScrollable(true)
	tv.SetBorder(true).SetTitle(" Help (Esc or F1 to close, arrows to scroll) ")
	a.pages.AddPage(pageHelp, tv, true, true)
}
