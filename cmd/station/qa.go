package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/reports"
	"github.com/tpmline/tpmline/reports/signed"
	"github.com/tpmline/tpmline/station"
	"github.com/tpmline/tpmline/station/qa"
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
		n, err := qa.ExportEKList(ctx, inv, b, *format, s.StationID, *out, sg)
		if err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "EK list of batch %s: %d boards to %s (signature %s.sig)\n", b.ID, n, *out, *out)
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
		res, err := qa.PushEKList(ctx, inv, client, *batch, s.StationID)
		var pe *qa.PushError
		switch {
		case errors.Is(err, qa.ErrNothingToList):
			return usagef("batch %s has no provisioned boards to list", *batch)
		case errors.As(err, &pe):
			fmt.Fprintf(g.stderr, "EK list of batch %s not pushed: %v; check the CA link and retry\n", *batch, pe.Err)
			return errFailed
		case err != nil:
			return err
		}
		fmt.Fprintf(g.stdout, "EK list of batch %s pushed: %d entries, %d new at the CA\n", *batch, res.Received, res.Added)
		return nil
	})
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
		audit, err := qa.WriteBatchReports(ctx, inv, *id, sg, *pdf, *csvOut, *jsonOut)
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
		m, err := qa.CompareReportJSON(ctx, inv, rep, content)
		if err != nil {
			return err
		}
		audit := m.Audit
		if !audit.ChainVerified {
			fmt.Fprintf(g.stderr, "%s: the inventory's audit chain is broken; run 'station audit verify --batch %s'\n", path, rep.Batch.ID)
			return errFailed
		}
		if !m.Match {
			// The batch may simply have gone on since the report: then the trail still holds the report's
			// last event at the report's position.
			pos, err := qa.ReportPosition(ctx, batchEvents(inv), rep)
			if err != nil {
				return err
			}
			if pos.Prefix && pos.Since > 0 {
				fmt.Fprintf(g.stdout, "%s: matches the inventory's audit trail up to the report's position (event %d of batch %s, head %s); the batch has %d events since this report\n",
					path, rep.Audit.EventCount, rep.Batch.ID, short(rep.Audit.ChainHead), pos.Since)
				return nil
			}
			why := pos.Why
			if pos.Prefix {
				why = "same audit position, different content"
			}
			fmt.Fprintf(g.stderr, "%s: does NOT match the inventory's audit trail for batch %s: %s (report chain head %s, inventory %s)\n",
				path, rep.Batch.ID, why, short(rep.Audit.ChainHead), short(audit.ChainHead))
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

// batchEvents streams a batch's audit events for qa.ReportPosition.
func batchEvents(inv *inventory.Store) qa.EventSource {
	return func(ctx context.Context, batch string, fn func(*records.Event) error) error {
		return inv.ListEvents(ctx, inventory.EventFilter{Batch: batch}, fn)
	}
}
