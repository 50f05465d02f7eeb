// Command station is the TPM identity station: `station` alone opens the operator terminal; subcommands run
// the same work headless for scripts and automation. Exit codes: 0 success, 1 a board (or a check) failed,
// 2 usage or configuration error. The command-line conventions are internal/cli's, shared with upstream-ca.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tpmline/tpmline/internal/cli"
)

var (
	usagef    = cli.Usagef
	refusef   = cli.Refusef
	errFailed = cli.ErrFailed
	parse     = cli.Parse
)

func program(g *globals) *cli.Program {
	cmd := func(name, synopsis, summary, example string, run func(context.Context, *globals, *flag.FlagSet, []string) error) cli.Command {
		return cli.Command{Name: name, Synopsis: synopsis, Summary: summary, Example: example,
			Run: func(ctx context.Context, fs *flag.FlagSet, args []string) error { return run(ctx, g, fs, args) }}
	}
	return &cli.Program{
		Name:    "station",
		Summary: "station: the TPM identity station. Alone it opens the operator terminal; commands run the same work headless.",
		Globals: g.register,
		Default: "tui",
		Commands: []cli.Command{
			cmd("init", "", "create the inventory named by --db (or the config's db); every other command refuses a database that does not exist",
				"station --db sqlite://data/inventory.db init", cmdInit),
			cmd("batch open", "--id ID [--product NAME] [--quantity N] [--work-order WO] [--operator NAME]",
				"open a batch at this station; the product needs a profile (or is default)",
				"station batch open --id B1 --product default --quantity 10", cmdBatchOpen),
			cmd("batch close", "--id ID", "close a batch; a closed batch takes no more boards", "station batch close --id B1", cmdBatchClose),
			cmd("batch list", "[--all]", "the open batches (all with --all) with their counts", "station batch list --all", cmdBatchList),
			cmd("batch show", "ID", "a batch and every board in it", "station batch show B1", cmdBatchShow),
			cmd("provision", "--tpm ADDR --serial SN --batch ID [--slot N] [--rework [--supervisor ID]] [--json]",
				"provision one board: EK, inventory check, IAK and IDevID, enrollment with the CA, certificates into the TPM",
				"station provision --tpm swtpm://127.0.0.1:2321 --serial SN0001 --batch B1", cmdProvision),
			cmd("board show", "SERIAL [--json]", "a board's whole story: state and reason, TPM, EK, keys, certificates, steps, events",
				"station board show SN0001", cmdBoardShow),
			cmd("board tcg-csr", "SERIAL --tpm ADDR --product NAME --out FILE [--request FILE] [--keys ALG]",
				"write the board's TCG-CSR-IDEVID (IAK, IDevID, their TPM2_Certify, EK certificate, signed by the IDevID) for an OEM CA; --request also writes upstream-ca's enrollment body",
				"station board tcg-csr SN0001 --tpm swtpm://127.0.0.1:2321 --product widget-1 --out SN0001.csr", cmdBoardTCGCSR),
			cmd("board rma", "SERIAL --reason TEXT [--tpm ADDR] [--crl-reason REASON]",
				"take a board back for repair: stop it with the reason, revoke its certificates at the CA, clear its TPM when on the fixture; a rework provisions it again",
				"station board rma SN0001 --reason 'field return: no boot' --tpm swtpm://127.0.0.1:2321", cmdBoardRMA),
			cmd("board deprovision", "SERIAL --reason TEXT [--tpm ADDR] [--crl-reason REASON]",
				"retire a board: as rma, with the CRL reason cessationOfOperation",
				"station board deprovision SN0001 --reason scrapped", cmdBoardDeprovision),
			cmd("reconcile", "[--tpm ADDR [--slot N]]",
				"resume or close the boards this station left in progress, and say what was found and done, board by board",
				"station reconcile --tpm swtpm://127.0.0.1:2321 --slot 0", cmdReconcile),
			cmd("audit verify", "[--batch ID]", "recompute the audit hash chain, replay it and compare it with every table, one line per divergence; with --ca also against the heads the CA witnessed",
				"station audit verify --batch B1", cmdAuditVerify),
			cmd("audit witness", "", "have the CA witness the audit chain head, signed with the station key", "station audit witness", cmdAuditWitness),
			cmd("ek-list export", "--batch ID --format csv|json --out FILE", "write the batch's EK list, signed by the station key into FILE.sig",
				"station ek-list export --batch B1 --format json --out B1-ek.json", cmdEKListExport),
			cmd("ek-list push", "--batch ID", "upload the batch's EK list to the CA over the mutual-TLS API", "station ek-list push --batch B1", cmdEKListPush),
			cmd("ek-list verify", "FILE [--sig FILE.sig] [--trust PEM]",
				"check an EK list file's signature and contents (no database, no CA needed)",
				"station ek-list verify B1-ek.json --trust st1/ca-trust.pem", cmdEKListVerify),
			cmd("report batch", "--batch ID [--pdf FILE] [--csv FILE] [--json FILE] [--unverified]", "write the batch report, each file signed into FILE.sig; refused when the tables disagree with the audit chain unless --unverified",
				"station report batch --batch B1 --pdf B1.pdf --json B1.json", cmdReportBatch),
			cmd("report verify", "FILE [--sig FILE.sig] [--trust PEM]",
				"check a report's signature (and its chain to --trust); a JSON report is also compared with the inventory; an EK list is checked as by ek-list verify",
				"station report verify B1.json --trust st1/ca-trust.pem", cmdReportVerify),
			cmd("demo", "[--data DIR] [--slots N] [--operator ID] [--headless [--boards N]]",
				"the embedded default: simulated boards, SQLite, the CA in-process", "station demo --headless --boards 8", cmdDemo),
			cmd("tui", "[--operator ID]", "the operator terminal on the config's slots", "station --config station.json tui", cmdTUI),
		},
		Footer: `exit codes: 0 done, 1 a board or a check failed or a service did not answer, 2 usage or configuration error.
docs/station.md describes every command, the config file and the reason codes; docs/operator.md the terminal.`,
	}
}

func main() {
	// The headless build hands a command that needs the terminal, the simulator or the metrics endpoint
	// to station-full before doing anything else (headless.go).
	if err := forwardIfNeeded(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "station: %v\n", err)
		os.Exit(cli.ExitUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	timings.print(os.Stderr)
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	return program(g).Main(ctx, args, stdout, stderr)
}
