package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ekcert"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/reports"
	"github.com/tpmline/tpmline/reports/signed"
	"github.com/tpmline/tpmline/station"
)

// signer is the station's signing identity: its mutual-TLS client key and certificate.
func signer(s *station.Settings) (signed.Signer, error) {
	if s.ClientCert == "" || s.ClientKey == "" {
		return signed.Signer{}, usagef("signing needs the station's --client-cert and --client-key (or client_cert, client_key in --config)")
	}
	kp, err := tls.LoadX509KeyPair(s.ClientCert, s.ClientKey)
	if err != nil {
		return signed.Signer{}, usagef("loading the station's signing key: %v", err)
	}
	key, ok := kp.PrivateKey.(crypto.Signer)
	if !ok {
		return signed.Signer{}, usagef("the station's key cannot sign")
	}
	var chain []*x509.Certificate
	for _, der := range kp.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return signed.Signer{}, usagef("the station's certificate: %v", err)
		}
		chain = append(chain, c)
	}
	return signed.Signer{Key: key, Chain: chain}, nil
}

// writeSigned writes content to path and its detached signature to path.sig, each atomically.
func writeSigned(path string, content []byte, sg signed.Signer) error {
	sig, err := sg.Sign(bytes.NewReader(content), clock.Now())
	if err != nil {
		return fmt.Errorf("signing %s: %w", path, err)
	}
	if err := writeAtomic(path, content); err != nil {
		return err
	}
	return writeAtomic(path+".sig", sig)
}

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

// ekListEntries collects a batch's provisioned boards as EK list entries.
func ekListEntries(ctx context.Context, inv *inventory.Store, batch string) ([]signed.EKListEntry, error) {
	var out []signed.EKListEntry
	err := inv.ListBoards(ctx, batch, func(b *records.Board) error {
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

func cmdEKListExport(ctx context.Context, g *globals, args []string) error {
	fs := g.flags("ek-list export")
	batch := fs.String("batch", "", "batch ID")
	format := fs.String("format", "json", "csv or json")
	out := fs.String("out", "", "output file (its signature goes to FILE.sig)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *batch == "" || *out == "" || (*format != "csv" && *format != "json") {
		return usagef("--batch, --out and --format csv|json are required")
	}
	return withInventory(ctx, g, func(s *station.Settings, inv *inventory.Store) error {
		sg, err := signer(s)
		if err != nil {
			return err
		}
		b, err := inv.GetBatch(ctx, *batch)
		if err != nil {
			return usagef("%v", err)
		}
		entries, err := ekListEntries(ctx, inv, *batch)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		i := 0
		if err := signed.WriteEKList(&buf, *format, signed.EKListHeader{Batch: b.ID, Product: b.Product, Station: s.StationID,
			Created: clock.Now(), Entries: len(entries)}, func() (*signed.EKListEntry, error) {
			if i == len(entries) {
				return nil, io.EOF
			}
			i++
			return &entries[i-1], nil
		}); err != nil {
			return err
		}
		if err := writeSigned(*out, buf.Bytes(), sg); err != nil {
			return err
		}
		sum := sha256.Sum256(buf.Bytes())
		if _, err := inv.RecordEKListExport(ctx, records.EKListExport{Batch: b.ID, Format: *format, FileSHA256: hex.EncodeToString(sum[:]),
			Boards: len(entries), Station: s.StationID}); err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "EK list of batch %s: %d boards to %s (signature %s.sig)\n", b.ID, len(entries), *out, *out)
		return nil
	})
}

func cmdEKListPush(ctx context.Context, g *globals, args []string) error {
	fs := g.flags("ek-list push")
	batch := fs.String("batch", "", "batch ID")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *batch == "" {
		return usagef("--batch is required")
	}
	return withInventory(ctx, g, func(s *station.Settings, inv *inventory.Store) error {
		client, err := caClient(s)
		if err != nil {
			return err
		}
		if _, err := inv.GetBatch(ctx, *batch); err != nil {
			return usagef("%v", err)
		}
		entries, err := ekListEntries(ctx, inv, *batch)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			return usagef("batch %s has no provisioned boards to list", *batch)
		}
		up := &provisioning.EKListUpload{Batch: *batch}
		for _, e := range entries {
			up.Entries = append(up.Entries, provisioning.EKListEntry{Serial: e.Serial, EKCert: e.EKCert, EKPublic: e.EKPublic,
				EKPublicSHA256: e.EKPublicSHA256, TPMManufacturer: e.TPMManufacturer, TPMModel: e.TPMModel, TPMFirmware: e.TPMFirmware})
		}
		res, err := client.PushEKList(ctx, up)
		if err != nil {
			fmt.Fprintf(g.stderr, "EK list of batch %s not pushed: %v; check the CA link and retry\n", *batch, err)
			return errFailed
		}
		exp, err := inv.RecordEKListExport(ctx, records.EKListExport{Batch: *batch, Format: "push", Boards: len(entries), Station: s.StationID,
			FileSHA256: strings.Repeat("0", 64)})
		if err == nil {
			_, err = inv.MarkEKListPushed(ctx, exp.ID)
		}
		if err != nil {
			return fmt.Errorf("the CA took the list but recording the push failed: %w", err)
		}
		fmt.Fprintf(g.stdout, "EK list of batch %s pushed: %d entries, %d new at the CA\n", *batch, res.Received, res.Added)
		return nil
	})
}

// batchReport maps the inventory onto the report's input.
func batchReport(ctx context.Context, inv *inventory.Store, id string) (reports.BatchInfo, reports.BoardSource, reports.AuditInfo, error) {
	b, err := inv.GetBatch(ctx, id)
	if err != nil {
		return reports.BatchInfo{}, nil, reports.AuditInfo{}, err
	}
	info := reports.BatchInfo{ID: b.ID, Product: b.Product, WorkOrder: b.WorkOrder, Opened: b.OpenedAt, Closed: b.ClosedAt, Quantity: b.Quantity,
		Stations: []string{b.Station}, Operators: []string{b.Operator}}
	sums, err := inv.ListBatches(ctx, "")
	if err != nil {
		return info, nil, reports.AuditInfo{}, err
	}
	for _, sm := range sums {
		if sm.ID == id {
			info.Refused = sm.Refused
		}
	}
	if err := inv.ListBoards(ctx, id, func(bd *records.Board) error {
		if bd.Station != "" && !slices.Contains(info.Stations, bd.Station) {
			info.Stations = append(info.Stations, bd.Station)
		}
		return nil
	}); err != nil {
		return info, nil, reports.AuditInfo{}, err
	}
	slices.Sort(info.Stations)
	chain, err := inv.VerifyChain(ctx, id)
	audit := reports.AuditInfo{EventCount: chain.Count, ChainHead: chain.Head, ChainVerified: err == nil}
	if err != nil && !errors.Is(err, records.ErrChainBroken) {
		return info, nil, audit, err
	}
	rows := func(yield func(reports.BoardRow) error) error {
		return inv.ListBoards(ctx, id, func(bd *records.Board) error {
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
			certs, err := inv.ListCertificates(ctx, bd.Serial)
			if err != nil {
				return err
			}
			for _, c := range certs {
				if c.Attempt != bd.Attempt {
					continue
				}
				if c.Kind == records.KindIAK {
					row.IAKCertSerial = c.SerialHex
				} else if c.Kind == records.KindIDevID {
					row.IDevIDCertSerial = c.SerialHex
				}
			}
			return yield(row)
		})
	}
	return info, rows, audit, nil
}

func cmdReportBatch(ctx context.Context, g *globals, args []string) error {
	fs := g.flags("report batch")
	id := fs.String("batch", "", "batch ID")
	pdf := fs.String("pdf", "", "PDF file")
	csvOut := fs.String("csv", "", "CSV file")
	jsonOut := fs.String("json", "", "JSON file")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *id == "" || (*pdf == "" && *csvOut == "" && *jsonOut == "") {
		return usagef("--batch and at least one of --pdf, --csv, --json are required")
	}
	return withInventory(ctx, g, func(s *station.Settings, inv *inventory.Store) error {
		sg, err := signer(s)
		if err != nil {
			return err
		}
		audit, err := writeBatchReports(ctx, inv, *id, sg, *pdf, *csvOut, *jsonOut)
		if err != nil {
			if errors.Is(err, records.ErrBatchNotFound) {
				return usagef("%v", err)
			}
			return err
		}
		for _, p := range []string{*pdf, *csvOut, *jsonOut} {
			if p != "" {
				fmt.Fprintf(g.stdout, "%s (signature %s.sig)\n", p, p)
			}
		}
		if !audit.ChainVerified {
			fmt.Fprintf(g.stderr, "warning: the audit chain of batch %s does not verify; run 'station audit verify --batch %s'\n", *id, *id)
		}
		return nil
	})
}

// writeBatchReports renders a batch's report to each non-empty path (PDF, CSV, JSON), each signed.
func writeBatchReports(ctx context.Context, inv *inventory.Store, id string, sg signed.Signer, pdf, csvOut, jsonOut string) (reports.AuditInfo, error) {
	info, rows, audit, err := batchReport(ctx, inv, id)
	if err != nil {
		return audit, err
	}
	for _, o := range []struct {
		path  string
		write func(io.Writer, reports.BatchInfo, reports.BoardSource, reports.AuditInfo, reports.Options) error
	}{{pdf, reports.WritePDF}, {csvOut, reports.WriteCSV}, {jsonOut, reports.WriteJSON}} {
		if o.path == "" {
			continue
		}
		var buf bytes.Buffer
		if err := o.write(&buf, info, rows, audit, reports.Options{}); err != nil {
			return audit, fmt.Errorf("%s: %w", o.path, err)
		}
		if err := writeSigned(o.path, buf.Bytes(), sg); err != nil {
			return audit, err
		}
	}
	return audit, nil
}

func cmdReportVerify(ctx context.Context, g *globals, args []string) error {
	fs := g.flags("report verify")
	sigPath := fs.String("sig", "", "detached signature (default FILE.sig)")
	trust := fs.String("trust", "", "PEM trust anchor the station certificate must chain to (optional)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("give one report file")
	}
	path := fs.Arg(0)
	if *sigPath == "" {
		*sigPath = path + ".sig"
	}
	content, err := os.ReadFile(path)
	if err != nil {
		return usagef("%v", err)
	}
	sig, err := os.ReadFile(*sigPath)
	if err != nil {
		return usagef("%v", err)
	}
	var roots *x509.CertPool
	if *trust != "" {
		pemb, err := os.ReadFile(*trust)
		if err != nil {
			return usagef("%v", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pemb) {
			return usagef("%s holds no PEM certificate", *trust)
		}
	}
	ver, err := signed.Verify(content, sig, roots)
	if err != nil {
		fmt.Fprintf(g.stderr, "%s: signature INVALID: %v\n", path, err)
		return errFailed
	}
	fmt.Fprintf(g.stdout, "%s: signature OK (station %s, signed %s", path, ver.Signer().Subject.CommonName, ver.SignedAt.Format(time.RFC3339))
	if ver.ChainVerified {
		fmt.Fprint(g.stdout, ", chain to the trust anchor OK")
	}
	fmt.Fprintln(g.stdout, ")")
	if !strings.HasSuffix(strings.ToLower(path), ".json") {
		return nil
	}
	// A JSON report is also compared with the database: the audit chain and every board row.
	s, err := g.settings()
	if err != nil {
		return err
	}
	if _, err := os.Stat(strings.TrimPrefix(s.DB, "sqlite://")); strings.HasPrefix(s.DB, "sqlite://") && err != nil {
		fmt.Fprintln(g.stdout, "no inventory given (--db): not compared with the audit trail")
		return nil
	}
	rep, err := reports.ReadReportJSON(bytes.NewReader(content), 10_000_000)
	if err != nil {
		fmt.Fprintf(g.stderr, "%s: unreadable report: %v\n", path, err)
		return errFailed
	}
	return withInventory(ctx, g, func(s *station.Settings, inv *inventory.Store) error {
		info, rows, audit, err := batchReport(ctx, inv, rep.Batch.ID)
		if err != nil {
			return err
		}
		var want bytes.Buffer
		if err := reports.WriteJSON(&want, info, rows, audit, reports.Options{GeneratedAt: rep.GeneratedAt}); err != nil {
			return err
		}
		if !audit.ChainVerified {
			fmt.Fprintf(g.stderr, "%s: the inventory's audit chain is broken; run 'station audit verify --batch %s'\n", path, rep.Batch.ID)
			return errFailed
		}
		if !bytes.Equal(want.Bytes(), content) {
			fmt.Fprintf(g.stderr, "%s: does NOT match the inventory's audit trail for batch %s (report chain head %s, inventory %s)\n",
				path, rep.Batch.ID, short(rep.Audit.ChainHead), short(audit.ChainHead))
			return errFailed
		}
		fmt.Fprintf(g.stdout, "%s: matches the inventory's audit trail (%d events, head %s)\n", path, audit.EventCount, short(audit.ChainHead))
		return nil
	})
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}
