// Package qa owns the station's QA use cases: assembling a batch's audit report from the inventory
// (reports renders it), collecting a batch's provisioned boards as an EK list, exporting that list as a
// signed file or pushing it to the upstream CA, and recording each export in the inventory.
//
// It consumes the inventory through the Store interface it declares (cmd/station wires *inventory.Store)
// and the CA through EKListPusher. It is apart from package station so that the per-board flow, which the
// terminal's wiring links, never links the PDF library.
package qa

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ekcert"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/reports"
	"github.com/tpmline/tpmline/reports/signed"
)

// Store is what the QA use cases need of the inventory.
type Store interface {
	GetBatch(ctx context.Context, id string) (*records.Batch, error)
	ListBatches(ctx context.Context, state string) ([]records.BatchSummary, error)
	ListBoards(ctx context.Context, batch string, fn func(*records.Board) error) error
	ListCertificates(ctx context.Context, serial string) ([]records.Certificate, error)
	VerifyChain(ctx context.Context, batch string) (records.ChainStatus, error)
	VerifyState(ctx context.Context, batch string) (records.ChainStatus, []records.Divergence, error)
	RecordEKListExport(ctx context.Context, e records.EKListExport) (*records.EKListExport, error)
	MarkEKListPushed(ctx context.Context, id int64) (*records.EKListExport, error)
}

// EKListPusher is the upstream CA's EK list intake (*provisioning.Client).
type EKListPusher interface {
	PushEKList(ctx context.Context, up *provisioning.EKListUpload) (*provisioning.EKListResult, error)
}

// BatchReport maps the inventory onto the report's input: the batch, a source of its board rows (read
// from the inventory each time it is walked) and the audit chain's state. It verifies the batch first
// (VerifyBatch) and refuses with a *records.StateError when the tables disagree with the chain or the
// chain is broken; BatchReportWith can write such a report marked unverified instead.
func BatchReport(ctx context.Context, st Store, id string) (reports.BatchInfo, reports.BoardSource, reports.AuditInfo, error) {
	return BatchReportWith(ctx, st, id, ReportOptions{})
}

// BatchReportWith is BatchReport with options.
func BatchReportWith(ctx context.Context, st Store, id string, o ReportOptions) (reports.BatchInfo, reports.BoardSource, reports.AuditInfo, error) {
	b, err := st.GetBatch(ctx, id)
	if err != nil {
		return reports.BatchInfo{}, nil, reports.AuditInfo{}, err
	}
	v, err := VerifyBatch(ctx, st, id)
	if err != nil {
		return reports.BatchInfo{}, nil, reports.AuditInfo{}, err
	}
	if !v.OK() && !o.AllowUnverified {
		return reports.BatchInfo{}, nil, reports.AuditInfo{}, fmt.Errorf("batch %s: %w; run 'station audit verify --batch %s' (or write it marked unverified)",
			id, v.Err(), id)
	}
	info := reports.BatchInfo{ID: b.ID, Product: b.Product, WorkOrder: b.WorkOrder, Opened: b.OpenedAt, Closed: b.ClosedAt, Quantity: b.Quantity,
		Stations: []string{b.Station}, Operators: []string{b.Operator}}
	sums, err := st.ListBatches(ctx, "")
	if err != nil {
		return info, nil, reports.AuditInfo{}, err
	}
	for _, sm := range sums {
		if sm.ID == id {
			info.Refused = sm.Refused
		}
	}
	if err := st.ListBoards(ctx, id, func(bd *records.Board) error {
		if bd.Station != "" && !slices.Contains(info.Stations, bd.Station) {
			info.Stations = append(info.Stations, bd.Station)
		}
		return nil
	}); err != nil {
		return info, nil, reports.AuditInfo{}, err
	}
	slices.Sort(info.Stations)
	audit := v.auditInfo()
	if o.Signer != nil && v.ChainErr == nil && v.Chain.ChainSeq > 0 {
		if len(o.Signer.Chain) == 0 {
			return info, nil, audit, errors.New("signing the report's checkpoint: the signer has no certificate")
		}
		req, err := SignCheckpoint(&provisioning.Checkpoint{Station: o.Signer.Chain[0].Subject.CommonName, Seq: v.Chain.ChainSeq,
			Hash: v.Chain.ChainHead, Time: clock.Now()}, *o.Signer)
		if err != nil {
			return info, nil, audit, err
		}
		audit.Checkpoint, audit.CheckpointSignature = string(req.Checkpoint), req.Signature
	}
	rows := func(yield func(reports.BoardRow) error) error {
		return st.ListBoards(ctx, id, func(bd *records.Board) error {
			row := reports.BoardRow{Serial: bd.Serial, TPMVendor: bd.TPMManufacturer, TPMFirmware: bd.TPMFirmware,
				ReasonCode: bd.ReasonCode, ReasonText: bd.ReasonText, Started: bd.CreatedAt}
			if len(bd.EKCert) > 0 {
				if c, err := ekcert.Parse(bd.EKCert); err == nil {
					if h, err := signed.EKPublicSHA256(c.X509.PublicKey); err == nil {
						row.EKPublicSHA256 = hex.EncodeToString(h[:])
					}
				}
			}
			switch bd.State {
			case records.StateProvisioned:
				row.Result = reports.ResultProvisioned
			case records.StateFailed:
				row.Result = reports.ResultFailed
			case records.StateStopped:
				row.Result = reports.ResultStopped
			default:
				row.Result = reports.ResultInProgress
			}
			if row.Result != reports.ResultInProgress {
				row.Finished = bd.UpdatedAt
				row.CycleTime = bd.UpdatedAt.Sub(bd.CreatedAt)
			}
			certs, err := st.ListCertificates(ctx, bd.Serial)
			if err != nil {
				return err
			}
			iak, idevid := records.AttemptCertificates(certs, bd.Attempt)
			if iak != nil {
				row.IAKCertSerial = iak.SerialHex
			}
			if idevid != nil {
				row.IDevIDCertSerial = idevid.SerialHex
			}
			return yield(row)
		})
	}
	return info, rows, audit, nil
}

// WriteBatchReports renders a batch's report to each non-empty path (PDF, CSV, JSON), each signed by sg.
// It refuses a batch that does not verify (see BatchReport).
func WriteBatchReports(ctx context.Context, st Store, id string, sg signed.Signer, pdf, csvOut, jsonOut string) (reports.AuditInfo, error) {
	return WriteBatchReportsWith(ctx, st, id, sg, pdf, csvOut, jsonOut, ReportOptions{})
}

// WriteBatchReportsWith is WriteBatchReports with options.
func WriteBatchReportsWith(ctx context.Context, st Store, id string, sg signed.Signer, pdf, csvOut, jsonOut string, o ReportOptions) (reports.AuditInfo, error) {
	if o.Signer == nil {
		o.Signer = &sg
	}
	info, rows, audit, err := BatchReportWith(ctx, st, id, o)
	if err != nil {
		return audit, err
	}
	now := clock.Now()
	for _, o := range []struct {
		path  string
		write func(io.Writer, reports.BatchInfo, reports.BoardSource, reports.AuditInfo, reports.Options) error
	}{{pdf, reports.WritePDF}, {csvOut, reports.WriteCSV}, {jsonOut, reports.WriteJSON}} {
		if o.path == "" {
			continue
		}
		var buf bytes.Buffer
		// The report says when it was made (its "Report generated"), not when the batch opened.
		if err := o.write(&buf, info, rows, audit, reports.Options{GeneratedAt: now}); err != nil {
			return audit, fmt.Errorf("%s: %w", o.path, err)
		}
		if err := WriteSigned(o.path, buf.Bytes(), sg); err != nil {
			return audit, err
		}
	}
	return audit, nil
}

// ReportMatch is what comparing a JSON batch report with the inventory found.
type ReportMatch struct {
	// Audit is the inventory's audit state for the report's batch now.
	Audit reports.AuditInfo
	// Verification is the replay of the inventory's chain against its tables; when it is not OK the
	// report was not compared (Match false).
	Verification *Verification
	// Match is true when the report is byte for byte what the inventory's verified state gives for its
	// batch today.
	Match bool
}

// CompareReportJSON checks a JSON batch report (content, read as rep) against the state the inventory's
// audit chain implies: it replays the chain and compares it with the tables (VerifyBatch), and only when
// they agree renders the report's batch again, at the report's generation time, and compares the bytes.
// The rows are then read from tables proven equal, field by field, to the replayed state, so an edited
// row, a removed event or a changed chain head shows either as a divergence or as different bytes.
func CompareReportJSON(ctx context.Context, st Store, rep *reports.Report, content []byte) (*ReportMatch, error) {
	v, err := VerifyBatch(ctx, st, rep.Batch.ID)
	if err != nil {
		return nil, err
	}
	if !v.OK() {
		return &ReportMatch{Audit: v.auditInfo(), Verification: v}, nil
	}
	info, rows, audit, err := BatchReport(ctx, st, rep.Batch.ID)
	if err != nil {
		return nil, err
	}
	// The checkpoint cannot be made again (a signature is not reproducible): the report's own is rendered,
	// and CheckReportCheckpoint checks it.
	audit.Checkpoint, audit.CheckpointSignature = rep.Audit.Checkpoint, rep.Audit.CheckpointSignature
	var want bytes.Buffer
	if err := reports.WriteJSON(&want, info, rows, audit, reports.Options{GeneratedAt: rep.GeneratedAt}); err != nil {
		return nil, err
	}
	return &ReportMatch{Audit: audit, Verification: v, Match: bytes.Equal(want.Bytes(), content)}, nil
}

// EKListEntries collects a batch's provisioned boards as EK list entries. It refuses a batch whose
// tables disagree with its audit chain (VerifyBatch): a list the CA trusts must not carry an edited EK.
func EKListEntries(ctx context.Context, st Store, batch string) ([]signed.EKListEntry, error) {
	v, err := VerifyBatch(ctx, st, batch)
	if err != nil {
		return nil, err
	}
	if !v.OK() {
		return nil, fmt.Errorf("batch %s: %w; run 'station audit verify --batch %s'", batch, v.Err(), batch)
	}
	var out []signed.EKListEntry
	err = st.ListBoards(ctx, batch, func(b *records.Board) error {
		if b.State != records.StateProvisioned {
			return nil
		}
		e, err := ekListEntry(b)
		if err != nil {
			return fmt.Errorf("board %s: %w", b.Serial, err)
		}
		out = append(out, *e)
		return nil
	})
	return out, err
}

func ekListEntry(b *records.Board) (*signed.EKListEntry, error) {
	cert, err := ekcert.Parse(b.EKCert)
	if err != nil {
		return nil, fmt.Errorf("recorded EK certificate: %w", err)
	}
	h, err := signed.EKPublicSHA256(cert.X509.PublicKey)
	if err != nil {
		return nil, err
	}
	return &signed.EKListEntry{Serial: b.Serial, EKCert: cert.DER, EKPublic: b.EKPublic, EKPublicSHA256: hex.EncodeToString(h[:]),
		TPMManufacturer: b.TPMManufacturer, TPMModel: b.TPMVendor, TPMFirmware: b.TPMFirmware}, nil
}

// ExportEKList writes batch b's EK list in format ("csv" or "json") to out, signs it by sg into out.sig,
// and records the export (by station) in the inventory. It returns the number of boards listed.
func ExportEKList(ctx context.Context, st Store, b *records.Batch, format, station, out string, sg signed.Signer) (int, error) {
	entries, err := EKListEntries(ctx, st, b.ID)
	if err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	i := 0
	if err := signed.WriteEKList(&buf, format, signed.EKListHeader{Batch: b.ID, Product: b.Product, Station: station,
		Created: clock.Now(), Entries: len(entries)}, func() (*signed.EKListEntry, error) {
		if i == len(entries) {
			return nil, io.EOF
		}
		i++
		return &entries[i-1], nil
	}); err != nil {
		return 0, err
	}
	if err := WriteSigned(out, buf.Bytes(), sg); err != nil {
		return 0, err
	}
	sum := sha256.Sum256(buf.Bytes())
	if _, err := st.RecordEKListExport(ctx, records.EKListExport{Batch: b.ID, Format: format, FileSHA256: hex.EncodeToString(sum[:]),
		Boards: len(entries), Station: station}); err != nil {
		return 0, err
	}
	return len(entries), nil
}

// ErrNothingToList: the batch has no provisioned board, so there is no EK list to push.
var ErrNothingToList = errors.New("no provisioned boards to list")

// PushError is the CA refusing or not answering an EK list push; nothing was recorded.
type PushError struct{ Err error }

func (e *PushError) Error() string { return "pushing the EK list: " + e.Err.Error() }
func (e *PushError) Unwrap() error { return e.Err }

// PushEKList sends batch's EK list to the CA and records the push (by station) in the inventory. A CA
// failure is a *PushError; a batch without provisioned boards is ErrNothingToList.
func PushEKList(ctx context.Context, st Store, ca EKListPusher, batch, station string) (*provisioning.EKListResult, error) {
	entries, err := EKListEntries(ctx, st, batch)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("batch %s: %w", batch, ErrNothingToList)
	}
	up := &provisioning.EKListUpload{Batch: batch}
	for _, e := range entries {
		up.Entries = append(up.Entries, provisioning.EKListEntry{Serial: e.Serial, EKCert: e.EKCert, EKPublic: e.EKPublic,
			EKPublicSHA256: e.EKPublicSHA256, TPMManufacturer: e.TPMManufacturer, TPMModel: e.TPMModel, TPMFirmware: e.TPMFirmware})
	}
	res, err := ca.PushEKList(ctx, up)
	if err != nil {
		return nil, &PushError{Err: err}
	}
	exp, err := st.RecordEKListExport(ctx, records.EKListExport{Batch: batch, Format: "push", Boards: len(entries), Station: station,
		FileSHA256: strings.Repeat("0", 64)})
	if err == nil {
		_, err = st.MarkEKListPushed(ctx, exp.ID)
	}
	if err != nil {
		return res, fmt.Errorf("the CA took the list but recording the push failed: %w", err)
	}
	return res, nil
}

// WriteSigned writes content to path and its detached signature to path.sig, each atomically.
func WriteSigned(path string, content []byte, sg signed.Signer) error {
	sig, err := sg.Sign(bytes.NewReader(content), clock.Now())
	if err != nil {
		return fmt.Errorf("signing %s: %w", path, err)
	}
	if err := writeAtomic(path, content); err != nil {
		return err
	}
	return writeAtomic(path+".sig", sig)
}

// writeAtomic leaves either the old file or the whole new one at path, never a torn write.
func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
