// Command station is the TPM identity station: `station` alone opens the operator terminal; subcommands run
// the same work headless for scripts and automation. Exit codes: 0 success, 1 a board (or a check) failed,
// 2 usage or configuration error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// exit codes
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// usageError is a mistake in the command line or the configuration.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// failedError is a board or a check that failed; its message was already printed.
var errFailed = errors.New("failed")

type command struct {
	name  string
	usage string
	run   func(ctx context.Context, g *globals, args []string) error
}

func commands() []command {
	return []command{
		{"batch open", "--id ID --product NAME [--quantity N] [--work-order WO] [--operator NAME]", cmdBatchOpen},
		{"batch close", "--id ID", cmdBatchClose},
		{"batch list", "[--all]", cmdBatchList},
		{"batch show", "ID", cmdBatchShow},
		{"provision", "--tpm ADDR --serial SN --batch ID [--slot N] [--rework [--supervisor ID]] [--json]", cmdProvision},
		{"board show", "SERIAL [--json]", cmdBoardShow},
		{"reconcile", "[--tpm ADDR [--slot N]] (resume or close the boards this station left in progress)", cmdReconcile},
		{"audit verify", "[--batch ID] (with --ca: also against the heads the CA witnessed)", cmdAuditVerify},
		{"audit witness", "(have the CA witness the audit chain head, signed with the station key)", cmdAuditWitness},
		{"ek-list export", "--batch ID --format csv|json --out FILE", cmdEKListExport},
		{"ek-list push", "--batch ID", cmdEKListPush},
		{"report batch", "--batch ID [--pdf FILE] [--csv FILE] [--json FILE] [--unverified]", cmdReportBatch},
		{"report verify", "FILE [--sig FILE.sig] [--trust PEM] (with --db: compare a JSON report with the audit trail)", cmdReportVerify},
		{"demo", "[--data DIR] [--slots N] [--operator ID] [--headless [--boards N]]", cmdDemo},
		{"tui", "[--operator ID] (the operator terminal on the config's slots)", cmdTUI},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("station", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "station: %v\n", err)
		printUsage(stderr)
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 {
		rest = []string{"tui"} // `station` alone opens the operator terminal
	}
	if rest[0] == "help" || rest[0] == "-h" {
		printUsage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(rest) < len(words) || strings.Join(rest[:len(words)], " ") != c.name {
			continue
		}
		err := c.run(ctx, g, rest[len(words):])
		return report(stderr, c, err)
	}
	fmt.Fprintf(stderr, "station: unknown command %q; run 'station help'\n", strings.Join(rest, " "))
	return exitUsage
}

func report(stderr io.Writer, c command, err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errFailed):
		return exitFailed
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "station %s: %s\nusage: station %s %s\n", c.name, ue.msg, c.name, c.usage)
		return exitUsage
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(stderr, "usage: station %s %s\n", c.name, c.usage)
		return exitUsage
	}
	fmt.Fprintf(stderr, "station %s: %v\n", c.name, err)
	return exitFailed
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: station [global flags] COMMAND [flags]")
	fmt.Fprintln(w, "global flags: --config FILE --db URL --ca URL --ca-trust PEM --client-cert PEM --client-key PEM --station-id ID --profile FILE")
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  station %s %s\n", c.name, c.usage)
	}
}
