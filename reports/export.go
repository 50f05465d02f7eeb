package reports

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tpmline/tpmline/reports/signed"
)

var reportHeaderColumns = []string{"format", "batch", "product", "work_order", "generated_at", "audit_event_count", "audit_chain_head"}

// reportCountColumns are the CSV's last rows: the batch's counts (records.Counts) once every board has
// been written.
var reportCountColumns = []string{"quantity", "done", "passed", "failed", "set_aside", "stopped", "refused", "in_progress",
	"over_quantity", "yield_percent", "units_per_hour", "cycle_time_p50_ms"}
var reportColumns = []string{"serial", "ek_public_sha256", "tpm_vendor", "tpm_firmware", "iak_cert_serial", "idevid_cert_serial",
	"result", "reason_code", "reason_text", "started", "finished", "cycle_time_ms"}

// WriteCSV streams the report's CSV form: a header names row and a header row (format, batch, product,
// work order, generated time, audit event count and chain head), the column names row, then one row per
// board. RFC 4180 with CRLF line ends; a cell that starts with = + - @ TAB or CR is prefixed with a
// single quote so a spreadsheet does not run it. Rows are not held: the source is called once.
func WriteCSV(w io.Writer, info BatchInfo, rows BoardSource, audit AuditInfo, opts Options) error {
	if err := checkInputs(&info, rows, &audit); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	cw := csv.NewWriter(bw)
	cw.UseCRLF = true
	rec := make([]string, len(reportColumns))
	write := func(cells ...string) error {
		for i, c := range cells {
			rec[i] = signed.Neutralise(c)
		}
		return cw.Write(rec[:len(cells)])
	}
	head := []string{ReportFormat, info.ID, info.Product, info.WorkOrder, generatedAt(&info, &opts).Format(time.RFC3339),
		strconv.FormatInt(audit.EventCount, 10), audit.ChainHead}
	names := append([]string{}, reportHeaderColumns...)
	if audit.Unverified {
		// Two more cells in the first two rows only, so a verified report's layout is unchanged.
		names = append(names, "state", "divergences")
		head = append(head, "UNVERIFIED", strings.Join(audit.Divergences, " | "))
	}
	if audit.Checkpoint != "" {
		// The same for the checkpoint: its text (LF line ends inside the quoted cell) and base64 signature.
		names = append(names, "checkpoint", "checkpoint_signature")
		head = append(head, audit.Checkpoint, base64.StdEncoding.EncodeToString(audit.CheckpointSignature))
	}
	write(names...)
	write(head...)
	write(reportColumns...)
	m := newSummer()
	err := rows(func(r BoardRow) error {
		if err := m.add(&r); err != nil {
			return err
		}
		return write(r.Serial, r.EKPublicSHA256, r.TPMVendor, r.TPMFirmware, r.IAKCertSerial, r.IDevIDCertSerial,
			r.Result, r.ReasonCode, r.ReasonText, fmtTime(r.Started), fmtTime(r.Finished), strconv.FormatInt(r.CycleTime.Milliseconds(), 10))
	})
	if err != nil {
		return fmt.Errorf("report CSV: %w", err)
	}
	// The counts come after the boards (the rows are streamed, not held): a blank line, names, values.
	sum := m.finish(&info)
	c := sum.Counts
	yield, uph, p50 := "", "", ""
	if c.HasYield {
		yield = strconv.FormatFloat(sum.YieldPercent, 'f', 1, 64)
	}
	if sum.FiguresOK {
		uph, p50 = strconv.FormatFloat(sum.UnitsPerHour, 'f', 2, 64), strconv.FormatInt(sum.CycleP50.Milliseconds(), 10)
	}
	write()
	write(reportCountColumns...)
	itoa := strconv.Itoa
	write(itoa(c.Quantity), itoa(c.Done), itoa(c.Passed), itoa(c.Failed), itoa(c.SetAside), itoa(c.Stopped), itoa(c.Refused),
		itoa(c.InProgress), itoa(c.Over), yield, uph, p50)
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("report CSV: writing: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("report CSV: writing: %w", err)
	}
	return nil
}

func checkInputs(info *BatchInfo, rows BoardSource, audit *AuditInfo) error {
	if rows == nil {
		return errors.New("report: no board source")
	}
	if err := checkBatch(info); err != nil {
		return err
	}
	return checkAudit(audit)
}

type batchJSON struct {
	ID        string   `json:"id"`
	Product   string   `json:"product"`
	WorkOrder string   `json:"work_order"`
	Stations  []string `json:"stations"`
	Operators []string `json:"operators"`
	Opened    string   `json:"opened"`
	Closed    string   `json:"closed"`
	Quantity  int      `json:"quantity"`
	Refused   int      `json:"refused"`
}

type auditJSON struct {
	EventCount    int64  `json:"event_count"`
	ChainHead     string `json:"chain_head"`
	ChainSeq      int64  `json:"chain_seq"`
	ChainVerified bool   `json:"chain_verified"`
	// Absent from a verified report, so its bytes are those of format 1 before this field existed.
	Unverified  bool     `json:"unverified,omitempty"`
	Divergences []string `json:"divergences,omitempty"`
	// Absent from a report made without a checkpoint.
	Checkpoint          string `json:"checkpoint,omitempty"`
	CheckpointSignature []byte `json:"checkpoint_signature,omitempty"`
}

type reasonJSON struct {
	Code              string  `json:"code"`
	Text              string  `json:"text"`
	Count             int     `json:"count"`
	CumulativePercent float64 `json:"cumulative_percent"`
}

type bucketJSON struct {
	From        string `json:"from"`
	To          string `json:"to"`
	Provisioned int    `json:"provisioned"`
	NotPassed   int    `json:"not_passed"`
}

type binJSON struct {
	FromMS int64 `json:"from_ms"`
	ToMS   int64 `json:"to_ms"`
	Count  int   `json:"count"`
}

type summaryJSON struct {
	Boards             int          `json:"boards"`
	Done               int          `json:"done"`
	Provisioned        int          `json:"provisioned"`
	Failed             int          `json:"failed"`
	SetAside           int          `json:"set_aside"`
	Stopped            int          `json:"stopped"`
	Refused            int          `json:"refused"`
	InProgress         int          `json:"in_progress"`
	OverQuantity       int          `json:"over_quantity"`
	YieldPercent       *float64     `json:"yield_percent"`
	UnitsPerHour       *float64     `json:"units_per_hour"`
	CycleTimeP50MS     *int64       `json:"cycle_time_p50_ms"`
	CycleTimeP90MS     *int64       `json:"cycle_time_p90_ms"`
	CycleTimeMaxMS     int64        `json:"cycle_time_max_ms"`
	FirstStarted       string       `json:"first_started"`
	LastFinished       string       `json:"last_finished"`
	FailureReasons     []reasonJSON `json:"failure_reasons"`
	Throughput         []bucketJSON `json:"throughput"`
	CycleTimeHistogram []binJSON    `json:"cycle_time_histogram"`
}

func fmtSecond(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func toSummaryJSON(s *Summary) summaryJSON {
	c := s.Counts
	j := summaryJSON{
		Boards: s.Boards, Done: c.Done, Provisioned: c.Passed, Failed: c.Failed, SetAside: c.SetAside, Stopped: c.Stopped,
		Refused: c.Refused, InProgress: c.InProgress, OverQuantity: c.Over, CycleTimeMaxMS: s.CycleMax.Milliseconds(),
		FirstStarted: fmtTime(s.FirstStarted), LastFinished: fmtTime(s.LastFinished),
		FailureReasons: []reasonJSON{}, Throughput: []bucketJSON{}, CycleTimeHistogram: []binJSON{},
	}
	// No yield before a board is done, no rate or percentile from too few boards (records.FiguresOK): null.
	if c.HasYield {
		y := s.YieldPercent
		j.YieldPercent = &y
	}
	if s.FiguresOK {
		uph, p50, p90 := s.UnitsPerHour, s.CycleP50.Milliseconds(), s.CycleP90.Milliseconds()
		j.UnitsPerHour, j.CycleTimeP50MS, j.CycleTimeP90MS = &uph, &p50, &p90
	}
	for _, r := range s.Reasons {
		j.FailureReasons = append(j.FailureReasons, reasonJSON(r))
	}
	for _, b := range s.Throughput {
		j.Throughput = append(j.Throughput, bucketJSON{fmtSecond(b.From), fmtSecond(b.To), b.Provisioned, b.NotPassed})
	}
	for _, b := range s.Histogram {
		j.CycleTimeHistogram = append(j.CycleTimeHistogram, binJSON{b.From.Milliseconds(), b.To.Milliseconds(), b.Count})
	}
	return j
}

// WriteJSON streams the report's JSON form (docs/reports.md has the schema): format, generated time,
// batch, audit, the boards one per line as they come, then the summary computed while they streamed.
// The source is called once.
func WriteJSON(w io.Writer, info BatchInfo, rows BoardSource, audit AuditInfo, opts Options) error {
	if err := checkInputs(&info, rows, &audit); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	indent := func(v any) []byte {
		b, err := json.MarshalIndent(v, "  ", "  ")
		if err != nil {
			panic(err) // plain structs of strings and numbers always marshal
		}
		return b
	}
	fmt.Fprintf(bw, "{\n  \"format\": %s,\n  \"generated_at\": %s,\n  \"batch\": %s,\n  \"audit\": %s,\n  \"boards\": [",
		jsonString(ReportFormat), jsonString(generatedAt(&info, &opts).Format(time.RFC3339)),
		indent(batchJSON{info.ID, info.Product, info.WorkOrder, nonNilStrings(info.Stations), nonNilStrings(info.Operators),
			fmtSecond(info.Opened), fmtSecond(info.Closed), info.Quantity, info.Refused}),
		indent(auditJSON(audit)))
	m := newSummer()
	var line []byte
	err := rows(func(r BoardRow) error {
		if err := m.add(&r); err != nil {
			return err
		}
		if m.s.Boards > 1 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n    ")
		line = appendBoardJSON(line[:0], &r)
		_, err := bw.Write(line)
		return err
	})
	if err != nil {
		return fmt.Errorf("report JSON: %w", err)
	}
	if m.s.Boards > 0 {
		bw.WriteString("\n  ")
	}
	fmt.Fprintf(bw, "],\n  \"summary\": %s\n}\n", indent(toSummaryJSON(m.finish(&info))))
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("report JSON: writing: %w", err)
	}
	return nil
}

// Report is a batch report read back from its JSON form.
type Report struct {
	GeneratedAt time.Time
	Batch       BatchInfo
	Audit       AuditInfo
	Boards      []BoardRow
	Summary     Summary
}

type reportFileJSON struct {
	Format      string      `json:"format"`
	GeneratedAt string      `json:"generated_at"`
	Batch       batchJSON   `json:"batch"`
	Audit       auditJSON   `json:"audit"`
	Boards      []boardJSON `json:"boards"`
	Summary     summaryJSON `json:"summary"`
}

// ReadReportJSON reads a report's JSON form for `station report verify`, holding at most maxBoards
// boards (100,000 when maxBoards <= 0). The checks:
//
//   - the input is at most 64 KiB plus 8 KiB per allowed board;
//   - it is one JSON object with exactly the documented fields, the format is ReportFormat;
//   - every time parses, every board passes the checks WriteJSON makes;
//   - writing the parsed batch, audit and boards again gives the input byte for byte: the summary
//     matches the boards, and nothing was reformatted or added.
//
// Verify the signature (Verify) first; this catches a report that was edited and re-signed by a
// station with a bug, and gives the station the chain head to compare with its database.
func ReadReportJSON(r io.Reader, maxBoards int) (*Report, error) {
	if maxBoards <= 0 {
		maxBoards = 100_000
	}
	h := sha256.New()
	lr := signed.BoundedReader(r, 64<<10+int64(maxBoards)*8<<10)
	tee := io.TeeReader(lr, h)
	dec := json.NewDecoder(tee)
	dec.DisallowUnknownFields()
	var f reportFileJSON
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("report JSON: %v", err)
	}
	if _, err := io.Copy(io.Discard, io.MultiReader(dec.Buffered(), tee)); err != nil {
		return nil, fmt.Errorf("report JSON: %v", err)
	}
	// The tee hashed dec.Buffered() already; the copy drains the rest of the input through the tee.
	if f.Format != ReportFormat {
		return nil, fmt.Errorf("report JSON: format is %q, want %q", signed.Clip(f.Format), ReportFormat)
	}
	if len(f.Boards) > maxBoards {
		return nil, fmt.Errorf("report JSON: %d boards, over the reader's bound of %d", len(f.Boards), maxBoards)
	}
	rep := &Report{Audit: AuditInfo(f.Audit)}
	var err error
	if rep.GeneratedAt, err = parseTimeField("generated_at", f.GeneratedAt, time.RFC3339, true); err != nil {
		return nil, err
	}
	b := f.Batch
	rep.Batch = BatchInfo{ID: b.ID, Product: b.Product, WorkOrder: b.WorkOrder, Stations: b.Stations, Operators: b.Operators, Quantity: b.Quantity, Refused: b.Refused}
	if rep.Batch.Opened, err = parseTimeField("batch opened", b.Opened, time.RFC3339, false); err != nil {
		return nil, err
	}
	if rep.Batch.Closed, err = parseTimeField("batch closed", b.Closed, time.RFC3339, false); err != nil {
		return nil, err
	}
	rep.Boards = make([]BoardRow, len(f.Boards))
	for i, j := range f.Boards {
		row := BoardRow{Serial: j.Serial, EKPublicSHA256: j.EKPublicSHA256, TPMVendor: j.TPMVendor, TPMFirmware: j.TPMFirmware,
			IAKCertSerial: j.IAKCertSerial, IDevIDCertSerial: j.IDevIDCertSerial, Result: j.Result, ReasonCode: j.ReasonCode,
			ReasonText: j.ReasonText, CycleTime: time.Duration(j.CycleTimeMS) * time.Millisecond}
		if j.CycleTimeMS < 0 || j.CycleTimeMS > int64(time.Duration(math.MaxInt64)/time.Millisecond) {
			return nil, fmt.Errorf("report JSON: board %d: cycle_time_ms %d is out of range", i, j.CycleTimeMS)
		}
		if row.Started, err = parseTimeField(fmt.Sprintf("board %d started", i), j.Started, msTime, false); err != nil {
			return nil, err
		}
		if row.Finished, err = parseTimeField(fmt.Sprintf("board %d finished", i), j.Finished, msTime, false); err != nil {
			return nil, err
		}
		rep.Boards[i] = row
	}
	again := sha256.New()
	src := func(yield func(BoardRow) error) error {
		for _, r := range rep.Boards {
			if err := yield(r); err != nil {
				return err
			}
		}
		return nil
	}
	if err := WriteJSON(again, rep.Batch, src, rep.Audit, Options{GeneratedAt: rep.GeneratedAt}); err != nil {
		return nil, fmt.Errorf("report JSON: %w", err)
	}
	if !bytes.Equal(again.Sum(nil), h.Sum(nil)) {
		return nil, errors.New("report JSON: the file is not what its boards give: a summary, a field or the layout was changed")
	}
	m := newSummer()
	for i := range rep.Boards {
		m.add(&rep.Boards[i]) // already passed the same checks inside WriteJSON
	}
	rep.Summary = *m.finish(&rep.Batch)
	return rep, nil
}

func parseTimeField(name, s, layout string, required bool) (time.Time, error) {
	if s == "" && !required {
		return time.Time{}, nil
	}
	t, err := time.Parse(layout, s)
	if err != nil || t.Format(layout) != s {
		return time.Time{}, fmt.Errorf("report JSON: %s %q is not a UTC time in the form %s", name, signed.Clip(s), layout)
	}
	return t.UTC(), nil
}

// jsonString is s as a JSON string literal.
func jsonString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}
