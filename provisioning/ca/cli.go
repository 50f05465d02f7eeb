package ca

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ekcert"
	"github.com/tpmline/tpmline/reports/signed"
)

// Exit codes of upstream-ca.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Files in a CA directory (upstream-ca init --dir DIR).
const (
	ConfigFile      = "config.json"
	RootCertFile    = "root.crt"
	RootKeyFile     = "root.key"
	IssuingCertFile = "issuing.crt"
	IssuingKeyFile  = "issuing.key"
	AccessCertFile  = "station-access.crt"
	AccessKeyFile   = "station-access.key"
	ServerCertFile  = "server.crt"
	ServerKeyFile   = "server.key"
	TrustFile       = "ca-trust.pem"
)

// Config is DIR/config.json.
type Config struct {
	Organization string `json:"organization"`
	// CommonName of issued certificates; empty means the product name of the enrollment.
	CommonName string `json:"common_name,omitempty"`
	// IDevIDNotAfter and IAKNotAfter (RFC 3339); empty means 99991231235959Z.
	IDevIDNotAfter string `json:"idevid_not_after,omitempty"`
	IAKNotAfter    string `json:"iak_not_after,omitempty"`
	ChallengeTTL   string `json:"challenge_ttl,omitempty"` // Go duration, default 60s
	Listen         string `json:"listen,omitempty"`
	DB             string `json:"db,omitempty"`       // default sqlite://DIR/ca.db
	EKRoots        string `json:"ek_roots,omitempty"` // PEM file or directory of TPM vendor CAs
	RequireEKList  bool   `json:"require_ek_list,omitempty"`
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

const usageText = `usage:
  upstream-ca init --dir DIR [--org NAME]
  upstream-ca station add --dir DIR --name NAME --out OUTDIR
  upstream-ca serve --dir DIR [--listen 127.0.0.1:8443] [--ek-roots PEM-or-dir] [--require-ek-list] [--db URL]
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
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *dir == "" {
		return usagef("init: --dir is required")
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	for _, f := range []string{ConfigFile, RootKeyFile, IssuingKeyFile, AccessKeyFile, ServerKeyFile, "ca.db"} {
		if _, err := os.Stat(filepath.Join(*dir, f)); err == nil {
			return fmt.Errorf("%s already holds a CA (%s exists); refusing to overwrite it", *dir, f)
		}
	}
	now := clock.Now()
	// The root signs only the issuing CA. The station access CA is a separate self-signed root: stations and
	// the server trust it alone, so no certificate under the device root (an IDevID above all) can ever
	// authenticate as a station, and a station credential can never pass as a device identity.
	root, err := NewCertificate(CertSpec{Subject: pkix.Name{Organization: []string{*org}, CommonName: *org + " TPM Identity Root CA"}, NotAfter: now.AddDate(30, 0, 0), IsCA: true, MaxPathLen: 1}, nil, now)
	if err != nil {
		return err
	}
	issuing, err := NewCertificate(CertSpec{Subject: pkix.Name{Organization: []string{*org}, CommonName: *org + " TPM Identity Issuing CA"}, NotAfter: now.AddDate(25, 0, 0), IsCA: true}, root, now)
	if err != nil {
		return err
	}
	access, err := NewCertificate(CertSpec{Subject: pkix.Name{Organization: []string{*org}, CommonName: *org + " Station Access CA"}, NotAfter: now.AddDate(10, 0, 0), IsCA: true}, nil, now)
	if err != nil {
		return err
	}
	server, err := NewCertificate(CertSpec{Subject: pkix.Name{Organization: []string{*org}, CommonName: "upstream-ca"}, NotAfter: now.AddDate(2, 0, 0),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}, access, now)
	if err != nil {
		return err
	}
	for _, kp := range []struct {
		kp        *KeyPair
		cert, key string
	}{{root, RootCertFile, RootKeyFile}, {issuing, IssuingCertFile, IssuingKeyFile}, {access, AccessCertFile, AccessKeyFile}, {server, ServerCertFile, ServerKeyFile}} {
		if err := WriteKeyPair(kp.kp, filepath.Join(*dir, kp.cert), filepath.Join(*dir, kp.key)); err != nil {
			return err
		}
	}
	if err := writeNew(filepath.Join(*dir, TrustFile), PEMCertificates(access.Cert), 0o644); err != nil {
		return err
	}
	cfg, _ := json.MarshalIndent(Config{Organization: *org, Listen: "127.0.0.1:8443", ChallengeTTL: DefaultChallengeTTL.String()}, "", "  ")
	if err := writeNew(filepath.Join(*dir, ConfigFile), append(cfg, '\n'), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "CA initialised in %s\nroot: %s\nissuing CA: %s\nstation access CA: %s\n", *dir, root.Cert.Subject, issuing.Cert.Subject, access.Cert.Subject)
	return nil
}

// CheckStationName: a station name becomes a certificate CN and a file name.
func CheckStationName(name string) error {
	if name == "" || len(name) > 64 {
		return errors.New("station name must be 1..64 characters")
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') || name[0] == '.' {
			return fmt.Errorf("station name %q: use letters, digits, '-', '_' and '.' (not leading)", printable(name))
		}
	}
	return nil
}

func cmdStationAdd(args []string, stdout io.Writer) error {
	fs := newFlags("station add")
	dir := fs.String("dir", "", "CA directory")
	name := fs.String("name", "", "station name (the client certificate CN)")
	out := fs.String("out", "", "directory for NAME.crt, NAME.key and ca-trust.pem")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *dir == "" || *name == "" || *out == "" {
		return usagef("station add: --dir, --name and --out are required")
	}
	if err := CheckStationName(*name); err != nil {
		return usagef("station add: %v", err)
	}
	access, err := ReadKeyPair(filepath.Join(*dir, AccessCertFile), filepath.Join(*dir, AccessKeyFile))
	if err != nil {
		return fmt.Errorf("reading the station access CA: %w", err)
	}
	now := clock.Now()
	kp, err := NewCertificate(CertSpec{Subject: pkix.Name{CommonName: *name}, NotAfter: now.AddDate(2, 0, 0), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, access, now)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	if err := WriteKeyPair(kp, filepath.Join(*out, *name+".crt"), filepath.Join(*out, *name+".key")); err != nil {
		return err
	}
	trust := filepath.Join(*out, TrustFile)
	if existing, err := os.ReadFile(trust); err == nil {
		if !bytes.Equal(existing, PEMCertificates(access.Cert)) {
			return fmt.Errorf("%s exists and trusts another CA", trust)
		}
	} else if err := writeNew(trust, PEMCertificates(access.Cert), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "station %s: %s, %s (0600), %s\n", *name, filepath.Join(*out, *name+".crt"), filepath.Join(*out, *name+".key"), trust)
	return nil
}

func loadConfig(dir string) (*Config, error) {
	raw, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, fmt.Errorf("reading the CA config (run upstream-ca init --dir %s first?): %w", dir, err)
	}
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ConfigFile), err)
	}
	return &cfg, nil
}

// loadEKVerifier loads TPM vendor CAs: self-signed certificates become roots, the others intermediates.
func loadEKVerifier(path string, warn io.Writer) (*ekcert.Verifier, error) {
	certs, warnings, err := ekcert.LoadCertificates(path)
	for _, w := range warnings {
		fmt.Fprintf(warn, "warning: %s\n", w)
	}
	if err != nil {
		return nil, fmt.Errorf("loading TPM vendor CAs from %s: %w", path, err)
	}
	v := &ekcert.Verifier{}
	for _, c := range certs {
		if bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil {
			v.Roots = append(v.Roots, c)
		} else {
			v.Intermediates = append(v.Intermediates, c)
		}
	}
	if len(v.Roots) == 0 {
		return nil, fmt.Errorf("%s holds no self-signed TPM vendor root", path)
	}
	return v, nil
}

// openCA wires a Verifier from DIR.
func openCA(ctx context.Context, dir, dbURL, ekRoots string, warn io.Writer) (*Verifier, *Config, error) {
	cfg, err := loadConfig(dir)
	if err != nil {
		return nil, nil, err
	}
	if dbURL == "" {
		dbURL = cfg.DB
	}
	if dbURL == "" {
		dbURL = "sqlite://" + filepath.Join(dir, "ca.db")
	}
	root, err := ReadCertificate(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, nil, err
	}
	issuing, err := ReadKeyPair(filepath.Join(dir, IssuingCertFile), filepath.Join(dir, IssuingKeyFile))
	if err != nil {
		return nil, nil, err
	}
	is := &Issuer{CA: issuing.Cert, Key: issuing.Key, Root: root, Organization: cfg.Organization, CommonName: cfg.CommonName}
	for _, f := range []struct {
		v   string
		dst *time.Time
	}{{cfg.IDevIDNotAfter, &is.IDevIDNotAfter}, {cfg.IAKNotAfter, &is.IAKNotAfter}} {
		if f.v != "" {
			if *f.dst, err = time.Parse(time.RFC3339, f.v); err != nil {
				return nil, nil, fmt.Errorf("config: %w", err)
			}
		}
	}
	v := &Verifier{Issuer: is, RequireEKList: cfg.RequireEKList}
	if cfg.ChallengeTTL != "" {
		if v.ChallengeTTL, err = time.ParseDuration(cfg.ChallengeTTL); err != nil || v.ChallengeTTL <= 0 {
			return nil, nil, fmt.Errorf("config: challenge_ttl %q is not a positive duration", cfg.ChallengeTTL)
		}
	}
	if ekRoots == "" {
		ekRoots = cfg.EKRoots
	}
	if ekRoots != "" {
		if v.EKVerifier, err = loadEKVerifier(ekRoots, warn); err != nil {
			return nil, nil, err
		}
	}
	if v.Store, err = OpenStore(ctx, dbURL); err != nil {
		return nil, nil, err
	}
	return v, cfg, nil
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve")
	dir := fs.String("dir", "", "CA directory")
	listen := fs.String("listen", "", "address to listen on (default from config, else 127.0.0.1:8443)")
	ekRoots := fs.String("ek-roots", "", "PEM file or directory of TPM vendor root and intermediate CAs")
	requireList := fs.Bool("require-ek-list", false, "refuse EKs not on an uploaded EK list")
	dbURL := fs.String("db", "", "sqlite://PATH or postgres://... (default sqlite in DIR)")
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
	log := slog.New(slog.NewTextHandler(stderr, nil))
	gcPercent, memLimit := tuneGC(os.Getenv)
	v, cfg, err := openCA(ctx, *dir, *dbURL, *ekRoots, stderr)
	if err != nil {
		return err
	}
	defer v.Store.Close()
	if v.EKVerifier == nil {
		return usagef("serve: --ek-roots is required (or ek_roots in %s)", ConfigFile)
	}
	v.RequireEKList = v.RequireEKList || *requireList
	v.Log = log
	addr := *listen
	if addr == "" {
		addr = cfg.Listen
	}
	if addr == "" {
		addr = "127.0.0.1:8443"
	}
	serverCert, err := tls.LoadX509KeyPair(filepath.Join(*dir, ServerCertFile), filepath.Join(*dir, ServerKeyFile))
	if err != nil {
		return fmt.Errorf("loading the TLS server certificate: %w", err)
	}
	access, err := ReadCertificate(filepath.Join(*dir, AccessCertFile))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(access)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	log.Info("upstream CA serving", "addr", ln.Addr().String(), "db", v.Store.Engine(), "ek_roots", len(v.EKVerifier.Roots),
		"ek_intermediates", len(v.EKVerifier.Intermediates), "require_ek_list", v.RequireEKList,
		"gc_percent", gcPercent, "memory_limit_mib", memLimit>>20)
	srv := &Server{Verifier: v, Log: log}
	go purgeChallenges(ctx, v.Store, log, clock.Now)
	err = srv.Serve(ctx, ln, ServerTLSConfig(serverCert, pool))
	log.Info("upstream CA stopped")
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

// ChallengeRetention is how long an expired challenge is kept: a late answer still gets
// challenge_expired (not challenge_unknown) for that long, and the table stays small on a busy CA.
const ChallengeRetention = time.Hour

// purgeChallenges drops long-expired challenges every few minutes until ctx ends.
func purgeChallenges(ctx context.Context, st *Store, log *slog.Logger, now func() time.Time) {
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := st.PurgeChallenges(ctx, now().Add(-ChallengeRetention)); err != nil {
				log.Warn("purging expired challenges", "err", err)
			} else if n > 0 {
				log.Info("purged expired challenges", "count", n)
			}
		}
	}
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
	path := fs.Arg(0)
	if *sigPath == "" {
		*sigPath = path + ".sig"
	}
	up, signer, err := readSignedEKList(*dir, path, *sigPath)
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	v, _, err := openCA(ctx, *dir, *dbURL, "", io.Discard)
	if err != nil {
		return err
	}
	defer v.Store.Close()
	res, err := v.ImportEKList(ctx, "file:"+printable(signer), up)
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	fmt.Fprintf(stdout, "EK list %q signed by station %s: %d entries, %d new\n", res.Batch, printable(signer), res.Received, res.Added)
	return nil
}

// readSignedEKList reads a station's EK list file (docs/ek-list.md, CSV or JSON) and checks its detached
// signature: the signer's certificate must chain to this CA's station access CA, so only a station this CA
// enrolled can hand it a list, and any changed byte in the file or the signature refuses the whole list.
func readSignedEKList(dir, path, sigPath string) (*EKListUpload, string, error) {
	access, err := ReadCertificate(filepath.Join(dir, AccessCertFile))
	if err != nil {
		return nil, "", err
	}
	content, err := readBounded(path, MaxEKListFileBytes)
	if err != nil {
		return nil, "", err
	}
	sig, err := readBounded(sigPath, signed.MaxSigFileBytes)
	if err != nil {
		return nil, "", fmt.Errorf("signature: %v (a station signs every EK list it exports: FILE.sig)", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(access)
	ver, err := signed.Verify(content, sig, pool)
	if err != nil {
		return nil, "", fmt.Errorf("%s: signature refused: %v", provisioning.CodeEKListInvalid, err)
	}
	list, err := signed.ReadEKList(bytes.NewReader(content), provisioning.MaxEKListEntries)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %v", provisioning.CodeEKListInvalid, err)
	}
	up := &EKListUpload{Batch: list.Header.Batch, Entries: make([]EKListEntry, 0, len(list.Entries))}
	for _, e := range list.Entries {
		up.Entries = append(up.Entries, EKListEntry{Serial: e.Serial, EKCert: e.EKCert, EKPublic: e.EKPublic,
			EKPublicSHA256: e.EKPublicSHA256, TPMManufacturer: e.TPMManufacturer, TPMModel: e.TPMModel, TPMFirmware: e.TPMFirmware})
	}
	return up, ver.Signer().Subject.CommonName, nil
}

// MaxEKListFileBytes bounds an EK list file: 1,000,000 entries of ~1 KiB each.
const MaxEKListFileBytes = 1 << 30

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
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
	v, err := loadEKVerifier(*ekRoots, stderr)
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
