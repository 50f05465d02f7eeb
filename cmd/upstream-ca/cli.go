package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
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

	"github.com/tpmline/tpmline/internal/cli"
	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/internal/hsm"
	"github.com/tpmline/tpmline/provisioning/ca"
	"github.com/tpmline/tpmline/provisioning/ekcert"
)

// Exit codes of upstream-ca (internal/cli's, shared with station).
const (
	ExitOK      = cli.ExitOK
	ExitFailure = cli.ExitFailed
	ExitUsage   = cli.ExitUsage
)

var usagef = cli.Usagef

func program(stdout, stderr io.Writer) *cli.Program {
	return &cli.Program{
		Name:    "upstream-ca",
		Summary: "upstream-ca: tpmline's reference upstream attestation CA.",
		Commands: []cli.Command{
			{Name: "init", Synopsis: "--dir DIR [--org NAME] [--public-url URL] [--issuing-csr FILE] [--access-csr FILE] [--pkcs11-module LIB --pkcs11-token LABEL (--pkcs11-pin-file FILE | --pkcs11-pin-env VAR) [--pkcs11-key-prefix P]]", Summary: "create a CA directory: root, issuing CA, station access CA, TLS server certificate",
				Example: "upstream-ca init --dir ca --org Acme",
				Run:     func(ctx context.Context, fs *flag.FlagSet, args []string) error { return cmdInit(fs, args, stdout) }},
			{Name: "import-issuing-cert", Synopsis: "--dir DIR (--root ROOT.pem [--intermediate CA.pem]... | --chain CHAIN.pem) CERT.pem",
				Summary: "install the issuing CA certificate the OEM's PKI signed (after init --issuing-csr), once its key, CA flag, path length, key usage, validity and whole path to the root check out",
				Example: "upstream-ca import-issuing-cert --dir ca --root oem-root.pem --intermediate oem-devices-ca.pem issuing.pem",
				Run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
					return cmdImportCA(fs, args, stdout, ca.IssuingCA)
				}},
			{Name: "import-access-cert", Synopsis: "--dir DIR (--root ROOT.pem [--intermediate CA.pem]... | --chain CHAIN.pem) CERT.pem",
				Summary: "install the station access CA certificate the OEM's PKI signed (after init --access-csr), checked as import-issuing-cert does; then make the TLS server certificate and the stations' trust file",
				Example: "upstream-ca import-access-cert --dir ca --root oem-root.pem station-access.pem",
				Run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
					return cmdImportCA(fs, args, stdout, ca.AccessCA)
				}},
			{Name: "station add", Synopsis: "--dir DIR --name NAME --out OUTDIR [--csr FILE]", Summary: "issue a station's client certificate: OUTDIR/NAME.crt, NAME.key and ca-trust.pem",
				Example: "upstream-ca station add --dir ca --name st1 --out st1",
				Run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
					return cmdStationAdd(fs, args, stdout)
				}},
			{Name: "serve", Synopsis: "--dir DIR --ek-roots PEM-or-DIR [--listen ADDR] [--require-ek-list] [--db URL] [--public-listen ADDR] [--metrics-listen ADDR] [--cpuprofile FILE]",
				Summary: "serve the enrollment API over HTTPS with mutual TLS",
				Example: "upstream-ca serve --dir ca --listen 127.0.0.1:8443 --ek-roots /var/lib/swtpm-localca/",
				Run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
					return cmdServe(ctx, fs, args, stderr)
				}},
			{Name: "revoke", Synopsis: "--dir DIR (--board SERIAL | --cert-serial HEX | --station-cert FILE) [--reason NAME] [--db URL]",
				Summary: "revoke a board's certificates or a station's credential (RFC 5280 reason); the CRL, OCSP and the TLS handshake follow",
				Example: "upstream-ca revoke --dir ca --board SN0001 --reason keyCompromise",
				Run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
					return cmdRevoke(ctx, fs, args, stdout)
				}},
			{Name: "ek-list import", Synopsis: "--dir DIR FILE [--sig FILE.sig] [--db URL]", Summary: "import a station-signed EK list file",
				Example: "upstream-ca ek-list import --dir ca B1-ek.json --sig B1-ek.json.sig",
				Run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
					return cmdEKListImport(ctx, fs, args, stdout)
				}},
			{Name: "ek-cert verify", Synopsis: "--ek-roots PEM-or-DIR [--at RFC3339-TIME] FILE...",
				Summary: "say what EK certificates are and whether they chain to the TPM vendor CAs given",
				Example: "upstream-ca ek-cert verify --ek-roots /var/lib/swtpm-localca/ ek.der",
				Run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
					return cmdEKCertVerify(fs, args, stdout, stderr)
				}},
		},
		Footer: "exit codes: 0 done, 1 failed, 2 usage or configuration error. docs/protocol.md and docs/ek-list.md describe the API and the files.",
	}
}

// Main runs upstream-ca with args (without the program name) and returns the exit code: 0 ok, 1 failure,
// 2 usage. ctx ends the serve command (SIGINT/SIGTERM in main).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return program(stdout, stderr).Main(ctx, args, stdout, stderr)
}

// parseFlags parses flags anywhere among the arguments; without positional, an argument is a usage error.
func parseFlags(fs *flag.FlagSet, args []string, positional bool) error {
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if !positional && fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func cmdInit(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	dir := fs.String("dir", "", "CA directory `DIR` to create (required)")
	org := fs.String("org", "tpmline", "organization `NAME` in issued certificates")
	var p11 hsm.Config
	fs.StringVar(&p11.Module, "pkcs11-module", "", "PKCS#11 `LIB`rary: generate the CA keys on a token instead of files")
	fs.StringVar(&p11.Token, "pkcs11-token", "", "`LABEL` of the PKCS#11 token")
	fs.StringVar(&p11.PINFile, "pkcs11-pin-file", "", "`FILE` holding the token's user PIN")
	fs.StringVar(&p11.PINEnv, "pkcs11-pin-env", "", "environment `VAR`iable holding the token's user PIN")
	prefix := fs.String("pkcs11-key-prefix", ca.DefaultKeyLabelPrefix, "start of the labels of the keys generated on the token")
	publicURL := fs.String("public-url", "", "base `URL` of the CRL and OCSP endpoints, named in issued certificates")
	csr := fs.String("issuing-csr", "", "root the CA in the OEM's PKI: no root of its own; write a CSR for the issuing CA's key to `FILE` for the OEM root to sign (then import-issuing-cert)")
	accessCSR := fs.String("access-csr", "", "have the OEM's PKI sign the station access CA too: write a CSR for its key to `FILE` (then import-access-cert)")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *dir == "" {
		return usagef("--dir is required")
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
	opts.IssuingCSR, opts.AccessCSR = *csr, *accessCSR
	if *csr != "" && *csr == *accessCSR {
		return usagef("init: --issuing-csr and --access-csr need two files")
	}
	made, err := ca.InitWith(*dir, *org, opts)
	if err != nil {
		return err
	}
	pending := func(c *ca.OEMCA, file string) string {
		return fmt.Sprintf("%s: key made, CSR in %s: have the OEM's PKI sign it, then run upstream-ca %s --dir %s --root ROOT.pem [--intermediate CA.pem] CERT.pem",
			c.Name, file, c.Command, *dir)
	}
	if made.Issuing == nil {
		fmt.Fprintf(stdout, "CA initialised in %s without a root of its own\n%s\n", *dir, pending(ca.IssuingCA, *csr))
	} else {
		fmt.Fprintf(stdout, "CA initialised in %s\nroot: %s\nissuing CA: %s\n", *dir, made.Root.Subject, made.Issuing.Subject)
	}
	if made.Access == nil {
		fmt.Fprintln(stdout, pending(ca.AccessCA, *accessCSR))
	} else {
		fmt.Fprintf(stdout, "station access CA: %s\n", made.Access.Subject)
	}
	return nil
}

func cmdStationAdd(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	dir := fs.String("dir", "", "CA directory `DIR` (required)")
	name := fs.String("name", "", "station `NAME` (the client certificate CN; required)")
	out := fs.String("out", "", "`OUTDIR` for NAME.crt, NAME.key and ca-trust.pem (required)")
	csr := fs.String("csr", "", "certify the key of this PEM CSR `FILE` (a key kept in the station's token) instead of making one")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *dir == "" || *name == "" || *out == "" {
		return usagef("--dir, --name and --out are required")
	}
	if err := ca.CheckStationName(*name); err != nil {
		return usagef("%v", err)
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

func cmdServe(ctx context.Context, fs *flag.FlagSet, args []string, stderr io.Writer) error {
	dir := fs.String("dir", "", "CA directory `DIR` (required)")
	listen := fs.String("listen", "", "`ADDR` to listen on (default: the config's listen, else 127.0.0.1:8443)")
	ekRoots := fs.String("ek-roots", "", "`PEM-or-DIR`: a PEM file or folder of the TPM vendors' root and intermediate CAs (required, unless ek_roots is in DIR/config.json for serve)")
	requireList := fs.Bool("require-ek-list", false, "refuse EKs not on an uploaded EK list")
	requireHead := fs.Bool("require-audit-head", false, "refuse enrollments that carry no signed audit chain head (stations built before heads rode with enrollments send none)")
	dbURL := fs.String("db", "", "database `URL`: sqlite://PATH or postgres://... (default: the config's db, else sqlite://DIR/ca.db)")
	// The environment variable reaches a serve process that a benchmark starts.
	cpuProfile := fs.String("cpuprofile", os.Getenv(CPUProfileEnv), "write a CPU profile of the serve process to `FILE` when it stops (or set "+CPUProfileEnv+")")
	publicListen := fs.String("public-listen", "", "`ADDR` of the plain-HTTP CRL and OCSP endpoints (default from config, else off)")
	metricsListen := fs.String("metrics-listen", "", "`ADDR` of the Prometheus /metrics endpoint (plain HTTP; default off)")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *dir == "" {
		return usagef("--dir is required")
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
		Dir: *dir, Listen: *listen, EKRoots: *ekRoots, DB: *dbURL, RequireEKList: *requireList, RequireAuditHead: *requireHead, PublicListen: *publicListen,
		MetricsListen: *metricsListen,
		Log:           slog.New(slog.NewTextHandler(stderr, nil)),
		LogAttrs:      []any{"gc_percent", gcPercent, "memory_limit_mib", memLimit >> 20},
	})
	if errors.Is(err, ca.ErrNoEKRoots) {
		return usagef("--ek-roots is required (or ek_roots in %s)", ca.ConfigFile)
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

func cmdEKListImport(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	dir := fs.String("dir", "", "CA directory `DIR` (required)")
	dbURL := fs.String("db", "", "database `URL` (default: the config's db, else sqlite://DIR/ca.db)")
	sigPath := fs.String("sig", "", "the list's detached signature `FILE` (default: FILE.sig)")
	if err := parseFlags(fs, args, true); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() != 1 {
		return usagef("--dir and one FILE are required")
	}
	res, signer, err := ca.ImportEKListFile(ctx, *dir, *dbURL, fs.Arg(0), *sigPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "EK list %q signed by station %s: %d entries, %d new\n", res.Batch, signer, res.Received, res.Added)
	return nil
}

func cmdEKCertVerify(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	ekRoots := fs.String("ek-roots", "", "`PEM-or-DIR`: a PEM file or folder of the TPM vendors' root and intermediate CAs (required, unless ek_roots is in DIR/config.json for serve)")
	at := fs.String("at", "", "check validity at this RFC 3339 `TIME` instead of now (e.g. 2027-01-01T00:00:00Z)")
	if err := parseFlags(fs, args, true); err != nil {
		return err
	}
	if *ekRoots == "" || fs.NArg() == 0 {
		return usagef("--ek-roots and at least one FILE are required")
	}
	v, err := ca.LoadEKVerifier(*ekRoots, stderr)
	if err != nil {
		return err
	}
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return usagef("--at %q is not an RFC 3339 time such as 2027-01-01T00:00:00Z", *at)
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
		if !r.Verified {
			if hint := missingIssuer(raw, v); hint != "" {
				fmt.Fprintln(stdout, hint)
			}
		}
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

// missingIssuer hints that an intermediate CA is missing when the certificate's issuer is none of the CAs
// given: the commonest reason a genuine EK certificate does not chain (vendors sign EKs with an
// intermediate, and a root alone is not enough).
func missingIssuer(raw []byte, v *ekcert.Verifier) string {
	der := raw
	if b, _ := pem.Decode(raw); b != nil {
		der = b.Bytes
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return ""
	}
	for _, ca := range append(append([]*x509.Certificate{}, v.Roots...), v.Intermediates...) {
		if bytes.Equal(ca.RawSubject, c.RawIssuer) {
			return ""
		}
	}
	return fmt.Sprintf("hint:       its issuer %q is none of the %d CAs given in --ek-roots: an intermediate CA is probably missing; add the vendor's intermediate (for swtpm, issuercert.pem) to the PEM file or folder",
		c.Issuer.String(), len(v.Roots)+len(v.Intermediates))
}

func cmdRevoke(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
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

// files is a repeatable flag of file paths.
type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

func cmdImportCA(fs *flag.FlagSet, args []string, stdout io.Writer, which *ca.OEMCA) error {
	dir := fs.String("dir", "", "CA directory `DIR` made with init "+which.CSRFlag+" (required)")
	var ch ca.OEMChain
	fs.StringVar(&ch.Root, "root", "", "the OEM root certificate `PEM` the path ends at")
	fs.Var((*files)(&ch.Intermediates), "intermediate", "a `PEM` file of OEM intermediate CAs between the root and the certificate (repeatable)")
	fs.StringVar(&ch.Chain, "chain", "", "one `PEM` file of the OEM intermediates followed by the root (instead of --intermediate; with --root too, its root must be that one)")
	if err := parseFlags(fs, args, true); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() != 1 || (ch.Root == "" && ch.Chain == "") {
		return usagef("--dir, --root (or --chain) and one certificate file are required")
	}
	if ch.Chain != "" && len(ch.Intermediates) > 0 {
		return usagef("give the intermediates with --intermediate or in --chain, not both")
	}
	im, err := ca.ImportCACert(*dir, which, fs.Arg(0), ch, clock.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s imported: signed by %s, valid until %s, %d OEM intermediate(s), root %s (SHA-256 %X); the CA can serve once every CA has its certificate\n",
		which.Name, im.Cert.Subject, im.Cert.Issuer, im.Cert.NotAfter.UTC().Format(time.RFC3339), len(im.Intermediates), im.Root.Subject, im.RootSHA256[:])
	return nil
}
