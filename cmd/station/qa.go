package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/reports"
	"github.com/tpmline/tpmline/reports/signed"
	"github.com/tpmline/tpmline/station"
	"github.com/tpmline/tpmline/station/qa"
)

// signer is the station's signing identity: its mutual-TLS client key and certificate.
func signer(s *station.Settings) (signed.Signer, error) {
	if !hasClientKey(s) {
		return signed.Signer{}, usagef("signing needs the station's --client-cert and --client-key or --pkcs11-* (or client_cert, client_key or pkcs11 in --config)")
	}
	kp, err := clientCredential(s)
	if err != nil {
		return signed.Signer{}, err
	}
	key, ok := kp.PrivateKey.(crypto.Signer)
	if !ok {
		return signed.Signer{}, refusef("the station's key cannot sign")
	}
	var chain []*x509.Certificate
	for _, der := range kp.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return signed.Signer{}, refusef("the station's certificate: %v", err)
		}
		chain = append(chain, c)
	}
	return signed.Signer{Key: key, Chain: chain}, nil
}

func cmdEKListExport(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	batch := fs.String("batch", "", "batch `ID` (required)")
	format := fs.String("format", "json", "file `FORMAT`: csv or json")
	out := fs.String("out", "", "output `FILE`, its signature into FILE.sig (required)")
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
			return refusef("%v", err)
		}
		n, err := qa.ExportEKList(ctx, inv, b, *format, s.StationID, *out, sg)
		if err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "EK list of batch %s: %d boards to %s (signature %s.sig)\n", b.ID, n, *out, *out)
		return nil
	})
}

func cmdEKListPush(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	batch := fs.String("batch", "", "batch `ID` (required)")
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
			return refusef("%v", err)
		}
		res, err := qa.PushEKList(ctx, inv, client, *batch, s.StationID)
		var pe *qa.PushError
		switch {
		case errors.Is(err, qa.ErrNothingToList):
			return refusef("batch %s has no provisioned boards to list", *batch)
		case errors.As(err, &pe):
			next := "check the CA link and retry"
			if ce := (*provisioning.Error)(nil); errors.As(pe.Err, &ce) && ce.Code == provisioning.CodeUnauthenticated {
				next = "check the station's client certificate (client_cert/client_key) with the CA operator"
			}
			fmt.Fprintf(g.stderr, "EK list of batch %s not pushed: %v; %s\n", *batch, pe.Err, next)
			return errFailed
		case err != nil:
			return err
		}
		fmt.Fprintf(g.stdout, "EK list of batch %s pushed: %d entries, %d new at the CA\n", *batch, res.Received, res.Added)
		// Every push to the CA also has it witness the audit chain head.
		sg, err := signer(s)
		if err != nil {
			return err
		}
		return pushCheckpoint(ctx, g, inv, client, s.StationID, sg)
	})
}

func cmdReportBatch(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	id := fs.String("batch", "", "batch `ID` (required)")
	pdf := fs.String("pdf", "", "PDF `FILE`")
	csvOut := fs.String("csv", "", "CSV `FILE`")
	jsonOut := fs.String("json", "", "JSON `FILE`")
	unverified := fs.Bool("unverified", false, "write the report even if the inventory disagrees with its audit chain, marked UNVERIFIED with the differences")
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
		audit, err := qa.WriteBatchReportsWith(ctx, inv, *id, sg, *pdf, *csvOut, *jsonOut, qa.ReportOptions{AllowUnverified: *unverified})
		if err != nil {
			if errors.Is(err, records.ErrBatchNotFound) {
				return refusef("%v", err)
			}
			if errors.Is(err, records.ErrStateDiverged) || errors.Is(err, records.ErrChainBroken) {
				fmt.Fprintf(g.stderr, "report REFUSED: %v\n", err)
				return errFailed
			}
			return err
		}
		for _, p := range []string{*pdf, *csvOut, *jsonOut} {
			if p != "" {
				fmt.Fprintf(g.stdout, "%s (signature %s.sig)\n", p, p)
			}
		}
		if audit.Unverified {
			fmt.Fprintf(g.stderr, "warning: report written UNVERIFIED: the inventory disagrees with its audit chain in %d place(s); run 'station audit verify --batch %s'\n",
				len(audit.Divergences), *id)
		}
		return nil
	})
}

func cmdReportVerify(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	path, content, ver, err := verifySignedFile(g, fs, args, "report", "")
	if err != nil {
		return err
	}
	if isEKList(content) {
		// An EK list is no batch report: it is checked by itself, without the inventory.
		return describeEKList(g, path, content)
	}
	lower := strings.ToLower(path)
	isJSON, isCSV := strings.HasSuffix(lower, ".json"), strings.HasSuffix(lower, ".csv")
	if !isJSON && !isCSV {
		return nil // a PDF shows its checkpoint on the audit page; its check is the JSON's or the CSV's
	}
	s, err := g.settings()
	if err != nil {
		return err
	}
	_, statErr := os.Stat(strings.TrimPrefix(s.DB, "sqlite://"))
	noDB := strings.HasPrefix(s.DB, "sqlite://") && statErr != nil
	if isCSV {
		a, err := csvCheckpoint(content)
		if err != nil {
			fmt.Fprintf(g.stderr, "%s: unreadable report: %v\n", path, err)
			return errFailed
		}
		if noDB {
			return checkpointLine(ctx, g, path, nil, a, ver)
		}
		return withInventory(ctx, g, func(s *station.Settings, inv *inventory.Store) error {
			return checkpointLine(ctx, g, path, inv, a, ver)
		})
	}
	// A JSON report is also compared with the database: the audit chain and every board row.
	if noDB {
		rep, err := reports.ReadReportJSON(bytes.NewReader(content), 10_000_000)
		if err != nil {
			fmt.Fprintf(g.stderr, "%s: unreadable report: %v\n", path, err)
			return errFailed
		}
		if err := checkpointLine(ctx, g, path, nil, &rep.Audit, ver); err != nil {
			return err
		}
		fmt.Fprintln(g.stdout, "no inventory given (--db): not compared with the audit trail")
		return nil
	}
	rep, err := reports.ReadReportJSON(bytes.NewReader(content), 10_000_000)
	if err != nil {
		fmt.Fprintf(g.stderr, "%s: unreadable report: %v\n", path, err)
		return errFailed
	}
	return withInventory(ctx, g, func(s *station.Settings, inv *inventory.Store) error {
		if err := checkpointLine(ctx, g, path, inv, &rep.Audit, ver); err != nil {
			return err
		}
		m, err := qa.CompareReportJSON(ctx, inv, rep, content)
		if err != nil {
			return err
		}
		audit := m.Audit
		if v := m.Verification; v != nil && v.ChainErr == nil && !v.OK() {
			for _, l := range v.Lines() {
				fmt.Fprintln(g.stderr, l)
			}
			fmt.Fprintf(g.stderr, "%s: NOT compared: the inventory disagrees with its audit chain for batch %s (%d difference(s) above)\n",
				path, rep.Batch.ID, len(v.Divergences))
			return errFailed
		}
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

// checkpointLine checks the signed checkpoint a report carries (qa.CheckReportCheckpoint, against the
// inventory when inv is set) and says so in one line; a report without one says that.
func checkpointLine(ctx context.Context, g *globals, path string, inv *inventory.Store, a *reports.AuditInfo, ver *signed.Verified) error {
	if a.Checkpoint == "" {
		fmt.Fprintf(g.stdout, "%s: carries no signed checkpoint (made before reports carried one)\n", path)
		return nil
	}
	var st qa.ChainReader
	if inv != nil {
		st = inv
	}
	cp, err := qa.CheckReportCheckpoint(ctx, st, a, ver.Signer())
	if errors.Is(err, qa.ErrCheckpointMismatch) {
		fmt.Fprintf(g.stderr, "%s: checkpoint INVALID: %v\n", path, err)
		return errFailed
	}
	if err != nil {
		return err
	}
	where := "the inventory's chain holds it"
	if inv == nil {
		where = "not checked against an inventory (--db)"
	}
	fmt.Fprintf(g.stdout, "%s: checkpoint OK (station %s, seq %d, head %s, signed %s; %s)\n", path, cp.Station, cp.Seq, short(cp.Hash),
		cp.Time.UTC().Format(time.RFC3339), where)
	return nil
}

// csvCheckpoint reads the checkpoint cells of a CSV report's first two rows (none is a report without).
func csvCheckpoint(content []byte) (*reports.AuditInfo, error) {
	r := csv.NewReader(bytes.NewReader(content))
	r.FieldsPerRecord = -1
	names, err := r.Read()
	if err != nil {
		return nil, err
	}
	vals, err := r.Read()
	if err != nil {
		return nil, err
	}
	a := &reports.AuditInfo{}
	for i, n := range names {
		if i >= len(vals) {
			break
		}
		switch n {
		case "checkpoint":
			a.Checkpoint = vals[i]
		case "checkpoint_signature":
			if a.CheckpointSignature, err = base64.StdEncoding.DecodeString(vals[i]); err != nil {
				return nil, fmt.Errorf("checkpoint_signature: %w", err)
			}
		}
	}
	return a, nil
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}

// isEKList tells an EK list file (either format) from a report: its format name comes first.
func isEKList(content []byte) bool {
	head := content[:min(len(content), 256)]
	return bytes.Contains(head, []byte(signed.EKListFormat))
}

// describeEKList reads an EK list as the upstream CA does (every entry checked: see signed.ReadEKList)
// and says what it holds.
func describeEKList(g *globals, path string, content []byte) error {
	list, err := signed.ReadEKList(bytes.NewReader(content), 0)
	if err != nil {
		fmt.Fprintf(g.stderr, "%s: not a valid EK list: %v\n", path, err)
		return errFailed
	}
	h := list.Header
	fmt.Fprintf(g.stdout, "%s: EK list of batch %s (product %s, station %s, created %s): %d entries, each well formed with its EK hash checked\n",
		path, h.Batch, h.Product, h.Station, h.Created.UTC().Format(time.RFC3339), len(list.Entries))
	return nil
}

func cmdEKListVerify(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	path, content, _, err := verifySignedFile(g, fs, args, "EK list", " (the station writes an EK list's signature beside it as FILE.sig)")
	if err != nil {
		return err
	}
	return describeEKList(g, path, content)
}

// batchEvents streams a batch's audit events for qa.ReportPosition.
func batchEvents(inv *inventory.Store) qa.EventSource {
	return func(ctx context.Context, batch string, fn func(*records.Event) error) error {
		return inv.ListEvents(ctx, inventory.EventFilter{Batch: batch}, fn)
	}
}

// verifySignedFile is what report verify and ek-list verify share: it takes one FILE, its detached
// signature (--sig, default FILE.sig) and an optional trust anchor (--trust), checks the signature and says
// who signed it, and returns the file's content. sigHint follows an unreadable signature file's error. An
// EK list given to ek-list verify must be one; report verify tells the two apart itself.
func verifySignedFile(g *globals, fs *flag.FlagSet, args []string, what, sigHint string) (string, []byte, *signed.Verified, error) {
	sigPath := fs.String("sig", "", "detached signature `FILE` (default: the file's name + .sig)")
	trust := fs.String("trust", "", "`PEM` trust anchor the station certificate must chain to, e.g. the ca-trust.pem of upstream-ca station add (optional)")
	if err := parse(fs, args); err != nil {
		return "", nil, nil, err
	}
	if fs.NArg() != 1 {
		return "", nil, nil, usagef("give one %s file", what)
	}
	path := fs.Arg(0)
	if *sigPath == "" {
		*sigPath = path + ".sig"
	}
	content, err := os.ReadFile(path)
	if err != nil {
		return "", nil, nil, refusef("%v", err)
	}
	sig, err := os.ReadFile(*sigPath)
	if err != nil {
		return "", nil, nil, refusef("%v%s", err, sigHint)
	}
	var roots *x509.CertPool
	if *trust != "" {
		pemb, err := os.ReadFile(*trust)
		if err != nil {
			return "", nil, nil, refusef("%v", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pemb) {
			return "", nil, nil, refusef("%s holds no PEM certificate", *trust)
		}
	}
	if what == "EK list" && !isEKList(content) {
		fmt.Fprintf(g.stderr, "%s: not an EK list (no %s header); for a batch report use 'station report verify'\n", path, signed.EKListFormat)
		return "", nil, nil, errFailed
	}
	ver, err := signed.Verify(content, sig, roots)
	if err != nil {
		fmt.Fprintf(g.stderr, "%s: signature INVALID: %v\n", path, err)
		return "", nil, nil, errFailed
	}
	fmt.Fprintf(g.stdout, "%s: signature OK (station %s, signed %s", path, ver.Signer().Subject.CommonName, ver.SignedAt.Format(time.RFC3339))
	if ver.ChainVerified {
		fmt.Fprint(g.stdout, ", chain to the trust anchor OK")
	}
	fmt.Fprintln(g.stdout, ")")
	return path, content, ver, nil
}
