package signed

import (
	"bufio"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/tpmline/tpmline/records"
)

// EKListFormat is the format version every EK list file starts with (docs/ek-list.md).
const EKListFormat = "tpmline-ek-list/1"

// Bounds of an EK list. They match what the upstream CA accepts (provisioning.Max*), so a list this
// package writes is never refused for its size.
const (
	MaxEKListEntries  = 1_000_000
	maxTPMStringLen   = 64
	maxBatchLen       = 128
	maxProductLen     = 64
	maxStationLen     = 128
	maxEKListLine     = 16 << 10 // one CSV line: an entry is at most ~7 KiB
	maxEKListEntryLen = 16 << 10 // one JSON entry, the same bound
)

// EKListHeader describes one EK list file.
type EKListHeader struct {
	Batch   string
	Product string
	Station string
	Created time.Time // written in UTC to the second
	Entries int       // the number of entries that follow; the reader insists on it
}

// EKListEntry is one board. EKCert and EKPublic are optional each, but one of them is required; when both
// are given they hold the same key. EKPublicSHA256 must equal EKPublicSHA256 of that key.
type EKListEntry struct {
	Serial          string
	EKCert          []byte // DER X.509, as normalised by the station (no NV header, no padding)
	EKPublic        []byte // marshalled TPMT_PUBLIC
	EKPublicSHA256  string // lowercase hex SHA-256 of the key's DER SubjectPublicKeyInfo
	TPMManufacturer string // TPM_PT_MANUFACTURER, e.g. "IFX"
	TPMModel        string // the TPM's vendor string
	TPMFirmware     string // e.g. "7.85"
}

// EKList is a whole EK list as ReadEKList returns it.
type EKList struct {
	Header  EKListHeader
	Entries []EKListEntry
}

var ekListColumns = []string{"serial", "ek_public_sha256", "tpm_manufacturer", "tpm_model", "tpm_firmware", "ek_public", "ek_cert"}
var ekListHeaderColumns = []string{"format", "batch", "product", "station", "created", "entry_count"}

// WriteEKList streams an EK list to w in format "csv" or "json". next returns the entries one at a time
// and io.EOF after the last. Every entry is checked as ReadEKList checks it, so a file written is a file
// that reads back; the number of entries must equal hdr.Entries. On error the output is incomplete and
// must be discarded.
func WriteEKList(w io.Writer, format string, hdr EKListHeader, next func() (*EKListEntry, error)) error {
	if next == nil {
		return errors.New("EK list: no entry source")
	}
	hdr.Created = hdr.Created.UTC().Truncate(time.Second)
	if err := checkEKListHeader(&hdr); err != nil {
		return fmt.Errorf("EK list: %w", err)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var err error
	switch format {
	case "csv":
		err = writeEKListCSV(bw, hdr, next)
	case "json":
		err = writeEKListJSON(bw, hdr, next)
	default:
		return fmt.Errorf("EK list: format %q is not csv or json", Clip(format))
	}
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("EK list: writing: %w", err)
	}
	return nil
}

// pull gets entry i from next and checks it and the count.
func pull(next func() (*EKListEntry, error), i, want int) (*EKListEntry, error) {
	e, err := next()
	if errors.Is(err, io.EOF) {
		if i != want {
			return nil, fmt.Errorf("EK list: the header says %d entries but the source gave %d", want, i)
		}
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("EK list: reading entry %d: %w", i, err)
	}
	if e == nil {
		return nil, fmt.Errorf("EK list: the source gave no entry at %d (end the list with io.EOF)", i)
	}
	if i >= want {
		return nil, fmt.Errorf("EK list: the header says %d entries but the source has more", want)
	}
	if err := checkEKListEntry(e, false); err != nil {
		return nil, fmt.Errorf("EK list: entry %d (serial %q): %w", i, Clip(e.Serial), err)
	}
	return e, nil
}

func writeEKListCSV(w *bufio.Writer, hdr EKListHeader, next func() (*EKListEntry, error)) error {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true // RFC 4180
	rec := make([]string, len(ekListColumns))
	write := func(cells []string) error {
		for i, c := range cells {
			rec[i] = Neutralise(c)
		}
		return cw.Write(rec[:len(cells)])
	}
	if err := write(ekListHeaderColumns); err != nil {
		return err
	}
	if err := write([]string{EKListFormat, hdr.Batch, hdr.Product, hdr.Station, hdr.Created.Format(time.RFC3339), strconv.Itoa(hdr.Entries)}); err != nil {
		return err
	}
	if err := write(ekListColumns); err != nil {
		return err
	}
	for i := 0; ; i++ {
		e, err := pull(next, i, hdr.Entries)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := write([]string{e.Serial, e.EKPublicSHA256, e.TPMManufacturer, e.TPMModel, e.TPMFirmware,
			base64.StdEncoding.EncodeToString(e.EKPublic), base64.StdEncoding.EncodeToString(e.EKCert)}); err != nil {
			return err
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("EK list: writing: %w", err)
	}
	return nil
}

// ekListEntryJSON fixes the JSON field order; the names match the upstream CA's EK list entry.
type ekListEntryJSON struct {
	Serial          string `json:"serial"`
	EKPublicSHA256  string `json:"ek_public_sha256"`
	TPMManufacturer string `json:"tpm_manufacturer"`
	TPMModel        string `json:"tpm_model"`
	TPMFirmware     string `json:"tpm_firmware"`
	EKPublic        []byte `json:"ek_public"`
	EKCert          []byte `json:"ek_cert"`
}

func writeEKListJSON(w *bufio.Writer, hdr EKListHeader, next func() (*EKListEntry, error)) error {
	fmt.Fprintf(w, "{\n  \"format\": %s,\n  \"batch\": %s,\n  \"product\": %s,\n  \"station\": %s,\n  \"created\": %s,\n  \"entry_count\": %d,\n  \"entries\": [",
		jsonString(EKListFormat), jsonString(hdr.Batch), jsonString(hdr.Product), jsonString(hdr.Station),
		jsonString(hdr.Created.Format(time.RFC3339)), hdr.Entries)
	for i := 0; ; i++ {
		e, err := pull(next, i, hdr.Entries)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		b, err := json.Marshal(ekListEntryJSON{e.Serial, e.EKPublicSHA256, e.TPMManufacturer, e.TPMModel, e.TPMFirmware, nonNil(e.EKPublic), nonNil(e.EKCert)})
		if err != nil {
			return fmt.Errorf("EK list: entry %d: %w", i, err)
		}
		if i > 0 {
			w.WriteByte(',')
		}
		w.WriteString("\n    ")
		w.Write(b)
	}
	if hdr.Entries > 0 {
		w.WriteString("\n  ")
	}
	_, err := w.WriteString("]\n}\n")
	return err
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func jsonString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

// ReadEKList reads and checks a whole EK list, CSV or JSON (told apart by the first byte), holding at most
// maxEntries entries (MaxEKListEntries when maxEntries <= 0). It is strict: the checks are
//
//   - the input is at most 4 KiB plus 16 KiB per allowed entry, and a CSV line at most 16 KiB;
//   - the format is EKListFormat; batch, product and station are present, printable ASCII and bounded;
//     created is an RFC 3339 UTC time to the second; the entry count is a plain non-negative integer;
//   - JSON: exactly the documented fields, each once, each a string (entry_count a number), nothing after
//     the object; CSV: the documented header rows and columns in order, every row the right width;
//   - no CSV cell starts with = + - @ TAB or CR (a writer neutralises those with a leading quote, which
//     the reader keeps: the neutralised cell is what was signed);
//   - per entry: the serial as the upstream CA accepts it (letters, digits, space and '()+,-./:=?, at
//     most 64), TPM strings printable ASCII of at most 64 bytes, strict base64, an EK certificate of one
//     DER structure of at most 4096 bytes whose key parses, an EK public of exactly one RSA or ECC
//     TPMT_PUBLIC of at most 1024 bytes, at least one of the two, ek_public_sha256 64 lowercase hex
//     digits equal to the SHA-256 of every key given (so certificate and public hold the same key);
//   - the number of entries equals the header's and is at most maxEntries.
func ReadEKList(r io.Reader, maxEntries int) (*EKList, error) {
	if maxEntries <= 0 || maxEntries > MaxEKListEntries {
		maxEntries = MaxEKListEntries
	}
	lr := &limitReader{r: r, left: 4096 + int64(maxEntries)*maxEKListEntryLen}
	br := bufio.NewReaderSize(lr, 64<<10)
	first, err := br.Peek(1)
	if err != nil {
		if err == io.EOF {
			return nil, errors.New("EK list is empty")
		}
		return nil, fmt.Errorf("EK list: reading: %w", err)
	}
	var l *EKList
	if first[0] == '{' || first[0] == ' ' || first[0] == '\n' || first[0] == '\t' || first[0] == '\r' {
		l, err = readEKListJSON(br, maxEntries)
	} else {
		l, err = readEKListCSV(br, maxEntries)
	}
	if err != nil {
		return nil, fmt.Errorf("EK list: %w", err)
	}
	return l, nil
}

// BoundedReader reads at most n bytes of r and fails beyond them; unlike io.LimitReader, an input over its
// bound is an error, not a silent truncation that a strict reader would report as malformed.
func BoundedReader(r io.Reader, n int64) io.Reader { return &limitReader{r: r, left: n} }

type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errors.New("input is over its size bound")
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// lineLimitReader fails on a line longer than max so that a hostile CSV cannot make the csv package
// buffer an unbounded record.
type lineLimitReader struct {
	r   io.Reader
	max int
	run int
}

func (l *lineLimitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for _, c := range p[:n] {
		if c == '\n' {
			l.run = 0
		} else if l.run++; l.run > l.max {
			return 0, fmt.Errorf("a line is over %d bytes", l.max)
		}
	}
	return n, err
}

func readEKListCSV(r io.Reader, maxEntries int) (*EKList, error) {
	cr := csv.NewReader(&lineLimitReader{r: r, max: maxEKListLine})
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	row := func(what string, want int) ([]string, error) {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", what, err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != want {
			return nil, fmt.Errorf("line %d: %s has %d columns, want %d", line, what, len(rec), want)
		}
		for i, c := range rec {
			if isFormulaCell(c) {
				return nil, fmt.Errorf("line %d column %d starts with %q, a spreadsheet formula; it must be neutralised with a leading quote", line, i+1, c[:1])
			}
		}
		return rec, nil
	}
	names := func(what string, want []string) error {
		rec, err := row(what, len(want))
		if err == io.EOF {
			return fmt.Errorf("%s is missing", what)
		}
		if err != nil {
			return err
		}
		for i, c := range rec {
			if c != want[i] {
				return fmt.Errorf("%s: column %d is %q, want %q", what, i+1, Clip(c), want[i])
			}
		}
		return nil
	}
	if err := names("the header names row", ekListHeaderColumns); err != nil {
		return nil, err
	}
	rec, err := row("the header row", len(ekListHeaderColumns))
	if err == io.EOF {
		return nil, errors.New("the header row is missing")
	}
	if err != nil {
		return nil, err
	}
	if rec[0] != EKListFormat {
		return nil, fmt.Errorf("format is %q, want %q", Clip(rec[0]), EKListFormat)
	}
	hdr, err := parseEKListHeader(rec[1], rec[2], rec[3], rec[4], rec[5], maxEntries)
	if err != nil {
		return nil, err
	}
	if err := names("the column names row", ekListColumns); err != nil {
		return nil, err
	}
	l := &EKList{Header: *hdr, Entries: make([]EKListEntry, 0, hdr.Entries)}
	for {
		rec, err := row("an entry row", len(ekListColumns))
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		line, _ := cr.FieldPos(0)
		if len(l.Entries) == hdr.Entries {
			return nil, fmt.Errorf("line %d: more entries than the %d the header declares", line, hdr.Entries)
		}
		e := EKListEntry{Serial: rec[0], EKPublicSHA256: rec[1], TPMManufacturer: rec[2], TPMModel: rec[3], TPMFirmware: rec[4]}
		if e.EKPublic, err = decodeB64("ek_public", rec[5], maxEKPublic); err == nil {
			e.EKCert, err = decodeB64("ek_cert", rec[6], maxEKCertDER)
		}
		if err == nil {
			err = checkEKListEntry(&e, true)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d (serial %q): %w", line, Clip(e.Serial), err)
		}
		l.Entries = append(l.Entries, e)
	}
	if len(l.Entries) != hdr.Entries {
		return nil, fmt.Errorf("the header declares %d entries but the file has %d (truncated?)", hdr.Entries, len(l.Entries))
	}
	return l, nil
}

func readEKListJSON(r io.Reader, maxEntries int) (*EKList, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	delim := func(want json.Delim, what string) error {
		t, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%s: %v", what, err)
		}
		if d, ok := t.(json.Delim); !ok || d != want {
			return fmt.Errorf("%s: want %q", what, string(want))
		}
		return nil
	}
	str := func(key string) (string, error) {
		t, err := dec.Token()
		if err != nil {
			return "", fmt.Errorf("%s: %v", key, err)
		}
		s, ok := t.(string)
		if !ok {
			return "", fmt.Errorf("%s is not a string", key)
		}
		return s, nil
	}
	if err := delim('{', "the file is not a JSON object"); err != nil {
		return nil, err
	}
	hdrFields := map[string]*string{}
	var format, batch, product, station, created, count string
	for k, p := range map[string]*string{"format": &format, "batch": &batch, "product": &product, "station": &station, "created": &created} {
		hdrFields[k] = p
	}
	seen := map[string]bool{}
	var entries []EKListEntry
	var hdr *EKListHeader
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := t.(string)
		if seen[key] {
			return nil, fmt.Errorf("field %q appears twice", Clip(key))
		}
		seen[key] = true
		switch {
		case hdrFields[key] != nil:
			if *hdrFields[key], err = str(key); err != nil {
				return nil, err
			}
		case key == "entry_count":
			t, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("entry_count: %v", err)
			}
			n, ok := t.(json.Number)
			if !ok {
				return nil, errors.New("entry_count is not a number")
			}
			count = n.String()
		case key == "entries":
			for _, k := range ekListHeaderColumns {
				if !seen[k] {
					return nil, fmt.Errorf("field %q is missing or comes after \"entries\"", k)
				}
			}
			var err error
			if hdr, err = parseEKListHeader(batch, product, station, created, count, maxEntries); err != nil {
				return nil, err
			}
			if entries, err = readEKListJSONEntries(dec, delim, hdr.Entries); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("unknown field %q", Clip(key))
		}
	}
	if err := delim('}', "the end of the object"); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	for _, k := range []string{"format", "batch", "product", "station", "created", "entry_count", "entries"} {
		if !seen[k] {
			return nil, fmt.Errorf("field %q is missing", k)
		}
	}
	if format != EKListFormat {
		return nil, fmt.Errorf("format is %q, want %q", Clip(format), EKListFormat)
	}
	// The header fields may follow "entries"; check them again now that all are read.
	final, err := parseEKListHeader(batch, product, station, created, count, maxEntries)
	if err != nil {
		return nil, err
	}
	if len(entries) != final.Entries {
		return nil, fmt.Errorf("the header declares %d entries but the file has %d (truncated?)", final.Entries, len(entries))
	}
	return &EKList{Header: *final, Entries: entries}, nil
}

func readEKListJSONEntries(dec *json.Decoder, delim func(json.Delim, string) error, want int) ([]EKListEntry, error) {
	if err := delim('[', "entries is not an array"); err != nil {
		return nil, err
	}
	entries := make([]EKListEntry, 0, want)
	for i := 0; dec.More(); i++ {
		if i == want {
			return nil, fmt.Errorf("more entries than the %d the header declares", want)
		}
		if err := delim('{', fmt.Sprintf("entry %d is not an object", i)); err != nil {
			return nil, err
		}
		var e EKListEntry
		vals := map[string]*string{}
		var pub, cert string
		for k, p := range map[string]*string{"serial": &e.Serial, "ek_public_sha256": &e.EKPublicSHA256, "tpm_manufacturer": &e.TPMManufacturer,
			"tpm_model": &e.TPMModel, "tpm_firmware": &e.TPMFirmware, "ek_public": &pub, "ek_cert": &cert} {
			vals[k] = p
		}
		seen := map[string]bool{}
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("entry %d: %v", i, err)
			}
			key, _ := t.(string)
			p := vals[key]
			if p == nil {
				return nil, fmt.Errorf("entry %d: unknown field %q", i, Clip(key))
			}
			if seen[key] {
				return nil, fmt.Errorf("entry %d: field %q appears twice", i, key)
			}
			seen[key] = true
			t, err = dec.Token()
			if err != nil {
				return nil, fmt.Errorf("entry %d: %s: %v", i, key, err)
			}
			s, ok := t.(string)
			if !ok {
				return nil, fmt.Errorf("entry %d: %s is not a string", i, key)
			}
			*p = s
		}
		if err := delim('}', fmt.Sprintf("entry %d", i)); err != nil {
			return nil, err
		}
		if len(seen) != len(vals) {
			for _, k := range ekListColumns {
				if !seen[k] {
					return nil, fmt.Errorf("entry %d: field %q is missing", i, k)
				}
			}
		}
		var err error
		if e.EKPublic, err = decodeB64("ek_public", pub, maxEKPublic); err == nil {
			e.EKCert, err = decodeB64("ek_cert", cert, maxEKCertDER)
		}
		if err == nil {
			err = checkEKListEntry(&e, false)
		}
		if err != nil {
			return nil, fmt.Errorf("entry %d (serial %q): %w", i, Clip(e.Serial), err)
		}
		entries = append(entries, e)
	}
	if err := delim(']', "the end of entries"); err != nil {
		return nil, err
	}
	return entries, nil
}

func decodeB64(field, s string, max int) ([]byte, error) {
	if len(s) > base64.StdEncoding.EncodedLen(max) {
		return nil, fmt.Errorf("%s is over %d bytes", field, max)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s is not standard base64: %v", field, err)
	}
	if len(b) == 0 {
		return nil, nil
	}
	return b, nil
}

func checkEKListHeader(h *EKListHeader) error {
	if err := checkASCII("batch", h.Batch, maxBatchLen, true); err != nil {
		return err
	}
	if err := checkASCII("product", h.Product, maxProductLen, true); err != nil {
		return err
	}
	if err := checkASCII("station", h.Station, maxStationLen, true); err != nil {
		return err
	}
	if h.Created.IsZero() || h.Created.Year() > 9999 {
		return errors.New("created time is missing or out of range")
	}
	if h.Entries < 0 || h.Entries > MaxEKListEntries {
		return fmt.Errorf("entry count %d is outside 0..%d", h.Entries, MaxEKListEntries)
	}
	return nil
}

func parseEKListHeader(batch, product, station, created, count string, maxEntries int) (*EKListHeader, error) {
	h := &EKListHeader{Batch: batch, Product: product, Station: station}
	t, err := time.Parse(time.RFC3339, created)
	if err != nil || t.Location() != time.UTC || t.Format(time.RFC3339) != created {
		return nil, fmt.Errorf("created %q is not an RFC 3339 UTC time to the second", Clip(created))
	}
	h.Created = t
	n, err := strconv.Atoi(count)
	if err != nil || strconv.Itoa(n) != count {
		return nil, fmt.Errorf("entry count %q is not a plain integer", Clip(count))
	}
	h.Entries = n
	if err := checkEKListHeader(h); err != nil {
		return nil, err
	}
	if n > maxEntries {
		return nil, fmt.Errorf("the header declares %d entries, over the reader's bound of %d", n, maxEntries)
	}
	return h, nil
}

func checkASCII(field, s string, max int, required bool) error {
	if s == "" {
		if required {
			return fmt.Errorf("%s is missing", field)
		}
		return nil
	}
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes, over the %d-byte bound", field, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return fmt.Errorf("%s has a non-printable or non-ASCII byte at offset %d", field, i)
		}
	}
	return nil
}

// unneutralised is the value a cell's checks apply to: a CSV writer's leading quote before a formula
// character is not part of the bound or character set (the cell itself keeps it).
func unneutralised(s string, csv bool) string {
	if csv && len(s) >= 2 && s[0] == '\'' && isFormulaCell(s[1:]) {
		return s[1:]
	}
	return s
}

func checkEKListEntry(e *EKListEntry, fromCSV bool) error {
	if err := checkSerial(unneutralised(e.Serial, fromCSV)); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{
		{"tpm_manufacturer", e.TPMManufacturer}, {"tpm_model", e.TPMModel}, {"tpm_firmware", e.TPMFirmware},
	} {
		if err := checkASCII(f.name, unneutralised(f.v, fromCSV), maxTPMStringLen, false); err != nil {
			return err
		}
	}
	if len(e.EKPublicSHA256) != 64 || !IsLowerHex(e.EKPublicSHA256) {
		return errors.New("ek_public_sha256 is not 64 lowercase hex digits")
	}
	var want [32]byte
	hex.Decode(want[:], []byte(e.EKPublicSHA256))
	if len(e.EKCert) == 0 && len(e.EKPublic) == 0 {
		return errors.New("neither ek_cert nor ek_public is given")
	}
	var fromPublic, fromCert any
	if len(e.EKPublic) > 0 {
		if len(e.EKPublic) > maxEKPublic {
			return fmt.Errorf("ek_public is %d bytes, over the %d-byte bound", len(e.EKPublic), maxEKPublic)
		}
		var err error
		if fromPublic, err = parseTPMTPublic(e.EKPublic); err != nil {
			return fmt.Errorf("ek_public is not a TPMT_PUBLIC: %v", err)
		}
	}
	if len(e.EKCert) > 0 {
		if len(e.EKCert) > maxEKCertDER {
			return fmt.Errorf("ek_cert is %d bytes, over the %d-byte bound", len(e.EKCert), maxEKCertDER)
		}
		var err error
		if fromCert, err = certPublicKey(e.EKCert); err != nil {
			return fmt.Errorf("ek_cert: %v", err)
		}
	}
	key := fromPublic
	if key == nil {
		key = fromCert
	} else if fromCert != nil && !publicKeysEqual(fromPublic, fromCert) {
		return errors.New("ek_cert and ek_public hold different keys")
	}
	if sum, err := EKPublicSHA256(key); err != nil || sum != want {
		return errors.New("ek_public_sha256 is not the SHA-256 of the EK's key")
	}
	return nil
}

// checkSerial applies the upstream CA's serial rule, records.CheckSerial: an X.520 PrintableString,
// as the serial goes into certificate subjects.
func checkSerial(s string) error { return records.CheckSerial(s) }
