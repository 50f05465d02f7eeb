package reports

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/reports/signed"
)

// ReportFormat is the format version of the report's JSON and CSV forms (docs/reports.md).
//
// Version 2 carries the batch's counts by records.Counts (done, set aside, refused, over quantity) and
// leaves the rate and cycle-time percentiles out (null) until records.FiguresOK.
const ReportFormat = "tpmline-batch-report/2"

// Board results.
const (
	ResultProvisioned = "provisioned"
	ResultFailed      = "failed"
	ResultStopped     = "stopped" // stopped by a rule (cloned or swapped part) or by the operator
	ResultInProgress  = "in_progress"
)

// Bounds on the report's text fields, in bytes. The station's own data is far smaller; a row over a
// bound is a bug upstream, and the report refuses it rather than print something misleading.
const (
	maxRowText       = 256
	maxReasonText    = 1024
	maxListItems     = 64 // stations, operators
	maxDistinctCodes = 1000
	maxParetoBars    = 10
	maxThroughputBar = 48
	maxHistogramBins = 20
)

// BatchInfo is the batch a report covers.
type BatchInfo struct {
	ID        string
	Product   string
	WorkOrder string
	Stations  []string
	Operators []string
	Opened    time.Time
	Closed    time.Time // zero while the batch is open
	Quantity  int       // boards planned
	// Refused counts boards turned away before they had a record of their own: a TPM whose EK is bound to
	// another serial (a clone), a serial bound to another TPM (a swapped part), a TPM the product does not
	// accept. They are in no BoardRow, but QA counts them.
	Refused int
}

// BoardRow is one board of the batch as the report shows it.
type BoardRow struct {
	Serial           string
	EKPublicSHA256   string // lowercase hex; empty when the EK was never read
	TPMVendor        string
	TPMFirmware      string
	IAKCertSerial    string // as the CA wrote it (hex), empty when not issued
	IDevIDCertSerial string
	Result           string // ResultProvisioned, ResultFailed, ResultStopped or ResultInProgress
	ReasonCode       string // for failed and stopped boards
	ReasonText       string
	Started          time.Time
	Finished         time.Time // zero while in progress
	CycleTime        time.Duration
}

// BoardSource streams the batch's boards: it calls yield once per board, in the order the report lists
// them, and stops with yield's error if yield returns one. WritePDF calls it twice (the summary comes
// before the table) and fails if the two passes differ; CSV and JSON call it once.
type BoardSource func(yield func(BoardRow) error) error

// AuditInfo is the state of the batch's audit trail when the report was made.
type AuditInfo struct {
	EventCount int64
	ChainHead  string // lowercase hex hash of the last event of the hash chain
	// ChainSeq is the chain position the report was made at: the seq of the batch's last event in the
	// whole chain (0 when the batch has none). With EventCount and ChainHead it lets a report made while the
	// batch went on be checked as a prefix of the batch's trail (station/qa ReportPosition).
	ChainSeq      int64
	ChainVerified bool // the station walked the chain and it was intact
	// Unverified marks a report written although the inventory's tables disagree with the state its
	// audit chain implies (station report batch --unverified); Divergences names each difference, one
	// line each. Every page of the PDF, the CSV's first row and the JSON say so.
	Unverified  bool
	Divergences []string
	// Checkpoint is the whole audit chain's signed head when the report was made (the text of a
	// tpmline-audit-checkpoint/1 body: station, seq, hash, time) and CheckpointSignature its detached
	// tpmline-sig/1 signature by the station key: a transparency log's signed tree head, inside the
	// report, that `station report verify` checks and any witness can be shown. Empty in a report made
	// without one; the PDF's audit page, the CSV's first two rows and the JSON's audit object carry it.
	Checkpoint          string
	CheckpointSignature []byte
}

// Options are the rendering choices. The zero value is fine.
type Options struct {
	// GeneratedAt is printed and used as the PDF's creation and modification date. Zero means the batch's
	// close time, or its open time while it is open, so that the same data gives the same bytes.
	GeneratedAt time.Time
}

// ReasonCount is one bar of the failure Pareto chart.
type ReasonCount struct {
	Code              string
	Text              string // the first reason text seen with this code
	Count             int
	CumulativePercent float64
}

// ThroughputBucket is one bar of the throughput chart: boards finished in [From, To).
type ThroughputBucket struct {
	From, To    time.Time
	Provisioned int
	NotPassed   int // failed or stopped
}

// HistogramBin is one bar of the cycle-time histogram: boards whose cycle time is in [From, To).
type HistogramBin struct {
	From, To time.Duration
	Count    int
}

// Summary is what the report computes from the boards.
type Summary struct {
	Boards      int
	Provisioned int
	Failed      int
	Stopped     int
	InProgress  int
	// Counts are the batch's numbers by the one definition every surface uses (records.Counts): the
	// boards' results with the batch's quantity and refusals.
	Counts       records.Counts
	YieldPercent float64 // Counts.Yield to 0.1, as every surface shows it: provisioned / (provisioned + failed + set aside)
	// FiguresOK is records.FiguresOK over the finished boards and the span from the first start to the
	// last finish; UnitsPerHour, CycleP50 and CycleP90 are meaningful (and shown) only when it holds.
	FiguresOK    bool
	UnitsPerHour float64 // provisioned per hour from the first start to the last finish, to 0.01
	CycleP50     time.Duration
	CycleP90     time.Duration
	CycleMax     time.Duration
	FirstStarted time.Time
	LastFinished time.Time
	Reasons      []ReasonCount      // Pareto order: count descending, then code
	Throughput   []ThroughputBucket // consecutive buckets of whole hours
	Histogram    []HistogramBin     // consecutive bins from zero
}

// summer accumulates a Summary while rows stream past. Per board it keeps one duration.
type summer struct {
	s        Summary
	cycles   []time.Duration
	reasons  map[string]*ReasonCount
	hours    map[int64]*[2]int // unix hour -> provisioned, not passed
	digest   hash.Hash         // over the JSON form of every row: detects a source that changes between passes
	scratch  []byte
	rowIndex int
}

func newSummer() *summer {
	return &summer{reasons: map[string]*ReasonCount{}, hours: map[int64]*[2]int{}, digest: sha256.New()}
}

// add normalises r in place (see normaliseRow) and counts it.
func (m *summer) add(r *BoardRow) error {
	if err := normaliseRow(r); err != nil {
		return fmt.Errorf("board %d (serial %q): %w", m.rowIndex, signed.Clip(r.Serial), err)
	}
	m.rowIndex++
	m.scratch = appendBoardJSON(m.scratch[:0], r)
	m.digest.Write(m.scratch)
	s := &m.s
	s.Boards++
	switch r.Result {
	case ResultProvisioned:
		s.Provisioned++
	case ResultFailed:
		s.Failed++
	case ResultStopped:
		s.Stopped++
	case ResultInProgress:
		s.InProgress++
	}
	if !r.Started.IsZero() && (s.FirstStarted.IsZero() || r.Started.Before(s.FirstStarted)) {
		s.FirstStarted = r.Started
	}
	if r.Result == ResultInProgress {
		return nil
	}
	m.cycles = append(m.cycles, r.CycleTime)
	if !r.Finished.IsZero() {
		if r.Finished.After(s.LastFinished) {
			s.LastFinished = r.Finished
		}
		h := r.Finished.Unix() / 3600
		if r.Finished.Unix() < 0 && r.Finished.Unix()%3600 != 0 {
			h-- // floor, not truncation, for times before 1970
		}
		c := m.hours[h]
		if c == nil {
			c = new([2]int)
			m.hours[h] = c
		}
		if r.Result == ResultProvisioned {
			c[0]++
		} else {
			c[1]++
		}
	}
	if r.Result != ResultProvisioned {
		code := r.ReasonCode
		if code == "" {
			code = "(none)"
		}
		rc := m.reasons[code]
		if rc == nil {
			if len(m.reasons) >= maxDistinctCodes {
				code = "(other)"
				rc = m.reasons[code]
			}
			if rc == nil {
				rc = &ReasonCount{Code: code, Text: r.ReasonText}
				if code == "(other)" {
					rc.Text = "reason codes beyond the first 1000 distinct ones"
				}
				m.reasons[code] = rc
			}
		}
		rc.Count++
	}
	return nil
}

// finish completes the summary; the batch's quantity and refusals complete its counts.
func (m *summer) finish(b *BatchInfo) *Summary {
	s := &m.s
	s.Counts = records.BatchSummary{Batch: records.Batch{Quantity: b.Quantity}, Passed: s.Provisioned, Failed: s.Failed,
		Stopped: s.Stopped, Refused: b.Refused, InProgress: s.InProgress}.Counts()
	if s.Counts.HasYield {
		s.YieldPercent = math.Round(s.Counts.Yield*10) / 10 // as records.Counts.YieldText shows it
	}
	var span time.Duration
	if !s.FirstStarted.IsZero() && s.LastFinished.After(s.FirstStarted) {
		span = s.LastFinished.Sub(s.FirstStarted)
	}
	s.FiguresOK = records.FiguresOK(len(m.cycles), span)
	if s.FiguresOK && span > 0 {
		s.UnitsPerHour = round2(float64(s.Provisioned) / span.Hours())
	}
	slices.Sort(m.cycles)
	if n := len(m.cycles); n > 0 {
		rank := func(p float64) time.Duration { return m.cycles[int(math.Ceil(p*float64(n)))-1] } // nearest rank
		s.CycleMax = m.cycles[n-1]
		if s.FiguresOK {
			s.CycleP50, s.CycleP90 = rank(0.5), rank(0.9)
		}
		s.Histogram = histogram(m.cycles)
	}
	total := 0
	for _, rc := range m.reasons {
		s.Reasons = append(s.Reasons, *rc)
		total += rc.Count
	}
	slices.SortFunc(s.Reasons, func(a, b ReasonCount) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Code, b.Code)
	})
	cum := 0
	for i := range s.Reasons {
		cum += s.Reasons[i].Count
		s.Reasons[i].CumulativePercent = round2(100 * float64(cum) / float64(total))
	}
	s.Throughput = throughput(m.hours)
	return s
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// histogram bins sorted cycle times from zero with the smallest 1-2-5 bin width that needs at most
// maxHistogramBins bins.
func histogram(sorted []time.Duration) []HistogramBin {
	maxV := sorted[len(sorted)-1]
	width := time.Millisecond
	for int64(maxV/width) >= maxHistogramBins {
		width = nextNice(width)
	}
	bins := make([]HistogramBin, int(maxV/width)+1)
	for i := range bins {
		bins[i].From, bins[i].To = time.Duration(i)*width, time.Duration(i+1)*width
	}
	for _, d := range sorted {
		bins[d/width].Count++
	}
	return bins
}

// nextNice steps a 1-2-5 sequence: 1, 2, 5, 10, 20, 50, ...
func nextNice(v time.Duration) time.Duration {
	p := time.Duration(1)
	for p*10 <= v {
		p *= 10
	}
	switch v / p {
	case 1:
		return 2 * p
	case 2:
		return 5 * p
	default:
		return 10 * p
	}
}

// throughput turns per-hour counts into at most maxThroughputBar consecutive buckets of whole hours.
func throughput(hours map[int64]*[2]int) []ThroughputBucket {
	if len(hours) == 0 {
		return nil
	}
	first, last := int64(math.MaxInt64), int64(math.MinInt64)
	for h := range hours {
		first, last = min(first, h), max(last, h)
	}
	span := uint64(last-first) + 1
	width := (span + maxThroughputBar - 1) / maxThroughputBar
	n := (span + width - 1) / width
	out := make([]ThroughputBucket, n)
	for i := range out {
		from := first + int64(uint64(i)*width)
		out[i].From = time.Unix(from*3600, 0).UTC()
		out[i].To = time.Unix((from+int64(width))*3600, 0).UTC()
	}
	for h, c := range hours {
		b := &out[uint64(h-first)/width]
		b.Provisioned += c[0]
		b.NotPassed += c[1]
	}
	return out
}

// normaliseRow makes a row what all three formats show: text cleaned (cleanText) and bounded, times in
// UTC truncated to the millisecond, a known result. JSON carries milliseconds, so normalising first
// keeps the summary the same whichever form it is recomputed from.
func normaliseRow(r *BoardRow) error {
	for _, f := range []struct {
		name string
		p    *string
		max  int
	}{
		{"serial", &r.Serial, maxRowText}, {"EK SHA-256", &r.EKPublicSHA256, maxRowText},
		{"TPM vendor", &r.TPMVendor, maxRowText}, {"TPM firmware", &r.TPMFirmware, maxRowText},
		{"IAK certificate serial", &r.IAKCertSerial, maxRowText}, {"IDevID certificate serial", &r.IDevIDCertSerial, maxRowText},
		{"reason code", &r.ReasonCode, maxRowText}, {"reason text", &r.ReasonText, maxReasonText},
	} {
		if len(*f.p) > f.max {
			return fmt.Errorf("%s is %d bytes, over the report's %d-byte bound", f.name, len(*f.p), f.max)
		}
		*f.p = cleanText(*f.p)
	}
	if r.Serial == "" {
		return errors.New("serial is empty")
	}
	switch r.Result {
	case ResultProvisioned, ResultFailed, ResultStopped, ResultInProgress:
	default:
		return fmt.Errorf("result %q is not one of provisioned, failed, stopped, in_progress", r.Result)
	}
	var err error
	if r.Started, err = normaliseTime("start time", r.Started); err != nil {
		return err
	}
	if r.Finished, err = normaliseTime("finish time", r.Finished); err != nil {
		return err
	}
	if r.CycleTime < 0 {
		return fmt.Errorf("cycle time %v is negative", r.CycleTime)
	}
	r.CycleTime = r.CycleTime.Truncate(time.Millisecond)
	return nil
}

func normaliseTime(what string, t time.Time) (time.Time, error) {
	if t.IsZero() {
		return time.Time{}, nil
	}
	t = t.UTC().Truncate(time.Millisecond)
	if t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, fmt.Errorf("%s %v is outside the years 1970..9999", what, t.Format(time.RFC3339))
	}
	return t, nil
}

// cleanText replaces invalid UTF-8 and control characters with U+FFFD, so that every format shows the
// same text and none can break a CSV line or a PDF cell. It is idempotent.
func cleanText(s string) string {
	ok := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return utf8.RuneError
		}
		return r
	}, strings.ToValidUTF8(s, string(utf8.RuneError)))
}

// boardJSON fixes the JSON field order of a board.
type boardJSON struct {
	Serial           string `json:"serial"`
	EKPublicSHA256   string `json:"ek_public_sha256"`
	TPMVendor        string `json:"tpm_vendor"`
	TPMFirmware      string `json:"tpm_firmware"`
	IAKCertSerial    string `json:"iak_cert_serial"`
	IDevIDCertSerial string `json:"idevid_cert_serial"`
	Result           string `json:"result"`
	ReasonCode       string `json:"reason_code"`
	ReasonText       string `json:"reason_text"`
	Started          string `json:"started"`
	Finished         string `json:"finished"`
	CycleTimeMS      int64  `json:"cycle_time_ms"`
}

const msTime = "2006-01-02T15:04:05.000Z"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(msTime)
}

func appendBoardJSON(b []byte, r *BoardRow) []byte {
	out, err := json.Marshal(boardJSON{r.Serial, r.EKPublicSHA256, r.TPMVendor, r.TPMFirmware, r.IAKCertSerial, r.IDevIDCertSerial,
		r.Result, r.ReasonCode, r.ReasonText, fmtTime(r.Started), fmtTime(r.Finished), r.CycleTime.Milliseconds()})
	if err != nil {
		panic(err) // strings and an int64 always marshal
	}
	return append(b, out...)
}

// generatedAt is the report's fixed date (Options.GeneratedAt).
func generatedAt(b *BatchInfo, o *Options) time.Time {
	t := o.GeneratedAt
	if t.IsZero() {
		t = b.Closed
	}
	if t.IsZero() {
		t = b.Opened
	}
	return t.UTC().Truncate(time.Second)
}

// checkBatch cleans and bounds the batch fields in place.
func checkBatch(b *BatchInfo) error {
	if b.ID == "" {
		return errors.New("report: batch ID is empty")
	}
	for _, f := range []struct {
		name string
		p    *string
	}{{"batch ID", &b.ID}, {"product", &b.Product}, {"work order", &b.WorkOrder}} {
		if len(*f.p) > maxRowText {
			return fmt.Errorf("report: %s is over %d bytes", f.name, maxRowText)
		}
		*f.p = cleanText(*f.p)
	}
	for _, l := range []struct {
		name string
		p    *[]string
	}{{"stations", &b.Stations}, {"operators", &b.Operators}} {
		if len(*l.p) > maxListItems {
			return fmt.Errorf("report: %d %s, over the bound of %d", len(*l.p), l.name, maxListItems)
		}
		c := make([]string, len(*l.p))
		for i, s := range *l.p {
			if len(s) > maxRowText {
				return fmt.Errorf("report: one of the %s is over %d bytes", l.name, maxRowText)
			}
			c[i] = cleanText(s)
		}
		*l.p = c
	}
	if b.Refused < 0 {
		return fmt.Errorf("report: refused count %d is negative", b.Refused)
	}
	if b.Quantity < 0 {
		return fmt.Errorf("report: quantity %d is negative", b.Quantity)
	}
	var err error
	if b.Opened, err = normaliseTime("report: batch open time", b.Opened); err != nil {
		return err
	}
	if b.Closed, err = normaliseTime("report: batch close time", b.Closed); err != nil {
		return err
	}
	// Whole seconds: the JSON carries these to the second.
	b.Opened, b.Closed = b.Opened.Truncate(time.Second), b.Closed.Truncate(time.Second)
	return nil
}

// maxDivergences bounds the divergences a report lists; the station lists the first ones and says how
// many more there were.
const maxDivergences = 100

// Bounds on the checkpoint a report carries.
const (
	maxCheckpoint          = 1 << 10
	maxCheckpointSignature = 32 << 10
)

func checkAudit(a *AuditInfo) error {
	if a.EventCount < 0 || a.ChainSeq < 0 {
		return errors.New("report: audit event count or chain position is negative")
	}
	if len(a.ChainHead) > 128 || !signed.IsLowerHex(a.ChainHead) {
		return errors.New("report: audit chain head is not lowercase hex of at most 128 digits")
	}
	if a.Unverified != (len(a.Divergences) > 0) {
		return errors.New("report: an unverified report names its divergences, and only an unverified one")
	}
	if len(a.Divergences) > maxDivergences {
		return fmt.Errorf("report: %d divergences, over the bound of %d", len(a.Divergences), maxDivergences)
	}
	if len(a.Checkpoint) > maxCheckpoint || len(a.CheckpointSignature) > maxCheckpointSignature ||
		(a.Checkpoint == "") != (len(a.CheckpointSignature) == 0) || !utf8.ValidString(a.Checkpoint) || strings.Contains(a.Checkpoint, "\r") {
		return errors.New("report: a checkpoint comes with its signature, at most 1 KiB of text and 32 KiB of signature")
	}
	for _, d := range a.Divergences {
		if len(d) > 1024 || !utf8.ValidString(d) || strings.ContainsAny(d, "\r\n") {
			return errors.New("report: a divergence line is not one line of UTF-8 of at most 1024 bytes")
		}
	}
	return nil
}
