package reports

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/reports/signed"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

type reportCase struct {
	name  string
	info  BatchInfo
	rows  []BoardRow
	audit AuditInfo
}

func reportCases() []reportCase {
	open := sampleBatch()
	open.Closed = time.Time{}
	unverified := sampleAudit()
	unverified.ChainVerified = false
	return []reportCase{
		{"typical", sampleBatch(), sampleRows(150, "", false), sampleAudit()},
		{"empty", sampleBatch(), nil, AuditInfo{}},
		{"all-passed", sampleBatch(), sampleRows(40, "pass", false), sampleAudit()},
		{"only-failures", open, sampleRows(25, "fail", true), unverified},
	}
}

func render(t testing.TB, kind string, c reportCase) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch kind {
	case "pdf":
		err = WritePDF(&buf, c.info, sliceSource(c.rows), c.audit, Options{})
	case "csv":
		err = WriteCSV(&buf, c.info, sliceSource(c.rows), c.audit, Options{})
	case "json":
		err = WriteJSON(&buf, c.info, sliceSource(c.rows), c.audit, Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./reports -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; if the change is intended, run go test ./reports -update\n%s", name, firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) string {
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := 0; i < min(len(al), len(bl)); i++ {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d:\n got: %q\nwant: %q", i+1, al[i], bl[i])
		}
	}
	return fmt.Sprintf("got %d lines, want %d", len(al), len(bl))
}

// pdfText is what poppler extracts from a PDF, with its page count.
func pdfText(t *testing.T, pdf []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("pdftotext"); err != nil {
		t.Fatal("pdftotext not installed: install poppler-utils (make test installs it)")
	}
	f := filepath.Join(t.TempDir(), "r.pdf")
	if err := os.WriteFile(f, pdf, 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := exec.Command("pdfinfo", f).CombinedOutput()
	if err != nil {
		t.Fatalf("pdfinfo: %v\n%s", err, info)
	}
	pages := regexp.MustCompile(`(?m)^Pages:\s+(\d+)$`).FindSubmatch(info)
	if pages == nil {
		t.Fatalf("pdfinfo gave no page count:\n%s", info)
	}
	txt, err := exec.Command("pdftotext", "-layout", "-enc", "UTF-8", f, "-").Output()
	if err != nil {
		t.Fatalf("pdftotext: %v", err)
	}
	return append([]byte(fmt.Sprintf("pages: %s\n", pages[1])), txt...)
}

func TestReportGolden(t *testing.T) {
	for _, c := range reportCases() {
		t.Run(c.name, func(t *testing.T) {
			golden(t, "report-"+c.name+".csv", render(t, "csv", c))
			golden(t, "report-"+c.name+".json", render(t, "json", c))
			pdf := render(t, "pdf", c)
			if !bytes.HasPrefix(pdf, []byte("%PDF-")) {
				t.Fatal("not a PDF")
			}
			golden(t, "report-"+c.name+".pdf.txt", pdfText(t, pdf))
		})
	}
}

func TestReportDeterministic(t *testing.T) {
	c := reportCases()[0]
	for _, kind := range []string{"pdf", "csv", "json"} {
		if a, b := render(t, kind, c), render(t, kind, c); !bytes.Equal(a, b) {
			t.Errorf("%s: two renderings differ", kind)
		}
	}
	// A different close time is a different document date, so the bytes change.
	d := c
	d.info.Closed = d.info.Closed.Add(time.Second)
	if bytes.Equal(render(t, "pdf", c), render(t, "pdf", d)) {
		t.Error("the close time does not reach the PDF")
	}
}

func TestReportPDFContent(t *testing.T) {
	c := reportCases()[0]
	txt := string(pdfText(t, render(t, "pdf", c)))
	for _, want := range []string{
		"Batch audit report", "WO-77812", "line2-st01, line2-st02", "A. Novák, J. Smith", // cp1252 á
		"Failure reasons (Pareto)", "ek_cert_chain", "Boards finished per hour", "Cycle-time histogram",
		"SN-Ærø-?-002", // κ is not in cp1252: shown as '?'
		"'=HYPERLINK", "station report verify FILE --sig FILE.sig", "station audit verify --batch B-2025-0304-A",
		c.audit.ChainHead, "1 character(s) that the PDF's fonts cannot show",
	} {
		if !strings.Contains(txt, want) && !strings.Contains(txt, strings.TrimPrefix(want, "'")) {
			t.Errorf("PDF text lacks %q", want)
		}
	}
	// Every table page repeats the column titles and every page has a header and a page number.
	pages := strings.Split(txt, "\f")
	n := 0
	for i, p := range pages {
		if strings.TrimSpace(p) == "" {
			continue
		}
		n++
		if !strings.Contains(p, "tpmline batch report") || !strings.Contains(p, fmt.Sprintf("Page %d of", i+1)) {
			t.Errorf("page %d lacks its header or page number", i+1)
		}
		if strings.Contains(p, "SN-0001") && !strings.Contains(p, "IDevID cert") {
			t.Errorf("table page %d lacks the column titles", i+1)
		}
	}
	if n < 6 {
		t.Errorf("%d pages, want the table to span several", n)
	}
}

func TestReportSummary(t *testing.T) {
	at := t0
	row := func(serial, result, code string, cycle time.Duration) BoardRow {
		r := BoardRow{Serial: serial, Result: result, ReasonCode: code, Started: at, CycleTime: cycle}
		if result != ResultInProgress {
			r.Finished = at.Add(cycle)
		}
		at = at.Add(20 * time.Minute)
		return r
	}
	rows := []BoardRow{
		row("a", ResultProvisioned, "", 40*time.Second), row("b", ResultProvisioned, "", 50*time.Second),
		row("c", ResultFailed, "x", 60*time.Second), row("d", ResultStopped, "y", 10*time.Second),
		row("e", ResultFailed, "x", 45*time.Second), row("f", ResultInProgress, "", 0),
	}
	m := newSummer()
	for i := range rows {
		if err := m.add(&rows[i]); err != nil {
			t.Fatal(err)
		}
	}
	s := m.finish(&BatchInfo{})
	if s.Boards != 6 || s.Provisioned != 2 || s.Failed != 2 || s.Stopped != 1 || s.InProgress != 1 || s.YieldPercent != 40 {
		t.Fatalf("counts %+v", s)
	}
	// Cycle times of the five finished: 10 40 45 50 60 -> p50 45 (rank 3), p90 60 (rank 5).
	if s.CycleP50 != 45*time.Second || s.CycleP90 != 60*time.Second || s.CycleMax != 60*time.Second {
		t.Fatalf("cycle %v %v %v", s.CycleP50, s.CycleP90, s.CycleMax)
	}
	if len(s.Reasons) != 2 || s.Reasons[0].Code != "x" || s.Reasons[0].Count != 2 || s.Reasons[0].CumulativePercent != 66.67 || s.Reasons[1].CumulativePercent != 100 {
		t.Fatalf("reasons %+v", s.Reasons)
	}
	total := 0
	for _, b := range s.Throughput {
		total += b.Provisioned + b.NotPassed
		if b.To.Sub(b.From) != time.Hour {
			t.Fatalf("bucket %+v", b)
		}
	}
	if total != 5 || len(s.Throughput) != 2 {
		t.Fatalf("throughput %+v", s.Throughput)
	}
	hist := 0
	for _, b := range s.Histogram {
		hist += b.Count
	}
	if hist != 5 || len(s.Histogram) > maxHistogramBins || s.Histogram[len(s.Histogram)-1].To <= 60*time.Second {
		t.Fatalf("histogram %+v", s.Histogram)
	}
	// Units per hour: 2 provisioned from the first start to the last finish (1h20m + 45s).
	if want := round2(2 / (80*time.Minute + 45*time.Second).Hours()); s.UnitsPerHour != want {
		t.Fatalf("units per hour %v, want %v", s.UnitsPerHour, want)
	}
}

func TestReportThroughputBucketsBounded(t *testing.T) {
	rows := []BoardRow{
		{Serial: "a", Result: ResultProvisioned, Started: t0, Finished: t0},
		{Serial: "b", Result: ResultFailed, Started: t0, Finished: t0.AddDate(3, 0, 0)},
	}
	m := newSummer()
	for i := range rows {
		m.add(&rows[i])
	}
	s := m.finish(&BatchInfo{})
	if len(s.Throughput) > maxThroughputBar || s.Throughput[0].Provisioned != 1 || s.Throughput[len(s.Throughput)-1].NotPassed != 1 {
		t.Fatalf("%d buckets: first %+v last %+v", len(s.Throughput), s.Throughput[0], s.Throughput[len(s.Throughput)-1])
	}
	var buf bytes.Buffer
	if err := WritePDF(&buf, sampleBatch(), sliceSource(rows), sampleAudit(), Options{}); err != nil {
		t.Fatal(err)
	}
}

func TestReportRejects(t *testing.T) {
	good := sampleRows(3, "", false)
	bad := func(f func(*BoardRow)) []BoardRow {
		r := append([]BoardRow(nil), good...)
		f(&r[1])
		return r
	}
	for _, tc := range []struct {
		name  string
		info  func(*BatchInfo)
		audit func(*AuditInfo)
		rows  []BoardRow
		src   BoardSource
		want  string
	}{
		{name: "unknown result", rows: bad(func(r *BoardRow) { r.Result = "ok" }), want: "result \"ok\""},
		{name: "empty serial", rows: bad(func(r *BoardRow) { r.Serial = "" }), want: "serial is empty"},
		{name: "huge reason", rows: bad(func(r *BoardRow) { r.ReasonText = strings.Repeat("x", 5000) }), want: "over the report's 1024-byte bound"},
		{name: "negative cycle", rows: bad(func(r *BoardRow) { r.CycleTime = -time.Second }), want: "negative"},
		{name: "year 20000", rows: bad(func(r *BoardRow) { r.Finished = time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC) }), want: "outside the years"},
		{name: "no batch ID", info: func(b *BatchInfo) { b.ID = "" }, want: "batch ID is empty"},
		{name: "bad chain head", audit: func(a *AuditInfo) { a.ChainHead = "XYZ" }, want: "chain head"},
		{name: "no source", want: "no board source"},
		{name: "source error", src: func(func(BoardRow) error) error { return errors.New("database is locked") }, want: "database is locked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, audit := sampleBatch(), sampleAudit()
			if tc.info != nil {
				tc.info(&info)
			}
			if tc.audit != nil {
				tc.audit(&audit)
			}
			src := tc.src
			if src == nil && tc.rows != nil {
				src = sliceSource(tc.rows)
			}
			if src == nil && tc.name != "no source" {
				src = sliceSource(good)
			}
			for name, w := range map[string]func(io.Writer, BatchInfo, BoardSource, AuditInfo, Options) error{"pdf": WritePDF, "csv": WriteCSV, "json": WriteJSON} {
				err := w(io.Discard, info, src, audit, Options{})
				if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
					t.Errorf("%s: err = %v, want %q", name, err, tc.want)
				}
			}
		})
	}
}

// A batch still running can change between the PDF's two passes; the PDF refuses to disagree with itself.
func TestReportPDFSourceChanged(t *testing.T) {
	rows := sampleRows(10, "", true)
	calls := 0
	src := func(yield func(BoardRow) error) error {
		calls++
		for i, r := range rows {
			if calls == 2 && i == 9 {
				r.Result, r.Finished, r.CycleTime = ResultProvisioned, r.Started.Add(time.Minute), time.Minute
			}
			if err := yield(r); err != nil {
				return err
			}
		}
		return nil
	}
	err := WritePDF(io.Discard, sampleBatch(), src, sampleAudit(), Options{})
	if err == nil || !strings.Contains(err.Error(), "changed between") {
		t.Fatalf("err = %v", err)
	}
}

func TestCleanText(t *testing.T) {
	for in, want := range map[string]string{"ok": "ok", "a\nb": "a\ufffdb", "a\xffb": "a\ufffdb", "\u0085x": "\ufffdx", "Ærø": "Ærø"} {
		if got := cleanText(in); got != want || cleanText(got) != got {
			t.Errorf("cleanText(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadReportJSON(t *testing.T) {
	for _, c := range reportCases() {
		t.Run(c.name, func(t *testing.T) {
			js := render(t, "json", c)
			rep, err := ReadReportJSON(bytes.NewReader(js), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(rep.Audit, c.audit) || rep.Batch.ID != c.info.ID || len(rep.Boards) != len(c.rows) || rep.Summary.Boards != len(c.rows) {
				t.Fatalf("read back %+v", rep)
			}
			if len(c.rows) > 0 && (rep.Boards[0].Serial != c.rows[0].Serial || !rep.Boards[0].Finished.Equal(c.rows[0].Finished.Truncate(time.Millisecond))) {
				t.Fatalf("board 0 %+v", rep.Boards[0])
			}
		})
	}
	js := string(render(t, "json", reportCases()[0]))
	for _, tc := range []struct{ name, in, want string }{
		{"summary edited", strings.Replace(js, `"provisioned": 1`, `"provisioned": 2`, 1), "not what its boards give"},
		{"board edited", strings.Replace(js, `"result":"failed"`, `"result":"provisioned"`, 1), "not what its boards give"},
		{"reformatted", strings.Replace(js, "\n  \"audit\"", "\n\n  \"audit\"", 1), "not what its boards give"},
		{"unknown field", strings.Replace(js, `"format":`, `"extra": 1, "format":`, 1), "unknown field"},
		{"unknown board field", strings.Replace(js, `{"serial":`, `{"x":1,"serial":`, 1), "unknown field"},
		{"bad time", strings.Replace(js, `"started":"2025-03-04T06:10:00.000Z"`, `"started":"yesterday"`, 1), "not a UTC time"},
		{"wrong format", strings.Replace(js, ReportFormat, "tpmline-batch-report/9", 1), "format is"},
		{"truncated", js[:len(js)/2], "unexpected EOF"},
		{"bad result", strings.Replace(js, `"result":"failed"`, `"result":"exploded"`, 1), "not one of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.in == js {
				t.Fatal("the replacement did not apply")
			}
			_, err := ReadReportJSON(strings.NewReader(tc.in), 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// An edited chain head is consistent with the boards: the signature catches it, and the station
	// compares the head with its database.
	edited := strings.Replace(js, `"chain_head": "`, `"chain_head": "00`, 1)
	if rep, err := ReadReportJSON(strings.NewReader(edited), 0); err != nil || !strings.HasPrefix(rep.Audit.ChainHead, "00") {
		t.Fatalf("edited head: %v", err)
	}
	p := newTestPKI(t)
	if _, err := signed.Verify([]byte(edited), mustSign(t, p.stationSigner(t, ecKey(t)), []byte(js)), p.roots); err == nil {
		t.Fatal("an edited chain head passed the signature check")
	}
	if _, err := ReadReportJSON(strings.NewReader(js), 3); err == nil || !strings.Contains(err.Error(), "size bound") && !strings.Contains(err.Error(), "bound of 3") {
		t.Fatalf("over the board bound: %v", err)
	}
}

func tenThousand() reportCase {
	info := sampleBatch()
	info.Quantity = 10000
	return reportCase{"10000", info, sampleRows(10000, "", false), sampleAudit()}
}

func BenchmarkPDF10000(b *testing.B) {
	c := tenThousand()
	b.ReportAllocs()
	var n int
	for b.Loop() {
		cw := &countWriter{}
		if err := WritePDF(cw, c.info, sliceSource(c.rows), c.audit, Options{}); err != nil {
			b.Fatal(err)
		}
		n = int(cw.n)
	}
	b.ReportMetric(float64(n), "bytes/pdf")
}

// TestPDF10000Driver renders the 10,000-board report once, for a peak-RSS measurement by hand:
//
//	go test -c -o /tmp/reports.test ./reports && REPORTS_DRIVER=1 /usr/bin/time -v /tmp/reports.test -test.run PDF10000Driver
func TestPDF10000Driver(t *testing.T) {
	if os.Getenv("REPORTS_DRIVER") == "" {
		t.Skip("set REPORTS_DRIVER=1 to run the measurement driver")
	}
	c := tenThousand()
	start := clock.Now()
	cw := &countWriter{}
	if err := WritePDF(cw, c.info, sliceSource(c.rows), c.audit, Options{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("10,000 boards: %d bytes in %v", cw.n, clock.Since(start))
}

// countWriter counts what a benchmark writes, so the writing, not a buffer, is measured.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
