//go:build !headless

package reports

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jung-kurt/gofpdf"

	"github.com/tpmline/tpmline/records"
)

// Page geometry, millimetres on A4 portrait.
const (
	pageW, pageH = 210.0, 297.0
	marginX      = 12.0
	marginTop    = 20.0 // below the page header
	marginBottom = 16.0 // above the page footer
	contentW     = pageW - 2*marginX
	rowH         = 4.6
)

// Colours (RGB).
var (
	colText    = [3]int{30, 30, 30}
	colMuted   = [3]int{110, 110, 110}
	colGrid    = [3]int{215, 215, 215}
	colBar     = [3]int{70, 110, 160}
	colPass    = [3]int{75, 150, 90}
	colFail    = [3]int{200, 70, 60}
	colLine    = [3]int{220, 120, 30}
	colZebra   = [3]int{244, 246, 249}
	colHeadRow = [3]int{225, 232, 242}
)

type tableCol struct {
	title string
	w     float64
	align string
}

var boardCols = []tableCol{
	{"Serial", 30, "L"}, {"EK SHA-256", 22, "L"}, {"TPM / firmware", 24, "L"}, {"IAK cert", 20, "L"},
	{"IDevID cert", 20, "L"}, {"Result", 17, "L"}, {"Reason", 27, "L"}, {"Finished UTC", 16, "L"}, {"Cycle", 10, "R"},
}

type pdfDoc struct {
	f        *gofpdf.Fpdf
	tr       func(string) string
	replaced int // characters the core fonts cannot show, printed as '?'
	inTable  bool
	info     *BatchInfo
	audit    *AuditInfo // for the UNVERIFIED line in every footer
	gen      time.Time
	// finishedLayout is "15:04:05" when every board finished on one day, else "01-02 15:04".
	finishedLayout string
}

// WritePDF renders the batch report for people: a cover, a summary page with the failure Pareto chart,
// a charts page (throughput per hour, cycle-time histogram), the per-board table with its header repeated
// on every page, and the audit section with how to verify. Every page has a header and "Page n of N".
//
// rows is called twice: once for the summary (which comes first in the document) and once for the
// table; if the two passes differ (a batch still running) WritePDF fails rather than print a summary
// that disagrees with its table. The output is deterministic: the same inputs give the same bytes.
func WritePDF(w io.Writer, info BatchInfo, rows BoardSource, audit AuditInfo, opts Options) error {
	if err := checkInputs(&info, rows, &audit); err != nil {
		return err
	}
	first := newSummer()
	if err := rows(func(r BoardRow) error { return first.add(&r) }); err != nil {
		return fmt.Errorf("report PDF: %w", err)
	}
	sum := first.finish(&info)

	d := &pdfDoc{info: &info, audit: &audit, gen: generatedAt(&info, &opts), finishedLayout: "15:04:05"}
	if first := sum.FirstStarted; !first.IsZero() && sum.LastFinished.Truncate(24*time.Hour) != first.Truncate(24*time.Hour) {
		d.finishedLayout = "01-02 15:04"
	}
	f := gofpdf.New("P", "mm", "A4", "")
	d.f = f
	f.SetCreationDate(d.gen)
	f.SetModificationDate(d.gen)
	f.SetCatalogSort(true)
	f.SetCompression(true)
	d.tr = f.UnicodeTranslatorFromDescriptor("cp1252")
	f.SetTitle(d.t("Batch report "+info.ID), false)
	f.SetSubject(d.t("tpmline batch audit report, product "+info.Product), false)
	f.SetCreator("tpmline reports", false)
	f.SetProducer("tpmline reports (gofpdf)", false)
	f.SetMargins(marginX, marginTop, marginX)
	f.SetAutoPageBreak(true, marginBottom)
	f.AliasNbPages("{nb}")
	f.SetHeaderFunc(d.header)
	f.SetFooterFunc(d.footer)

	d.cover(sum, &audit)
	d.summaryPage(sum)
	d.chartsPage(sum)

	second := newSummer()
	f.AddPage()
	d.heading("Boards")
	d.tableHeader()
	d.inTable = true
	i := 0
	err := rows(func(r BoardRow) error {
		if err := second.add(&r); err != nil {
			return err
		}
		d.boardRow(&r, i)
		i++
		if !f.Ok() {
			return f.Error()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("report PDF: %w", err)
	}
	if i == 0 {
		d.text(9, colMuted, "No boards were recorded in this batch.")
	}
	d.inTable = false
	if second.s.Boards != sum.Boards || !bytes.Equal(second.digest.Sum(nil), first.digest.Sum(nil)) {
		return errors.New("report PDF: the boards changed between the summary pass and the table pass; make the report again once the batch is closed")
	}
	d.auditPage(&audit)
	if err := f.Output(w); err != nil {
		return fmt.Errorf("report PDF: %w", err)
	}
	return nil
}

// t converts UTF-8 to the core fonts' cp1252, showing what cp1252 lacks as '?'.
func (d *pdfDoc) t(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r < 0x80 {
			b.WriteRune(r)
			continue
		}
		if x := d.tr(string(r)); x != "." {
			b.WriteString(x)
			continue
		}
		d.replaced++
		b.WriteByte('?')
	}
	return b.String()
}

// fit converts s and shortens it with an ellipsis to fit width w at the current font.
func (d *pdfDoc) fit(s string, w float64) string {
	s = d.t(s)
	w -= 1.2 // cell padding
	if d.f.GetStringWidth(s) <= w {
		return s
	}
	for len(s) > 0 && d.f.GetStringWidth(s+"\x85") > w {
		s = s[:len(s)-1]
	}
	return s + "\x85" // cp1252 horizontal ellipsis
}

func (d *pdfDoc) color(c [3]int)                  { d.f.SetTextColor(c[0], c[1], c[2]) }
func (d *pdfDoc) fill(c [3]int)                   { d.f.SetFillColor(c[0], c[1], c[2]) }
func (d *pdfDoc) draw(c [3]int)                   { d.f.SetDrawColor(c[0], c[1], c[2]) }
func (d *pdfDoc) font(style string, size float64) { d.f.SetFont("Helvetica", style, size) }

func (d *pdfDoc) header() {
	f := d.f
	d.font("", 8)
	d.color(colMuted)
	f.SetXY(marginX, 8)
	f.CellFormat(contentW/2, 4, d.fit("tpmline batch report  |  batch "+d.info.ID, contentW/2), "", 0, "L", false, 0, "")
	f.CellFormat(contentW/2, 4, d.fit("product "+d.info.Product+"  |  generated "+d.gen.Format("2006-01-02 15:04")+" UTC", contentW/2), "", 0, "R", false, 0, "")
	d.draw(colGrid)
	f.SetLineWidth(0.3)
	f.Line(marginX, 13.5, pageW-marginX, 13.5)
	f.SetXY(marginX, marginTop)
	d.color(colText)
	if d.inTable {
		d.tableHeader()
	}
}

func (d *pdfDoc) footer() {
	f := d.f
	d.draw(colGrid)
	f.SetLineWidth(0.3)
	f.Line(marginX, pageH-12, pageW-marginX, pageH-12)
	f.SetXY(marginX, pageH-11)
	d.font("", 7)
	d.color(colMuted)
	f.CellFormat(contentW*0.75, 4, d.fit("Signed by the station: check with  station report verify FILE --sig FILE.sig", contentW*0.75), "", 0, "L", false, 0, "")
	f.CellFormat(contentW*0.25, 4, fmt.Sprintf("Page %d of {nb}", f.PageNo()), "", 0, "R", false, 0, "")
	if d.audit != nil && d.audit.Unverified {
		f.SetXY(marginX, pageH-7)
		d.font("B", 7)
		d.color(colFail)
		f.CellFormat(contentW, 4, d.fit(fmt.Sprintf("UNVERIFIED: the inventory disagreed with its audit chain in %d place(s) when this report was made (see the audit page)",
			len(d.audit.Divergences)), contentW), "", 0, "L", false, 0, "")
	}
	d.color(colText)
}

func (d *pdfDoc) heading(s string) {
	d.font("B", 14)
	d.color(colText)
	d.f.CellFormat(contentW, 8, d.t(s), "", 1, "L", false, 0, "")
	d.f.Ln(1)
}

func (d *pdfDoc) subheading(s string) {
	d.font("B", 10.5)
	d.color(colText)
	d.f.CellFormat(contentW, 6, d.t(s), "", 1, "L", false, 0, "")
}

func (d *pdfDoc) text(size float64, c [3]int, s string) {
	d.font("", size)
	d.color(c)
	d.f.MultiCell(contentW, size*0.5, d.t(s), "", "L", false)
	d.color(colText)
}

// kv prints label/value rows; values wrap.
func (d *pdfDoc) kv(labelW float64, pairs [][2]string) {
	for _, p := range pairs {
		d.font("B", 9.5)
		y := d.f.GetY()
		d.f.CellFormat(labelW, 6, d.t(p[0]), "", 0, "L", false, 0, "")
		d.font("", 9.5)
		d.f.SetXY(marginX+labelW, y)
		d.f.MultiCell(contentW-labelW, 6, d.t(p[1]), "", "L", false)
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func fmtWhen(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

// fmtDur is records.FormatDuration: the report says a time as the line view does.
func fmtDur(v time.Duration) string { return records.FormatDuration(v) }

func shortHex(s string, head, tail int) string {
	if len(s) <= head+tail+1 {
		return s
	}
	return s[:head] + "…" + s[len(s)-tail:]
}

func (d *pdfDoc) cover(s *Summary, a *AuditInfo) {
	f := d.f
	f.AddPage()
	f.SetY(40)
	d.font("B", 24)
	f.CellFormat(contentW, 12, "Batch audit report", "", 1, "L", false, 0, "")
	d.font("", 15)
	d.color(colMuted)
	f.MultiCell(contentW, 8, d.t("Batch "+d.info.ID+"  |  "+orNone(d.info.Product)), "", "L", false)
	d.color(colText)
	f.Ln(8)
	closed := fmtWhen(d.info.Closed)
	if d.info.Closed.IsZero() {
		closed = "still open when this report was made"
	}
	c := s.Counts
	quantity := "none planned"
	if c.Quantity > 0 {
		quantity = fmt.Sprintf("%d planned, done %s", c.Quantity, c.DoneText())
		if w := c.OverWarning(); w != "" {
			quantity += ": WARNING " + w
		}
	}
	verified := "verified intact by the station"
	if !a.ChainVerified {
		verified = "NOT verified when this report was made"
	}
	if a.Unverified {
		verified = "UNVERIFIED: the inventory disagrees with its audit chain"
	}
	d.kv(48, [][2]string{
		{"Batch", d.info.ID},
		{"Product", orNone(d.info.Product)},
		{"Work order", orNone(d.info.WorkOrder)},
		{"Stations", orNone(strings.Join(d.info.Stations, ", "))},
		{"Operators", orNone(strings.Join(d.info.Operators, ", "))},
		{"Opened", fmtWhen(d.info.Opened)},
		{"Closed", closed},
		{"Quantity", quantity},
		{"Counts", fmt.Sprintf("done %d: %d passed, %d failed, %d set aside, %d in progress; yield %s", c.Done, c.Passed, c.Failed,
			c.SetAside, c.InProgress, c.YieldText())},
		{"Set aside", fmt.Sprintf("%d stopped, %d refused before the inventory check (clones, swapped parts)", c.Stopped, c.Refused)},
		{"Audit trail", fmt.Sprintf("%d events, chain %s", a.EventCount, verified)},
		{"Report generated", fmtWhen(d.gen)},
	})
}

func (d *pdfDoc) summaryPage(s *Summary) {
	f := d.f
	f.AddPage()
	d.heading("Summary")
	c := s.Counts
	yield, uph := "-", "-"
	if c.HasYield {
		yield = c.YieldText()
	}
	if s.FiguresOK {
		uph = strconv.FormatFloat(s.UnitsPerHour, 'f', 2, 64)
	}
	// Percentiles only with enough boards behind them (records.FiguresOK); the maximum is a fact.
	cyc := func(v time.Duration, needEnough bool) string {
		if c.Done == 0 || (needEnough && !s.FiguresOK) {
			return "-"
		}
		return fmtDur(v)
	}
	pairs := [][2]string{
		{"Done", c.DoneText()}, {"Passed (provisioned)", strconv.Itoa(c.Passed)},
		{"Failed", strconv.Itoa(c.Failed)}, {"Set aside", fmt.Sprintf("%d (%d stopped, %d refused)", c.SetAside, c.Stopped, c.Refused)},
		{"In progress", strconv.Itoa(c.InProgress)}, {"Yield", yield},
		{"Units per hour", uph}, {"Cycle time p50", cyc(s.CycleP50, true)},
		{"Cycle time p90", cyc(s.CycleP90, true)}, {"Cycle time max", cyc(s.CycleMax, false)},
		{"First start", fmtWhen(s.FirstStarted)}, {"Last finish", fmtWhen(s.LastFinished)},
	}
	// Two columns of label/value cells.
	half := contentW / 2
	for i := 0; i < len(pairs); i += 2 {
		for j := 0; j < 2; j++ {
			p := pairs[i+j]
			d.font("", 9)
			d.color(colMuted)
			f.CellFormat(half*0.45, 6.5, p[0], "B", 0, "L", false, 0, "")
			d.font("B", 10)
			d.color(colText)
			f.CellFormat(half*0.55, 6.5, d.fit(p[1], half*0.55), "B", 0, "L", false, 0, "")
		}
		f.Ln(-1)
	}
	d.font("", 7.5)
	d.color(colMuted)
	f.MultiCell(contentW, 3.6, "Done is passed + failed + set aside; set aside is stopped + refused. Yield is passed / done. Units per hour is provisioned boards over the time from the first start to the last finish. Cycle times are nearest-rank percentiles over finished boards. Rates and percentiles show once there are 5 finished boards or 2 minutes of work.", "", "L", false)
	f.Ln(4)
	d.subheading("Failure reasons (Pareto)")
	y := f.GetY() + 2
	d.chart(func() { d.pareto(marginX, y, contentW, 88, s.Reasons) })
	f.SetY(y + 88 + 6)
	d.reasonLegend(s.Reasons)
}

func (d *pdfDoc) chartsPage(s *Summary) {
	f := d.f
	f.AddPage()
	d.heading("Throughput and cycle time")
	d.subheading("Boards finished per hour (UTC)")
	y := f.GetY() + 2
	d.chart(func() { d.throughputChart(marginX, y, contentW, 95, s.Throughput) })
	f.SetY(y + 95 + 8)
	d.subheading("Cycle-time histogram (finished boards)")
	y = f.GetY() + 2
	d.chart(func() { d.histogramChart(marginX, y, contentW, 95, s.Histogram) })
}

// chart draws with automatic page breaks off: a chart's labels sit at fixed places on its page.
func (d *pdfDoc) chart(draw func()) {
	d.f.SetAutoPageBreak(false, 0)
	draw()
	d.f.SetAutoPageBreak(true, marginBottom)
}

// niceScale returns a 1-2-5 step and the axis top for values up to v, with at most 6 steps.
func niceScale(v float64) (step, top float64) {
	step = 1
	for i := 0; v/step > 6; i++ {
		step *= []float64{2, 2.5, 2}[i%3] // 1, 2, 5, 10, 20, 50, ...
	}
	return step, max(step, math.Ceil(v/step)*step)
}

// axes draws the frame, horizontal grid lines and left tick labels of a plot area; it returns the
// y scale (mm per unit).
func (d *pdfDoc) axes(x, y, w, h, maxV float64, label string) float64 {
	f := d.f
	step, top := niceScale(maxV)
	d.draw(colGrid)
	f.SetLineWidth(0.2)
	d.font("", 6.5)
	d.color(colMuted)
	for v := 0.0; v <= top+step/2; v += step {
		yy := y + h - v/top*h
		f.Line(x, yy, x+w, yy)
		f.SetXY(x-11, yy-1.5)
		f.CellFormat(10, 3, strconv.FormatFloat(v, 'f', -1, 64), "", 0, "R", false, 0, "")
	}
	d.draw(colMuted)
	f.SetLineWidth(0.3)
	f.Line(x, y, x, y+h)
	f.Line(x, y+h, x+w, y+h)
	f.TransformBegin()
	f.TransformRotate(90, x-13, y+h/2)
	f.SetXY(x-13-h/2, y+h/2-1.5)
	f.CellFormat(h, 3, label, "", 0, "C", false, 0, "")
	f.TransformEnd()
	d.color(colText)
	return h / top
}

func (d *pdfDoc) emptyChart(x, y, w, h float64, msg string) {
	d.draw(colGrid)
	d.f.SetLineWidth(0.3)
	d.f.Rect(x, y, w, h, "D")
	d.font("I", 9)
	d.color(colMuted)
	d.f.SetXY(x, y+h/2-3)
	d.f.CellFormat(w, 6, msg, "", 0, "C", false, 0, "")
	d.color(colText)
}

// paretoBars is the Pareto's bars: the top reasons, the rest folded into one "other" bar.
func paretoBars(rs []ReasonCount) []ReasonCount {
	if len(rs) <= maxParetoBars {
		return rs
	}
	out := append([]ReasonCount(nil), rs[:maxParetoBars-1]...)
	rest := ReasonCount{Code: fmt.Sprintf("%d others", len(rs)-maxParetoBars+1), CumulativePercent: 100}
	for _, r := range rs[maxParetoBars-1:] {
		rest.Count += r.Count
	}
	return append(out, rest)
}

// plotArea is a chart's plot rectangle inside its box (room on the left for the axis labels, padR on the
// right, padB below for the x labels); with no data it draws the empty-chart note and reports false.
func (d *pdfDoc) plotArea(x0, y0, w0, h0, padR, padB float64, n int, empty string) (x, y, w, h float64, ok bool) {
	const padL = 16
	if n == 0 {
		d.emptyChart(x0, y0, w0, h0, empty)
		return 0, 0, 0, 0, false
	}
	return x0 + padL, y0 + 2, w0 - padL - padR, h0 - 2 - padB, true
}

func (d *pdfDoc) pareto(x0, y0, w0, h0 float64, reasons []ReasonCount) {
	x, y, w, h, ok := d.plotArea(x0, y0, w0, h0, 14, 10, len(reasons), "No failed or stopped boards: nothing to rank.")
	if !ok {
		return
	}
	f := d.f
	bars := paretoBars(reasons)
	maxV := 0
	for _, b := range bars {
		maxV = max(maxV, b.Count)
	}
	scale := d.axes(x, y, w, h, float64(maxV), "boards")
	slot := w / float64(len(bars))
	d.fill(colBar)
	for i, b := range bars {
		bh := float64(b.Count) * scale
		f.Rect(x+float64(i)*slot+slot*0.15, y+h-bh, slot*0.7, bh, "F")
		d.font("", 6.5)
		f.SetXY(x+float64(i)*slot, y+h+1)
		f.CellFormat(slot, 3, d.fit(b.Code, slot), "", 0, "C", false, 0, "")
		f.SetXY(x+float64(i)*slot, y+h-bh-3.5)
		f.CellFormat(slot, 3, strconv.Itoa(b.Count), "", 0, "C", false, 0, "")
	}
	// Cumulative percentage on the right axis.
	d.draw(colMuted)
	f.SetLineWidth(0.3)
	f.Line(x+w, y, x+w, y+h)
	d.font("", 6.5)
	d.color(colLine)
	for p := 0; p <= 100; p += 20 {
		yy := y + h - float64(p)/100*h
		f.SetXY(x+w+1, yy-1.5)
		f.CellFormat(10, 3, strconv.Itoa(p)+"%", "", 0, "L", false, 0, "")
	}
	d.draw(colLine)
	d.fill(colLine)
	f.SetLineWidth(0.6)
	var px, py float64
	for i, b := range bars {
		cx := x + (float64(i)+0.5)*slot
		cy := y + h - b.CumulativePercent/100*h
		if i > 0 {
			f.Line(px, py, cx, cy)
		}
		f.Circle(cx, cy, 0.9, "F")
		px, py = cx, cy
	}
	f.SetLineWidth(0.2)
	d.color(colText)
	d.font("", 6.5)
	f.SetXY(x, y+h+5)
	d.legend([][3]int{colBar, colLine}, []string{"boards with this reason", "cumulative share (right axis)"})
}

func (d *pdfDoc) legend(cols [][3]int, labels []string) {
	f := d.f
	for i, c := range cols {
		d.fill(c)
		f.Rect(f.GetX(), f.GetY()+0.8, 2.5, 2.5, "F")
		f.SetX(f.GetX() + 3.5)
		d.font("", 7)
		f.CellFormat(f.GetStringWidth(labels[i])+6, 4, labels[i], "", 0, "L", false, 0, "")
	}
	f.Ln(-1)
}

func (d *pdfDoc) reasonLegend(reasons []ReasonCount) {
	if len(reasons) == 0 {
		return
	}
	f := d.f
	cols := []tableCol{{"Reason code", 40, "L"}, {"Reason (first seen)", 106, "L"}, {"Boards", 18, "R"}, {"Cumulative", 22, "R"}}
	d.font("B", 7.5)
	d.fill(colHeadRow)
	for _, c := range cols {
		f.CellFormat(c.w, rowH, c.title, "", 0, c.align, true, 0, "")
	}
	f.Ln(-1)
	d.font("", 7.5)
	shown := reasons
	if len(shown) > 12 {
		shown = shown[:12]
	}
	for _, r := range shown {
		cells := []string{r.Code, r.Text, strconv.Itoa(r.Count), strconv.FormatFloat(r.CumulativePercent, 'f', 1, 64) + " %"}
		for i, c := range cols {
			f.CellFormat(c.w, rowH, d.fit(cells[i], c.w), "B", 0, c.align, false, 0, "")
		}
		f.Ln(-1)
	}
	if len(reasons) > len(shown) {
		d.text(7, colMuted, fmt.Sprintf("%d more reason codes; the CSV and JSON forms list every board's reason.", len(reasons)-len(shown)))
	}
}

// xLabels prints labels under bar slots, every k-th so they do not overlap.
func (d *pdfDoc) xLabels(x, y float64, slot float64, labels []string, labelW float64) {
	k := int(math.Ceil(labelW / slot))
	k = max(k, 1)
	d.font("", 6.5)
	d.color(colMuted)
	for i := 0; i < len(labels); i += k {
		d.f.SetXY(x+float64(i)*slot-labelW/2, y)
		d.f.CellFormat(labelW, 3, labels[i], "", 0, "C", false, 0, "")
	}
	d.color(colText)
}

func (d *pdfDoc) throughputChart(x0, y0, w0, h0 float64, buckets []ThroughputBucket) {
	x, y, w, h, ok := d.plotArea(x0, y0, w0, h0, 4, 12, len(buckets), "No finished boards yet.")
	if !ok {
		return
	}
	f := d.f
	maxV := 0
	for _, b := range buckets {
		maxV = max(maxV, b.Provisioned+b.NotPassed)
	}
	scale := d.axes(x, y, w, h, float64(maxV), "boards")
	slot := w / float64(len(buckets))
	labels := make([]string, len(buckets))
	multiDay := buckets[len(buckets)-1].From.Sub(buckets[0].From) >= 24*time.Hour
	for i, b := range buckets {
		bx := x + float64(i)*slot + slot*0.12
		ph, fh := float64(b.Provisioned)*scale, float64(b.NotPassed)*scale
		d.fill(colPass)
		if ph > 0 {
			f.Rect(bx, y+h-ph, slot*0.76, ph, "F")
		}
		d.fill(colFail)
		if fh > 0 {
			f.Rect(bx, y+h-ph-fh, slot*0.76, fh, "F")
		}
		labels[i] = b.From.Format("15:04")
		if multiDay {
			labels[i] = b.From.Format("01-02 15h")
		}
	}
	lw := 9.0
	if multiDay {
		lw = 14
	}
	// Labels sit at the left edge of their slot: the bucket's start.
	d.xLabels(x+slot/2, y+h+1, slot, labels, lw)
	f.SetXY(x, y+h+6)
	width := buckets[0].To.Sub(buckets[0].From)
	note := "provisioned"
	d.legend([][3]int{colPass, colFail}, []string{note, "failed or stopped"})
	if width > time.Hour {
		f.SetXY(x+90, y+h+6)
		d.font("", 7)
		f.CellFormat(80, 4, fmt.Sprintf("each bar is %d hours", int(width.Hours())), "", 0, "R", false, 0, "")
	}
}

func (d *pdfDoc) histogramChart(x0, y0, w0, h0 float64, bins []HistogramBin) {
	x, y, w, h, ok := d.plotArea(x0, y0, w0, h0, 4, 12, len(bins), "No finished boards yet.")
	if !ok {
		return
	}
	f := d.f
	maxV := 0
	for _, b := range bins {
		maxV = max(maxV, b.Count)
	}
	scale := d.axes(x, y, w, h, float64(maxV), "boards")
	slot := w / float64(len(bins))
	d.fill(colBar)
	labels := make([]string, len(bins)+1)
	for i, b := range bins {
		bh := float64(b.Count) * scale
		if bh > 0 {
			f.Rect(x+float64(i)*slot+0.3, y+h-bh, slot-0.6, bh, "F")
		}
		labels[i] = fmtEdge(b.From)
	}
	labels[len(bins)] = fmtEdge(bins[len(bins)-1].To)
	d.xLabels(x, y+h+1, slot, labels, 9)
	d.font("", 7)
	f.SetXY(x, y+h+6)
	f.CellFormat(w, 4, "cycle time (bin starts); bar = boards whose cycle time falls in the bin", "", 0, "C", false, 0, "")
}

func fmtEdge(v time.Duration) string {
	switch {
	case v == 0:
		return "0"
	case v < time.Second:
		return strconv.FormatInt(v.Milliseconds(), 10) + "ms"
	case v < 10*time.Minute:
		return strconv.FormatFloat(v.Seconds(), 'f', -1, 64) + "s"
	case v < 10*time.Hour:
		return strconv.FormatFloat(v.Minutes(), 'f', 1, 64) + "m"
	default:
		return strconv.FormatFloat(v.Hours(), 'f', 1, 64) + "h"
	}
}

func (d *pdfDoc) tableHeader() {
	f := d.f
	d.font("B", 7)
	d.fill(colHeadRow)
	d.color(colText)
	for _, c := range boardCols {
		f.CellFormat(c.w, rowH+0.6, c.title, "", 0, c.align, true, 0, "")
	}
	f.Ln(-1)
}

func (d *pdfDoc) boardRow(r *BoardRow, i int) {
	f := d.f
	if f.GetY()+rowH > pageH-marginBottom {
		f.AddPage() // the header repeats the column titles
	}
	tpm := strings.TrimSpace(r.TPMVendor + " " + r.TPMFirmware)
	reason := r.ReasonCode
	if reason == "" {
		reason = r.ReasonText
	}
	finished, cycle := "-", "-"
	if !r.Finished.IsZero() {
		finished = r.Finished.Format(d.finishedLayout)
	}
	if r.Result != ResultInProgress {
		cycle = fmtDur(r.CycleTime)
	}
	cells := []string{r.Serial, shortHex(r.EKPublicSHA256, 8, 4), tpm, shortHex(r.IAKCertSerial, 6, 4), shortHex(r.IDevIDCertSerial, 6, 4),
		strings.ReplaceAll(r.Result, "_", " "), reason, finished, cycle}
	d.font("", 7)
	d.fill(colZebra)
	zebra := i%2 == 1
	for j, c := range boardCols {
		if j == 5 {
			switch r.Result {
			case ResultFailed, ResultStopped:
				d.color(colFail)
			case ResultProvisioned:
				d.color(colPass)
			}
		}
		f.CellFormat(c.w, rowH, d.fit(cells[j], c.w), "", 0, c.align, zebra, 0, "")
		d.color(colText)
	}
	f.Ln(-1)
}

func (d *pdfDoc) auditPage(a *AuditInfo) {
	f := d.f
	f.AddPage()
	d.heading("Audit trail")
	verified := "yes: the station walked the hash chain before making this report and found it intact"
	if !a.ChainVerified {
		verified = "NO: the chain was not verified when this report was made; verify it before relying on this report"
	}
	d.kv(48, [][2]string{
		{"Events in the batch", strconv.FormatInt(a.EventCount, 10)},
		{"Chain verified", verified},
	})
	d.font("B", 9.5)
	f.CellFormat(48, 6, "Chain head", "", 1, "L", false, 0, "")
	f.SetFont("Courier", "", 9)
	head := a.ChainHead
	if head == "" {
		head = "(no events)"
	}
	f.MultiCell(contentW, 5, head, "", "L", false)
	f.Ln(4)
	if a.Checkpoint != "" {
		d.subheading("Signed checkpoint of the whole audit chain")
		d.text(9, colText, "The chain's size (seq) and head hash when this report was made, signed with the station's key: a witness, an auditor or station report verify can check that a later chain still holds it. Text, then its tpmline-sig/1 signature in base64:")
		f.SetFont("Courier", "", 8)
		f.MultiCell(contentW, 4, d.t(strings.TrimSuffix(a.Checkpoint, "\n")), "", "L", false)
		f.SetFont("Courier", "", 6)
		f.MultiCell(contentW, 2.6, base64.StdEncoding.EncodeToString(a.CheckpointSignature), "", "L", false)
		f.Ln(4)
	}
	if a.Unverified {
		d.subheading("UNVERIFIED: the inventory disagrees with its audit chain")
		d.text(9, colFail, "This report was written on request although these tables differ from the state the audit chain implies; the figures above may show the edited values.")
		f.SetFont("Courier", "", 8)
		for _, l := range a.Divergences {
			f.MultiCell(contentW, 4, d.t(l), "", "L", false)
		}
		f.Ln(4)
	}
	d.subheading("How to verify this report")
	d.text(9, colText, "Every step of every board is an event in an append-only log in which each event carries the hash of the one before; the chain head above is the hash of the last event when this report was made. The report files (PDF, CSV, JSON) each come with a detached signature FILE.sig made with the station's key.")
	f.Ln(2)
	steps := []string{
		"1. Check the signature and that the signer chains to your station CA:",
		"      station report verify FILE --sig FILE.sig",
		"2. Check that the audit log still holds this chain head and that no event was edited or removed:",
		"      station audit verify --batch " + d.info.ID,
		"3. Without the station: the .sig file is JSON; docs/reports.md shows how to check it with openssl.",
	}
	for _, s := range steps {
		if strings.HasPrefix(s, "      ") {
			f.SetFont("Courier", "", 9)
		} else {
			d.font("", 9)
		}
		f.MultiCell(contentW, 5, d.t(s), "", "L", false)
	}
	if d.replaced > 0 {
		f.Ln(3)
		d.text(8, colMuted, fmt.Sprintf("%d character(s) that the PDF's fonts cannot show are printed as '?'; the CSV and JSON forms carry them exactly.", d.replaced))
	}
}
