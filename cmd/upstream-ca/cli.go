package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/tpmline/tpmline/internal/hsm"
	"github.com/tpmline/tpmline/provisioning/ca"
	"github.com/tpmline/tpmline/provisioning/ekcert"
)

// Exit codes of upstream-ca.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

const usageText = `usage:
  upstream-ca init --dir DIR [--org NAME] [--public-url http://HOST:PORT]
      [--pkcs11-module LIB --pkcs11-token LABEL (--pkcs11-pin-file FILE | --pkcs11-pin-env VAR) [--pkcs11-key-prefix P]]
  upstream-ca station add --dir DIR --name NAME --out OUTDIR [--csr FILE]
  upstream-ca serve --dir DIR [--listen 127.0.0.1:8443] [--ek-roots PEM-or-dir] [--require-ek-list] [--db URL]
      [--public-listen ADDR] [--metrics-listen ADDR]
  upstream-ca revoke --dir DIR (--board SERIAL | --cert-serial HEX | --station-cert FILE) [--reason NAME] [--db URL]
  upstream-ca ek-list import --dir DIR FILE [--sig FILE.sig]
  upstream-ca ek-cert verify --ek-roots PEM-or-dir [--at RFC3339-TIME] FILE...
`

// Main runs upstream-ca with args (without the program name) and returns the exit code: 0 ok, 1 failure,
// 2 usage. ctx ends the serve command (SIGINT/SIGTERM in main).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := run(ctx, args, stdout, stderr)
	var ue usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "upstream-ca: %s\n%s", ue.msg, usageText)
		return ExitUsage
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stderr, usageText)
		return ExitUsage
	default:
		fmt.Fprintf(stderr, "upstream-ca: %v\n", err)
		return ExitFailure
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("no command")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "init":
		return cmdInit(rest, stdout)
	case "station":
		if len(rest) == 0 || rest[0] != "add" {
			return usagef("station takes the subcommand add")
		}
		return cmdStationAdd(rest[1:], stdout)
	case "serve":
		return cmdServe(ctx, rest, stderr)
	case "revoke":
		return cmdRevoke(ctx, rest, stdout)
	case "ek-list":
		if len(rest) == 0 || rest[0] != "import" {
			return usagef("ek-list takes the subcommand import")
		}
		return cmdEKListImport(ctx, rest[1:], stdout)
	case "ek-cert":
		if len(rest) == 0 || rest[0] != "verify" {
			return usagef("ek-cert takes the subcommand verify")
		}
		return cmdEKCertVerify(rest[1:], stdout, stderr)
	case "help", "-h", "--help":
		return flag.ErrHelp
	default:
		return usagef("unknown command %q", cmd)
	}
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string, positional bool) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	if !positional && fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

func cmdInit(args []string, stdout io.Writer) error {
	fs := newFlags("init")
	dir := fs.String("dir", "", "CA directory to create")
	org := fs.String("org", "tpmline", "organization in issued certificates")
	var p11 hsm.Config
	fs.StringVar(&p11.Module, "pkcs11-module", "", "PKCS#11 library: generate the CA keys on a token instead of files")
	fs.StringVar(&p11.Token, "pkcs11-token", "", "label of the PKCS#11 token")
	fs.StringVar(&p11.PINFile, "pkcs11-pin-file", "", "file holding the token's user PIN")
	fs.StringVar(&p11.PINEnv, "pkcs11-pin-env", "", "environment variable holding the token's user PIN")
	prefix := fs.String("pkcs11-key-prefix", ca.DefaultKeyLabelPrefix, "start of the labels of the keys generated on the token")
	publicURL := fs.String("public-url", "", "base URL of the CRL and OCSP endpoints, named in issued certificates")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *dir == "" {
		return usagef("init: --dir is required")
	}
	var opts ca.InitOptions
	if p11 != (hsm.Config{}) {
		if err := p11.Check(); err != nil {
			return usagef("init: %v", err)
		}
		opts = ca.InitOptions{PKCS11: &p11, KeyLabelPrefix: *prefix}
	}
	if *publicURL != "" {
		if u, err := url.Parse(*publicURL); err != nil || u.Scheme != "http" || u.Host == "" || strings.TrimSuffix(u.Path, "/") != "" {
			return usagef("init: --public-url %q is not http://HOST[:PORT] (relying parties fetch CRLs over plain HTTP)", *publicURL)
		}
		opts.PublicURL = strings.TrimSuffix(*publicURL, "/")
	}
	made, err := ca.InitWith(*dir, *org, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "CA initialised in %s\nroot: %s\nissuing CA: %s\nstation access CA: %s\n", *dir, made.Root.Subject, made.Issuing.Subject, made.Access.Subject)
	return nil
}

func cmdStationAdd(args []string, stdout io.Writer) error {
	fs := newFlags("station add")
	dir := fs.String("dir", "", "CA directory")
	name := fs.String("name", "", "station name (the client certificate CN)")
	out := fs.String("out", "", "directory for NAME.crt, NAME.key and ca-trust.pem")
	csr := fs.String("csr", "", "certify the key of this PEM CSR (a key kept in the station's token) instead of making one")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *dir == "" || *name == "" || *out == "" {
		return usagef("station add: --dir, --name and --out are required")
	}
	if err := ca.CheckStationName(*name); err != nil {
		return usagef("station add: %v", err)
	}
	if *csr != "" {
		pub, err := ca.StationCSR(*csr)
		if err != nil {
			return err
		}
		files, err := ca.AddStationKey(*dir, *name, *out, pub)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "station %s: %s (its key stays where the CSR was made), %s\n", *name, files.Cert, files.Trust)
		return nil
	}
	files, err := ca.AddStation(*dir, *name, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "station %s: %s, %s (0600), %s\n", *name, files.Cert, files.Key, files.Trust)
	return nil
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve")
	dir := fs.String("dir", "", "CA directory")
	listen := fs.String("listen", "", "address to listen on (default from config, else 127.0.0.1:8443)")
	ekRoots := fs.String("ek-roots", "", "PEM file or directory of TPM vendor root and intermediate CAs")
	requireList := fs.Bool("require-ek-list", false, "refuse EKs not on an uploaded EK list")
	dbURL := fs.String("db", "", "sqlite://PATH or postgres://... (default sqlite in DIR)")
	publicListen := fs.String("public-listen", "", "address of the plain-HTTP CRL and OCSP endpoints (default from config, else off)")
	metricsListen := fs.String("metrics-listen", "", "address of the Prometheus /metrics endpoint (plain HTTP; default off)")
	// Not in the usage text: for whoever measures the CA. The environment variable reaches a serve process
	// that a benchmark starts.
	cpuProfile := fs.String("cpuprofile", os.Getenv(CPUProfileEnv), "write a CPU profile of the serve process to this file when it stops")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *dir == "" {
		return usagef("serve: --dir is required")
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	gcPercent, memLimit := tuneGC(os.Getenv)
	err := ca.Serve(ctx, ca.ServeConfig{
		Dir: *dir, Listen: *listen, EKRoots: *ekRoots, DB: *dbURL, RequireEKList: *requireList, PublicListen: *publicListen,
		MetricsListen: *metricsListen,
		Log:           slog.New(slog.NewTextHandler(stderr, nil)),
		LogAttrs:      []any{"gc_percent", gcPercent, "memory_limit_mib", memLimit >> 20},
	})
	if errors.Is(err, ca.ErrNoEKRoots) {
		return usagef("serve: --ek-roots is required (or ek_roots in %s)", ca.ConfigFile)
	}
	return err
}

// Garbage collector settings of upstream-ca serve when the operator sets neither GOGC nor GOMEMLIMIT. The
// serve process holds a few MiB live (connection pools, caches) and allocates a few hundred KiB per
// enrollment, all short-lived: at Go's default GOGC=100 it collects every few dozen enrollments. ServeGCPercent
// collects a quarter as often for a few MiB more resident; ServeMemoryLimit makes the collector work
// harder well before an EK list upload (MaxEKListRequestBytes, decoded) could grow the heap far.
const (
	ServeGCPercent   = 400
	ServeMemoryLimit = 512 << 20
)

// tuneGC applies ServeGCPercent and ServeMemoryLimit unless GOGC or GOMEMLIMIT is set (then the runtime
// has applied the operator's values and both are left alone), and returns the settings in force.
func tuneGC(getenv func(string) string) (gcPercent int, memLimit int64) {
	if getenv("GOGC") == "" && getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(ServeGCPercent)
		debug.SetMemoryLimit(ServeMemoryLimit)
	}
	gcPercent = debug.SetGCPercent(-1)
	debug.SetGCPercent(gcPercent)
	return gcPercent, debug.SetMemoryLimit(-1)
}

// CPUProfileEnv names a file upstream-ca serve writes its CPU profile to when it stops (as --cpuprofile).
const CPUProfileEnv = "UPSTREAM_CA_CPUPROFILE"

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating the CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting the CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func cmdEKListImport(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("ek-list import")
	dir := fs.String("dir", "", "CA directory")
	dbURL := fs.String("db", "", "database URL (default from config, else sqlite in DIR)")
	sigPath := fs.String("sig", "", "the list's detached signature (default FILE.sig)")
	if err := parseFlags(fs, args, true); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() != 1 {
		return usagef("ek-list import: --dir and one FILE are required")
	}
	res, signer, err := ca.ImportEKListFile(ctx, *dir, *dbURL, fs.Arg(0), *sigPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "EK list %q signed by station %s: %d entries, %d new\n", res.Batch, signer, res.Received, res.Added)
	return nil
}

func cmdEKCertVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ek-cert verify")
	ekRoots := fs.String("ek-roots", "", "PEM file or directory of TPM vendor root and intermediate CAs")
	at := fs.String("at", "", "check validity at this RFC 3339 time instead of now (e.g. 2027-01-01T00:00:00Z)")
	if err := parseFlags(fs, args, true); err != nil {
		return err
	}
	if *ekRoots == "" || fs.NArg() == 0 {
		return usagef("ek-cert verify: --ek-roots and at least one FILE are required")
	}
	v, err := ca.LoadEKVerifier(*ekRoots, stderr)
	if err != nil {
		return err
	}
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return usagef("ek-cert verify: --at %q is not an RFC 3339 time such as 2027-01-01T00:00:00Z", *at)
		}
		v.Now = func() time.Time { return t }
	}
	failed := 0
	for _, path := range fs.Args() {
		raw, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(stdout, "== %s\nerror: %v\n\n", path, err)
			failed++
			continue
		}
		if len(raw) > ekcert.MaxInputSize {
			raw = raw[:ekcert.MaxInputSize+1] // Describe refuses it; do not hold more
		}
		r := ekcert.Describe(raw, v)
		fmt.Fprintf(stdout, "== %s\n%s\n", path, strings.TrimRight(r.String(), "\n"))
		fmt.Fprintln(stdout)
		if !r.Verified {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d EK certificates did not verify", failed, fs.NArg())
	}
	return nil
}

func cmdRevoke(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("revoke")
	dir := fs.String("dir", "", "CA directory")
	dbURL := fs.String("db", "", "database URL (default from config, else sqlite in DIR)")
	board := fs.String("board", "", "revoke every certificate issued to the board with this serial")
	certSerial := fs.String("cert-serial", "", "revoke the board certificate with this serial (hex)")
	stationCert := fs.String("station-cert", "", "revoke the station credential in this PEM file")
	reason := fs.String("reason", "unspecified", "RFC 5280 reason: keyCompromise, superseded, cessationOfOperation, ...")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	n := 0
	for _, f := range []string{*board, *certSerial, *stationCert} {
		if f != "" {
			n++
		}
	}
	if *dir == "" || n != 1 {
		return usagef("revoke: --dir and exactly one of --board, --cert-serial and --station-cert are required")
	}
	code, err := ca.ParseReason(*reason)
	if err != nil {
		return usagef("revoke: %v", err)
	}
	req := ca.RevokeRequest{Dir: *dir, DB: *dbURL, BoardSerial: *board, CertSerial: *certSerial, Reason: code}
	if *stationCert != "" {
		if req.StationCert, err = ca.ReadCertificate(*stationCert); err != nil {
			return err
		}
	}
	res, err := ca.Revoke(ctx, req)
	if res != nil {
		for _, r := range res.Revoked {
			fmt.Fprintf(stdout, "revoked %s certificate %s%s, reason %d\n", r.Kind, r.SerialNumber, revokedWho(r), r.Reason)
		}
		for _, r := range res.Already {
			fmt.Fprintf(stdout, "already revoked: %s certificate %s%s on %s\n", r.Kind, r.SerialNumber, revokedWho(r), r.RevokedAt.Format(time.RFC3339))
		}
	}
	return err
}

func revokedWho(r ca.Revocation) string {
	if r.BoardSerial != "" {
		return " of board " + r.BoardSerial
	}
	return " of station " + r.Subject
}
