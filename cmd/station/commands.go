package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tpmline/tpmline/internal/cli"
	"github.com/tpmline/tpmline/internal/sqldb"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/reports/signed"
	"github.com/tpmline/tpmline/station"
	"github.com/tpmline/tpmline/station/qa"
)

func withInventory(ctx context.Context, g *globals, fn func(s *station.Settings, inv *inventory.Store) error) error {
	s, err := g.settings()
	if err != nil {
		return err
	}
	timings.mark("settings")
	inv, err := openInventory(ctx, s, inventory.OneCommand())
	if err != nil {
		return err
	}
	timings.mark("inventory-open")
	defer timings.mark("inventory-close")
	defer inv.Close()
	return fn(s, inv)
}

func cmdInit(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("takes no arguments (the inventory is --db, or the config's db)")
	}
	s, err := g.settings()
	if err != nil {
		return err
	}
	if inv, err := inventory.Open(ctx, s.DB, inventory.MustExist()); err == nil {
		fmt.Fprintf(g.stdout, "inventory at %s already exists: nothing to do\n", inv.Where())
		return inv.Close()
	} else if !errors.Is(err, sqldb.ErrNotCreated) {
		return fmt.Errorf("%v; check --db or the config's db", err)
	}
	inv, err := createInventory(ctx, s)
	if err != nil {
		return err
	}
	defer inv.Close()
	fmt.Fprintf(g.stdout, "inventory created at %s (%s)\n", inv.Where(), inv.Engine())
	return nil
}

func cmdBatchOpen(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	id := fs.String("id", "", "batch `ID` (required)")
	product := fs.String("product", "default", "product `NAME` (a profile name)")
	qty := fs.Int("quantity", 0, "`N` boards planned")
	wo := fs.String("work-order", "", "work order `WO` (default: the batch ID)")
	op := fs.String("operator", "", "operator `NAME` (default: $USER)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *id == "" {
		return usagef("--id is required")
	}
	if *wo == "" {
		*wo = *id // a batch without a separate work order is its own
	}
	if *op == "" {
		*op = os.Getenv("USER") // who ran the command, when no operator signed in
		if *op == "" {
			*op = "unknown"
		}
	}
	if *qty < 0 {
		return usagef("--quantity must not be negative")
	}
	return withInventory(ctx, g, func(s *station.Settings, inv *inventory.Store) error {
		profiles, err := station.LoadProfiles(s.Profiles)
		if err != nil {
			return refusef("%v", err)
		}
		if _, ok := profiles[*product]; !ok && *product != "default" {
			return refusef("no profile for product %q: add it with --profile FILE or the config's profiles", *product)
		}
		b, err := inv.OpenBatch(ctx, records.NewBatch{ID: *id, Product: *product, WorkOrder: *wo, Quantity: *qty,
			Operator: *op, Station: s.StationID})
		if err != nil {
			if errors.Is(err, records.ErrBatchExists) || errors.Is(err, records.ErrInvalid) {
				return refusef("%v", err)
			}
			return err
		}
		fmt.Fprintf(g.stdout, "batch %s opened: product %s, quantity %d, station %s\n", b.ID, b.Product, b.Quantity, b.Station)
		return nil
	})
}

func cmdBatchClose(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	id := fs.String("id", "", "batch `ID` (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *id == "" {
		return usagef("--id is required")
	}
	return withInventory(ctx, g, func(s *station.Settings, inv *inventory.Store) error {
		b, err := inv.CloseBatch(ctx, *id)
		if err != nil {
			if errors.Is(err, records.ErrBatchNotFound) || errors.Is(err, records.ErrBatchClosed) {
				return refusef("%v", err)
			}
			return err
		}
		fmt.Fprintf(g.stdout, "batch %s closed at %s\n", b.ID, b.ClosedAt.Format(time.RFC3339))
		return nil
	})
}

func cmdBatchList(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	all := fs.Bool("all", false, "include closed batches")
	if err := parse(fs, args); err != nil {
		return err
	}
	state := "open"
	if *all {
		state = ""
	}
	return withInventory(ctx, g, func(s *station.Settings, inv *inventory.Store) error {
		list, err := inv.ListBatches(ctx, state)
		if err != nil {
			return err
		}
		// The counts are records.Counts, the numbers every other surface shows.
		out := bufio.NewWriter(g.stdout) // one write at the end, not one per table cell
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "BATCH\tPRODUCT\tSTATE\tDONE\tPASSED\tFAILED\tSET ASIDE\tSTOPPED\tREFUSED\tIN PROGRESS\tYIELD\tOPENED")
		var warnings []string
		for _, b := range list {
			c := b.Counts()
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", b.ID, b.Product, b.State, c.DoneText(),
				c.Passed, c.Failed, c.SetAside, c.Stopped, c.Refused, c.InProgress, c.YieldText(), b.OpenedAt.Format(time.RFC3339))
			if w := c.OverWarning(); w != "" {
				warnings = append(warnings, fmt.Sprintf("warning: batch %s: done %s, %s", b.ID, c.DoneText(), w))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if err := out.Flush(); err != nil {
			return err
		}
		for _, w := range warnings {
			fmt.Fprintln(g.stderr, w)
		}
		return nil
	})
}

func cmdBatchShow(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("give one batch ID")
	}
	id := fs.Arg(0)
	return withInventory(ctx, g, func(s *station.Settings, inv *inventory.Store) error {
		b, err := inv.GetBatch(ctx, id)
		if err != nil {
			if errors.Is(err, records.ErrBatchNotFound) {
				return refusef("%v", err)
			}
			return err
		}
		out := bufio.NewWriter(g.stdout) // one write at the end, not one per table cell
		fmt.Fprintf(out, "batch %s\nproduct %s\nwork order %s\nquantity %d\noperator %s\nstation %s\nstate %s\nopened %s\n",
			b.ID, b.Product, b.WorkOrder, b.Quantity, b.Operator, b.Station, b.State, b.OpenedAt.Format(time.RFC3339))
		if !b.ClosedAt.IsZero() {
			fmt.Fprintf(out, "closed %s\n", b.ClosedAt.Format(time.RFC3339))
		}
		sums, err := inv.ListBatches(ctx, "")
		if err != nil {
			return err
		}
		for _, sm := range sums {
			if sm.ID == id {
				c := sm.Counts()
				fmt.Fprintf(out, "counts %s\n\n", c.Line())
				if w := c.OverWarning(); w != "" {
					fmt.Fprintf(g.stderr, "warning: batch %s: done %s, %s\n", id, c.DoneText(), w)
				}
			}
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SERIAL\tSTATE\tSTEP\tREASON\tEK SHA-256\tUPDATED")
		err = inv.ListBoards(ctx, id, func(bd *records.Board) error {
			_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", bd.Serial, bd.State, bd.CurrentStep, bd.ReasonCode,
				shortHash(bd.EKPubSHA256), bd.UpdatedAt.Format(time.RFC3339))
			return err
		})
		if err != nil {
			return err
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		return out.Flush()
	})
}

func shortHash(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}

// provisionResult is `station provision --json`'s output.
type provisionResult struct {
	Serial           string             `json:"serial"`
	Batch            string             `json:"batch"`
	State            string             `json:"state"`
	Already          bool               `json:"already_provisioned,omitempty"`
	Reason           *station.Failure   `json:"reason,omitempty"`
	EKPubSHA256      string             `json:"ek_pub_sha256,omitempty"`
	IAKCertSerial    string             `json:"iak_cert_serial,omitempty"`
	IDevIDCertSerial string             `json:"idevid_cert_serial,omitempty"`
	DurationMS       float64            `json:"duration_ms"`
	TPMTimeMS        float64            `json:"tpm_time_ms"`
	Steps            []station.StepTime `json:"steps"`
}

func cmdProvision(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	addr := fs.String("tpm", "", "the board's TPM `ADDR`: sim, swtpm://host:port, unix:///path, /dev/tpmrm0, relay://host:port (required)")
	serial := fs.String("serial", "", "board serial `SN` (required)")
	batch := fs.String("batch", "", "batch `ID` (required)")
	slot := fs.Int("slot", 0, "fixture slot `N`")
	rework := fs.Bool("rework", false, "provision again a board that was provisioned, stopped or had its TPM replaced")
	supervisor := fs.String("supervisor", "", "with --rework: `ID` of who authorised it, recorded in the audit trail (default: $USER)")
	asJSON := fs.Bool("json", false, "print the outcome as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *addr == "" || *serial == "" || *batch == "" {
		return usagef("--tpm, --serial and --batch are required")
	}
	if err := checkTPM("--tpm", *addr); err != nil {
		return err
	}
	if *rework && *supervisor == "" {
		*supervisor = os.Getenv("USER")
	}
	s, err := g.settings()
	if err != nil {
		return err
	}
	timings.mark("settings")
	ca, err := caClient(s)
	if err != nil {
		// The station's key or the CA's trust is unusable (a token pulled): the board was not touched.
		return notStarted(*serial, err)
	}
	// The mutual-TLS handshake with the CA runs while the inventory opens and the TPM works; enroll,
	// several steps later, takes the connection.
	ca.Preconnect()
	timings.mark("ca-client")
	inv, err := openInventory(ctx, s, inventory.OneCommand())
	if err != nil {
		return notStarted(*serial, err)
	}
	timings.mark("inventory-open")
	defer timings.mark("inventory-close")
	defer inv.Close()
	st, err := newStation(s, inv, ca, nil, faultFromEnv())
	if err != nil {
		return notStarted(*serial, err)
	}
	timings.mark("station")
	out := st.Provision(ctx, station.Job{Batch: *batch, Serial: *serial, Slot: *slot, TPM: *addr, Rework: *rework, Supervisor: *supervisor})
	timings.mark("flow")
	res := provisionResult{Serial: out.Serial, Batch: out.Batch, State: string(out.State), Already: out.Already,
		Reason: out.Failure, EKPubSHA256: out.EKPubSHA256, IAKCertSerial: out.IAKCertSerial,
		IDevIDCertSerial: out.IDevIDCertSerial, DurationMS: ms(out.Duration), TPMTimeMS: ms(out.TPMTime), Steps: out.Steps}
	if *asJSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	}
	if out.Failure != nil {
		sn := printable(*serial)
		if out.Failure.Code == station.ReasonBadSerial || out.Failure.Code == station.ReasonBatch {
			return refusef("board %s: %s", sn, out.Failure.Line())
		}
		fmt.Fprintf(g.stderr, "board %s: %s: %s\n", sn, strings.ToUpper(string(out.State)), out.Failure.Line())
		return errFailed
	}
	if !*asJSON {
		what := "provisioned"
		if out.Already {
			what = "already provisioned; the TPM still holds its keys and certificates"
		}
		fmt.Fprintf(g.stdout, "board %s: PASS %s in %.0f ms (TPM %.0f ms); IAK cert %s, IDevID cert %s\n", *serial, what,
			ms(out.Duration), ms(out.TPMTime), out.IAKCertSerial, out.IDevIDCertSerial)
	}
	return nil
}

// notStarted names the board in an error that stopped a provision before its flow began (the inventory
// unreachable, say): a test executive's log shows which board it was and that nothing was recorded. A
// usage error stays one: it is about the command line, not the board.
func notStarted(serial string, err error) error {
	var ue *cli.UsageError
	if errors.As(err, &ue) {
		return err
	}
	var re *cli.RefusalError
	if errors.As(err, &re) {
		return refusef("board %s not started, nothing recorded: %s", printable(serial), re.Msg)
	}
	return fmt.Errorf("board %s not started, nothing recorded: %w", printable(serial), err)
}

// printable shows a serial as typed, or quoted with escapes when it holds anything a terminal would
// interpret.
func printable(s string) string {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r > 0x7e {
			return strconv.Quote(s)
		}
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// faultFromEnv is the crash-test hook: TPMLINE_FAULT=STEP:PHASE (phase before or after) kills the process
// with SIGKILL at that step boundary, as a power cut would. Unset in production.
func faultFromEnv() func(step, phase string) {
	v := os.Getenv("TPMLINE_FAULT")
	if v == "" {
		return nil
	}
	return func(step, phase string) {
		if step+":"+phase == v {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
}

func cmdBoardShow(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("give one board serial")
	}
	serial := fs.Arg(0)
	return withInventory(ctx, g, func(s *station.Settings, inv *inventory.Store) error {
		defer timings.mark("show")
		b, err := inv.GetBoardBySerial(ctx, serial)
		if err != nil {
			if errors.Is(err, records.ErrBoardNotFound) {
				fmt.Fprintf(g.stderr, "board %s: not in the inventory at %s; check the serial\n", serial, inv.Where())
				return errFailed
			}
			return err
		}
		steps, err := inv.ListSteps(ctx, serial)
		if err != nil {
			return err
		}
		keys, err := inv.ListKeys(ctx, serial)
		if err != nil {
			return err
		}
		certs, err := inv.ListCertificates(ctx, serial)
		if err != nil {
			return err
		}
		var events []*records.Event
		if err := inv.ListEvents(ctx, inventory.EventFilter{Serial: serial}, func(e *records.Event) error {
			events = append(events, e)
			return nil
		}); err != nil {
			return err
		}
		// One write at the end instead of one per line and table cell (a board's story is a few hundred
		// of them, each a system call: a tenth of a `board show` process).
		w := bufio.NewWriter(g.stdout)
		if *asJSON {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			if err := enc.Encode(map[string]any{"board": b, "steps": steps, "keys": keys, "certificates": certs, "events": events}); err != nil {
				return err
			}
			return w.Flush()
		}
		fmt.Fprintf(w, "board %s\nstate %s", b.Serial, b.State)
		if b.ReasonCode != "" {
			fmt.Fprintf(w, " (%s: %s)", b.ReasonCode, b.ReasonText)
		}
		fmt.Fprintf(w, "\nbatch %s, station %s slot %d, attempt %d, reworks %d\n", b.Batch, b.Station, b.Slot, b.Attempt, b.ReworkCount)
		fmt.Fprintf(w, "TPM %s %s firmware %s\nEK public SHA-256 %s\n", b.TPMManufacturer, b.TPMVendor, b.TPMFirmware, b.EKPubSHA256)
		if len(b.EKCert) > 0 {
			fmt.Fprintf(w, "EK certificate %d bytes\n", len(b.EKCert))
		}
		fmt.Fprintln(w, "\nkeys:")
		for _, k := range keys {
			fmt.Fprintf(w, "  attempt %d %-6s handle %#x name %s\n", k.Attempt, k.Kind, k.Handle, hex.EncodeToString(k.Name))
		}
		fmt.Fprintln(w, "\ncertificates:")
		for _, c := range certs {
			subj := ""
			if x, err := x509.ParseCertificate(c.DER); err == nil {
				subj = x.Subject.String()
			}
			fmt.Fprintf(w, "  attempt %d %-6s serial %s notAfter %s %s\n", c.Attempt, c.Kind, c.SerialHex, c.NotAfter.Format("2006-01-02"), subj)
		}
		fmt.Fprintln(w, "\nsteps:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, st := range steps {
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%.1f ms\tTPM %.1f ms\t%s\n", st.Attempt, st.StartedAt.Format("15:04:05.000"), st.Step,
				st.Phase, ms(st.Duration), ms(st.TPMTime), st.Detail)
		}
		tw.Flush()
		fmt.Fprintln(w, "\nevents:")
		for _, e := range events {
			fmt.Fprintf(w, "  #%d %s %s %s %s\n", e.Seq, e.Time.Format(time.RFC3339Nano), e.Station, e.Kind, string(e.Payload))
		}
		return w.Flush()
	})
}

func cmdAuditVerify(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	batch := fs.String("batch", "", "only batch `ID`'s events (default: the whole log)")
	if err := parse(fs, args); err != nil {
		return err
	}
	return withInventory(ctx, g, func(s *station.Settings, inv *inventory.Store) error {
		var v *qa.Verification
		var err error
		if s.CAURL == "" {
			v, err = qa.VerifyBatch(ctx, inv, *batch)
		} else {
			// With a CA configured, the chain is also checked against the heads it witnessed.
			client, cerr := caClient(s)
			if cerr != nil {
				return cerr
			}
			v, err = qa.VerifyWitnessed(ctx, inv, client, *batch)
		}
		var pe *qa.PushError
		if errors.As(err, &pe) {
			fmt.Fprintf(g.stderr, "audit verify: the CA's witness did not answer: %v; check the CA link, or verify without --ca\n", pe.Err)
			return errFailed
		}
		if err != nil {
			return err
		}
		if v.ChainErr != nil {
			fmt.Fprintf(g.stderr, "audit chain BROKEN: %v\n", v.ChainErr)
			return errFailed
		}
		for _, l := range v.Lines() {
			fmt.Fprintln(g.stdout, l)
		}
		if len(v.Divergences) > 0 {
			fmt.Fprintf(g.stderr, "inventory DIVERGES from its audit chain: %d difference(s) listed above\n", len(v.Divergences))
		}
		if len(v.WitnessFindings) > 0 {
			fmt.Fprintf(g.stderr, "audit chain does NOT hold what the CA witnessed: %d finding(s) listed above\n", len(v.WitnessFindings))
		}
		if !v.OK() {
			return errFailed
		}
		fmt.Fprintf(g.stdout, "audit chain OK: %d events, head %s; every table agrees with it\n", v.Chain.Count, v.Chain.Head)
		if s.CAURL != "" {
			fmt.Fprintf(g.stdout, "witness OK: the chain holds the %d head(s) the CA witnessed\n", v.WitnessChecked)
		}
		return nil
	})
}

func cmdAuditWitness(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if len(args) != 0 {
		return usagef("audit witness takes no arguments")
	}
	return withInventory(ctx, g, func(s *station.Settings, inv *inventory.Store) error {
		client, err := caClient(s)
		if err != nil {
			return err
		}
		sg, err := signer(s)
		if err != nil {
			return err
		}
		return pushCheckpoint(ctx, g, inv, client, s.StationID, sg)
	})
}

// pushCheckpoint has the CA witness the chain head and says so in one line.
func pushCheckpoint(ctx context.Context, g *globals, inv *inventory.Store, w qa.Witness, stationID string, sg signed.Signer) error {
	cp, err := qa.PushCheckpoint(ctx, inv, w, stationID, sg)
	var pe *qa.PushError
	switch {
	case errors.As(err, &pe):
		fmt.Fprintf(g.stderr, "audit checkpoint not witnessed: %v; check the CA link and run 'station audit witness'\n", pe.Err)
		return errFailed
	case errors.Is(err, qa.ErrWitnessMismatch), errors.Is(err, records.ErrChainBroken):
		fmt.Fprintf(g.stderr, "audit checkpoint REFUSED: %v; run 'station audit verify'\n", err)
		return errFailed
	case err != nil:
		return err
	case cp == nil:
		fmt.Fprintln(g.stdout, "audit chain empty: nothing to witness")
	default:
		fmt.Fprintf(g.stdout, "audit checkpoint witnessed by the CA: seq %d, head %s\n", cp.Seq, cp.Hash)
	}
	return nil
}

// reconcile resumes or closes the boards this station left in progress (see station.ReconcileReport) and
// says what it found and did, one line per board, with the cause the board was left for. failed counts
// the boards that did not pass (closed, failed again, or not reached).
func reconcile(ctx context.Context, st *station.Station, slots map[int]string, w io.Writer) (failed int, seen map[string]bool, err error) {
	rep, err := st.ReconcileReport(ctx, slots)
	if err != nil {
		return 0, nil, err
	}
	seen = map[string]bool{}
	if len(rep) == 0 {
		fmt.Fprintf(w, "reconcile: no board of station %s is in progress: nothing to resume\n", st.ID())
	}
	for _, r := range rep {
		b := r.Board
		seen[b.Serial] = true
		found := fmt.Sprintf("board %s (batch %s, slot %d, attempt %d): found in progress: %s", printable(b.Serial), b.Batch, b.Slot, b.Attempt, r.Cause)
		switch {
		case r.NotReached:
			failed++
			fmt.Fprintf(w, "%s; not resumed: reconcile was interrupted first; it stays in progress, run 'station reconcile' again\n", found)
		case r.Closed != nil:
			failed++
			fmt.Fprintf(w, "%s; marked FAILED (%s): slot %d has no TPM here; %s\n", found, r.Closed.Code, b.Slot, r.Closed.Next)
		case r.Resumed.Failure != nil:
			failed++
			fmt.Fprintf(w, "%s; resumed: %s: %s\n", found, strings.ToUpper(string(r.Resumed.State)), r.Resumed.Failure.Line())
		default:
			fmt.Fprintf(w, "%s; resumed: PASS\n", found)
		}
	}
	return failed, seen, nil
}

// leftBehind names the boards of this station, in open batches, that a Ctrl-C or a restart left failed
// as aborted or interrupted: they are not in progress, so reconcile leaves them, and saying so answers
// the operator who expected reconcile to pick them up.
func leftBehind(ctx context.Context, inv *inventory.Store, stationID string, skip map[string]bool, w io.Writer) error {
	batches, err := inv.ListBatches(ctx, "open")
	if err != nil {
		return err
	}
	for _, bt := range batches {
		err := inv.ListBoards(ctx, bt.ID, func(b *records.Board) error {
			if !skip[b.Serial] && b.Station == stationID && b.State == records.StateFailed && (b.ReasonCode == station.ReasonAborted || b.ReasonCode == station.ReasonInterrupted) {
				fmt.Fprintf(w, "board %s (batch %s, slot %d): not in progress: failed as %s in step %s (%s); scan it again (station provision) to resume it\n",
					printable(b.Serial), b.Batch, b.Slot, b.ReasonCode, b.CurrentStep, b.ReasonText)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func cmdReconcile(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	addr := fs.String("tpm", "", "TPM `ADDR` of --slot (adds to the config's slots)")
	slot := fs.Int("slot", 0, "the `N` of the slot --tpm is in")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *addr != "" {
		if err := checkTPM("--tpm", *addr); err != nil {
			return err
		}
	}
	return withInventory(ctx, g, func(s *station.Settings, inv *inventory.Store) error {
		ca, err := caClient(s)
		if err != nil {
			return err
		}
		st, err := newStation(s, inv, ca, nil, nil)
		if err != nil {
			return err
		}
		slots := slotMap(s.Slots)
		if *addr != "" {
			slots[*slot] = *addr
		}
		failed, seen, err := reconcile(ctx, st, slots, g.stdout)
		if err != nil {
			return err
		}
		if err := leftBehind(context.WithoutCancel(ctx), inv, s.StationID, seen, g.stdout); err != nil {
			return err
		}
		if ctx.Err() != nil {
			fmt.Fprintln(g.stderr, "reconcile interrupted: boards not reached stay in progress; run 'station reconcile' again")
			return errFailed
		}
		if failed > 0 {
			return errFailed
		}
		return nil
	})
}

func slotMap(slots []station.Slot) map[int]string {
	m := map[int]string{}
	for _, s := range slots {
		m[s.ID] = s.TPM
	}
	return m
}
