package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/internal/hsm"
	"github.com/tpmline/tpmline/internal/metrics"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ekcert"
	"github.com/tpmline/tpmline/reports/signed"
)

// A CA directory and what runs from it: Init creates one, AddStation issues a station's client
// certificate, Open wires a Verifier from it, Serve runs the HTTPS enrollment API, ImportEKListFile takes a
// station-signed EK list file. The upstream-ca command (cmd/upstream-ca) is flags around these.

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
	// RequireAuditHead refuses enrollments without the station's signed audit chain head.
	RequireAuditHead bool `json:"require_audit_head,omitempty"`
	// PublicURL is where relying parties reach the CRL and OCSP endpoints (http://HOST:PORT); when set,
	// issued certificates name PublicURL/crl and PublicURL/ocsp. PublicListen is where serve answers them.
	PublicURL    string `json:"public_url,omitempty"`
	PublicListen string `json:"public_listen,omitempty"`
	// PKCS11, when set, holds the root, issuing and station access CA keys (keys.go).
	PKCS11 *PKCS11Keys `json:"pkcs11,omitempty"`
}

// Initialised is what Init made.
type Initialised struct {
	Root, Issuing, Access *x509.Certificate
}

// Init creates the CA directory dir with the certificates of a new CA for organization org: a root and
// the issuing CA under it, a separate station access CA, a TLS server certificate, the stations' trust
// file and config.json. It refuses a directory that already holds a CA.
func Init(dir, org string) (*Initialised, error) { return InitWith(dir, org, InitOptions{}) }

// InitWith is Init with its options: with o.PKCS11 the three CA keys are generated on the token.
func InitWith(dir, org string, o InitOptions) (*Initialised, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, f := range []string{ConfigFile, RootCertFile, RootKeyFile, IssuingKeyFile, AccessKeyFile, ServerKeyFile, "ca.db"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("%s already holds a CA (%s exists); refusing to overwrite it", dir, f)
		}
	}
	var p11 *PKCS11Keys
	var tok *hsm.Token
	if o.PKCS11 != nil {
		prefix := o.KeyLabelPrefix
		if prefix == "" {
			prefix = DefaultKeyLabelPrefix
		}
		p11 = &PKCS11Keys{Config: *o.PKCS11, RootKey: prefix + "root", IssuingKey: prefix + "issuing", AccessKey: prefix + "access"}
		var err error
		if tok, err = hsm.Open(*o.PKCS11); err != nil {
			return nil, err
		}
		defer tok.Close()
	}
	// newCA makes a CA key: in the token when there is one, else in memory for WriteKeyPair.
	newCA := func(spec CertSpec, label string, parent *KeyPair, now time.Time) (*KeyPair, error) {
		if tok == nil {
			return NewCertificate(spec, parent, now)
		}
		key, err := tok.Generate(label)
		if err != nil {
			return nil, err
		}
		return NewCertificateFor(spec, key, parent, now)
	}
	now := clock.Now()
	// The root signs only the issuing CA. The station access CA is a separate self-signed root: stations and
	// the server trust it alone, so no certificate under the device root (an IDevID above all) can ever
	// authenticate as a station, and a station credential can never pass as a device identity.
	var labels PKCS11Keys
	if p11 != nil {
		labels = *p11
	}
	var root, issuing, access *KeyPair
	var err error
	// generate makes an OEM-signed CA's key: on the token under label, or in memory (oemKey writes it).
	generate := func(label string) func() (crypto.Signer, error) {
		return func() (crypto.Signer, error) {
			if tok != nil {
				return tok.Generate(label)
			}
			return NewKey()
		}
	}
	if o.IssuingCSR != "" {
		// Rooted in the OEM's PKI: the issuing CA's key now, its certificate from the OEM's root later.
		if tok != nil {
			labels.RootKey, p11.RootKey = "", ""
		}
		if err := oemKey(dir, o.IssuingCSR, IssuingCA, pkix.Name{Organization: []string{org}, CommonName: org + " TPM Identity Issuing CA"},
			generate(labels.IssuingKey), tok != nil); err != nil {
			return nil, err
		}
	} else {
		root, err = newCA(CertSpec{Subject: pkix.Name{Organization: []string{org}, CommonName: org + " TPM Identity Root CA"}, NotAfter: now.AddDate(30, 0, 0), IsCA: true, MaxPathLen: 1}, labels.RootKey, nil, now)
		if err != nil {
			return nil, err
		}
		issuing, err = newCA(CertSpec{Subject: pkix.Name{Organization: []string{org}, CommonName: org + " TPM Identity Issuing CA"}, NotAfter: now.AddDate(25, 0, 0), IsCA: true}, labels.IssuingKey, root, now)
		if err != nil {
			return nil, err
		}
	}
	if o.AccessCSR != "" {
		if err := oemKey(dir, o.AccessCSR, AccessCA, pkix.Name{Organization: []string{org}, CommonName: org + " Station Access CA"},
			generate(labels.AccessKey), tok != nil); err != nil {
			return nil, err
		}
	} else {
		access, err = newCA(CertSpec{Subject: pkix.Name{Organization: []string{org}, CommonName: org + " Station Access CA"}, NotAfter: now.AddDate(10, 0, 0), IsCA: true}, labels.AccessKey, nil, now)
		if err != nil {
			return nil, err
		}
	}
	for _, kp := range []struct {
		kp        *KeyPair
		cert, key string
	}{{root, RootCertFile, RootKeyFile}, {issuing, IssuingCertFile, IssuingKeyFile}, {access, AccessCertFile, AccessKeyFile}} {
		if kp.kp == nil {
			continue // the OEM's root and the certificate it signs come later
		}
		if _, onToken := kp.kp.Key.(*hsm.Signer); onToken {
			if err := writeNew(filepath.Join(dir, kp.cert), PEMCertificates(kp.kp.Cert), 0o644); err != nil {
				return nil, err
			}
			continue
		}
		if err := WriteKeyPair(kp.kp, filepath.Join(dir, kp.cert), filepath.Join(dir, kp.key)); err != nil {
			return nil, err
		}
	}
	if access != nil {
		if err := writeServerCert(dir, org, access, now); err != nil {
			return nil, err
		}
		if err := writeNew(filepath.Join(dir, TrustFile), PEMCertificates(access.Cert), 0o644); err != nil {
			return nil, err
		}
	}
	cfg, _ := json.MarshalIndent(Config{Organization: org, Listen: "127.0.0.1:8443", ChallengeTTL: DefaultChallengeTTL.String(), PKCS11: p11, PublicURL: o.PublicURL}, "", "  ")
	if err := writeNew(filepath.Join(dir, ConfigFile), append(cfg, '\n'), 0o600); err != nil {
		return nil, err
	}
	made := &Initialised{}
	if access != nil {
		made.Access = access.Cert
	}
	if root != nil {
		made.Root, made.Issuing = root.Cert, issuing.Cert
	}
	return made, nil
}

// writeServerCert issues the CA's TLS server certificate (a file key: the handshake signs with it on every
// connection) under the station access CA and writes server.crt and server.key.
func writeServerCert(dir, org string, access *KeyPair, now time.Time) error {
	server, err := NewCertificate(CertSpec{Subject: pkix.Name{Organization: []string{org}, CommonName: "upstream-ca"}, NotAfter: now.AddDate(2, 0, 0),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}, access, now)
	if err != nil {
		return err
	}
	return WriteKeyPair(server, filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile))
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

// StationFiles are the files AddStation wrote.
type StationFiles struct {
	Cert, Key, Trust string
}

// AddStation issues station name's TLS client certificate under the station access CA of the CA in dir
// and writes NAME.crt, NAME.key (0600) and the trust file into out. A trust file already in out must
// trust this CA.
func AddStation(dir, name, out string) (*StationFiles, error) { return addStation(dir, name, out, nil) }

// AddStationKey is AddStation for a station whose key lives elsewhere (a PKCS#11 token on the station):
// it certifies pub, the key of the station's CSR (StationCSR), and writes NAME.crt and the trust file only.
func AddStationKey(dir, name, out string, pub crypto.PublicKey) (*StationFiles, error) {
	if pub == nil {
		return nil, errors.New("no station public key")
	}
	return addStation(dir, name, out, pub)
}

func addStation(dir, name, out string, pub crypto.PublicKey) (*StationFiles, error) {
	if err := CheckStationName(name); err != nil {
		return nil, err
	}
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	if err := checkImported(dir, AccessCA); err != nil {
		return nil, err
	}
	keys, err := openCAKeys(dir, cfg)
	if err != nil {
		return nil, err
	}
	defer keys.Close()
	access, err := keys.load(AccessCertFile, AccessKeyFile, func(p *PKCS11Keys) string { return p.AccessKey })
	if err != nil {
		return nil, fmt.Errorf("reading the station access CA: %w", err)
	}
	now := clock.Now()
	spec := CertSpec{Subject: pkix.Name{CommonName: name}, NotAfter: now.AddDate(2, 0, 0), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	var kp *KeyPair
	if pub == nil {
		kp, err = NewCertificate(spec, access, now)
	} else {
		kp, err = newCertificatePub(spec, pub, access, now)
	}
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return nil, err
	}
	files := &StationFiles{Cert: filepath.Join(out, name+".crt"), Key: filepath.Join(out, name+".key"), Trust: filepath.Join(out, TrustFile)}
	if pub != nil {
		files.Key = ""
		if err := writeNew(files.Cert, PEMCertificates(kp.Cert), 0o644); err != nil {
			return nil, err
		}
	} else if err := WriteKeyPair(kp, files.Cert, files.Key); err != nil {
		return nil, err
	}
	if existing, err := os.ReadFile(files.Trust); err == nil {
		if !bytes.Equal(existing, PEMCertificates(access.Cert)) {
			return nil, fmt.Errorf("%s exists and trusts another CA", files.Trust)
		}
	} else if err := writeNew(files.Trust, PEMCertificates(access.Cert), 0o644); err != nil {
		return nil, err
	}
	return files, nil
}

// LoadConfig reads DIR/config.json, refusing fields it does not know.
func LoadConfig(dir string) (*Config, error) {
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

// LoadEKVerifier loads TPM vendor CAs: self-signed certificates become roots, the others intermediates.
func LoadEKVerifier(path string, warn io.Writer) (*ekcert.Verifier, error) {
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

// OpenOptions say where Open finds a CA. DB and EKRoots override config.json's db and ek_roots; Warn
// receives warnings about the EK roots (nil discards them).
type OpenOptions struct {
	Dir     string
	DB      string // default: config.json's db, else sqlite://DIR/ca.db
	EKRoots string // PEM file or directory of TPM vendor CAs
	Warn    io.Writer
}

// Open wires a Verifier from the CA directory o.Dir: its config, issuing CA, EK roots (if any are
// configured) and store, which the caller closes.
func Open(ctx context.Context, o OpenOptions) (*Verifier, *Config, error) {
	dir, dbURL, ekRoots, warn := o.Dir, o.DB, o.EKRoots, o.Warn
	if warn == nil {
		warn = io.Discard
	}
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, nil, err
	}
	if dbURL == "" {
		dbURL = cfg.DB
	}
	if dbURL == "" {
		dbURL = "sqlite://" + filepath.Join(dir, "ca.db")
	}
	if err := checkImported(dir, IssuingCA); err != nil {
		return nil, nil, err
	}
	root, err := ReadCertificate(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, nil, err
	}
	inter, err := readIntermediates(dir)
	if err != nil {
		return nil, nil, err
	}
	// A token stays open for the process: the Verifier signs with it until the process ends.
	keys, err := openCAKeys(dir, cfg)
	if err != nil {
		return nil, nil, err
	}
	opened := false
	defer func() {
		if !opened {
			keys.Close() // a refused Open leaves no token session behind
		}
	}()
	issuing, err := keys.load(IssuingCertFile, IssuingKeyFile, func(p *PKCS11Keys) string { return p.IssuingKey })
	if err != nil {
		return nil, nil, err
	}
	is := &Issuer{CA: issuing.Cert, Key: issuing.Key, Intermediates: inter, Root: root, Organization: cfg.Organization, CommonName: cfg.CommonName}
	if cfg.PublicURL != "" {
		is.CRLDistributionPoints, is.OCSPServer = []string{cfg.PublicURL + CRLPath}, []string{cfg.PublicURL + OCSPPath}
	}
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
	v := &Verifier{Issuer: is, RequireEKList: cfg.RequireEKList, RequireAuditHead: cfg.RequireAuditHead}
	if cfg.ChallengeTTL != "" {
		if v.ChallengeTTL, err = time.ParseDuration(cfg.ChallengeTTL); err != nil || v.ChallengeTTL <= 0 {
			return nil, nil, fmt.Errorf("config: challenge_ttl %q is not a positive duration", cfg.ChallengeTTL)
		}
	}
	if ekRoots == "" {
		ekRoots = cfg.EKRoots
	}
	if ekRoots != "" {
		if v.EKVerifier, err = LoadEKVerifier(ekRoots, warn); err != nil {
			return nil, nil, err
		}
	}
	if v.Store, err = OpenStore(ctx, dbURL); err != nil {
		return nil, nil, err
	}
	opened = true
	return v, cfg, nil
}

// ErrNoEKRoots: Serve was given no TPM vendor CAs, neither in ServeConfig nor in config.json.
var ErrNoEKRoots = errors.New("no EK roots configured")

// ServeConfig is what Serve needs beyond the CA directory's own config.
type ServeConfig struct {
	Dir           string
	Listen        string // default: config.json's listen, else 127.0.0.1:8443
	EKRoots       string // default: config.json's ek_roots; one of the two is required
	DB            string // default: config.json's db, else sqlite://DIR/ca.db
	RequireEKList bool   // on top of config.json's require_ek_list
	// RequireAuditHead is on top of config.json's require_audit_head.
	RequireAuditHead bool
	PublicListen     string // CRL and OCSP over plain HTTP; default config.json's public_listen, else none
	MetricsListen    string // Prometheus /metrics over plain HTTP; default none
	Log              *slog.Logger
	// LogAttrs are added to the "upstream CA serving" line (the command's runtime settings).
	LogAttrs []any
}

// Serve runs the enrollment API of the CA in c.Dir over HTTPS with mutual TLS (stations authenticate with
// certificates under the station access CA) until ctx ends, purging long-expired challenges meanwhile.
// Without EK roots it returns an error wrapping ErrNoEKRoots before listening.
func Serve(ctx context.Context, c ServeConfig) error {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Before Open, which opens the key token: a CA still waiting for its access CA certificate opens none.
	if err := checkImported(c.Dir, AccessCA); err != nil {
		return err
	}
	v, cfg, err := Open(ctx, OpenOptions{Dir: c.Dir, DB: c.DB, EKRoots: c.EKRoots})
	if err != nil {
		return err
	}
	defer v.Store.Close()
	if v.EKVerifier == nil {
		return fmt.Errorf("%w: set --ek-roots (or ek_roots in %s)", ErrNoEKRoots, ConfigFile)
	}
	v.RequireEKList = v.RequireEKList || c.RequireEKList
	v.RequireAuditHead = v.RequireAuditHead || c.RequireAuditHead
	v.Log = log
	addr := c.Listen
	if addr == "" {
		addr = cfg.Listen
	}
	if addr == "" {
		addr = "127.0.0.1:8443"
	}
	serverCert, err := tls.LoadX509KeyPair(filepath.Join(c.Dir, ServerCertFile), filepath.Join(c.Dir, ServerKeyFile))
	if err != nil {
		return fmt.Errorf("loading the TLS server certificate: %w", err)
	}
	access, err := ReadCertificate(filepath.Join(c.Dir, AccessCertFile))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(access)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	log.Info("upstream CA serving", append([]any{"addr", ln.Addr().String(), "db", v.Store.Engine(), "ek_roots", len(v.EKVerifier.Roots),
		"ek_intermediates", len(v.EKVerifier.Intermediates), "require_ek_list", v.RequireEKList, "require_audit_head", v.RequireAuditHead}, c.LogAttrs...)...)
	srv := &Server{Verifier: v, Log: log, Ready: func() error { return Ready(v.Issuer.Key) }}
	go purgeChallenges(ctx, v.Store, log, clock.Now)
	if c.PublicListen == "" {
		c.PublicListen = cfg.PublicListen
	}
	if c.PublicListen != "" {
		pln, err := net.Listen("tcp", c.PublicListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listening for CRL and OCSP: %w", err)
		}
		log.Info("CRL and OCSP serving", "addr", pln.Addr().String(), "public_url", cfg.PublicURL)
		pub := &Public{Store: v.Store, Issuing: &KeyPair{Cert: v.Issuer.CA, Key: v.Issuer.Key}, Log: log}
		go func() {
			if err := pub.ServePublic(ctx, pln); err != nil {
				log.Error("CRL and OCSP stopped", "err", err)
			}
		}()
	}
	if c.MetricsListen != "" {
		reg := metrics.NewRegistry()
		srv.Metrics = metrics.NewCA(reg, func() map[string]int {
			n, err := v.Store.RevocationCounts(context.Background())
			if err != nil {
				log.Warn("metrics: counting revocations", "err", err)
			}
			return n
		})
		mln, err := net.Listen("tcp", c.MetricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listening for /metrics: %w", err)
		}
		go func() {
			if err := metrics.ServeListener(ctx, mln, reg, log); err != nil {
				log.Error("metrics stopped", "err", err)
			}
		}()
	}
	tlsConf := ServerTLSConfig(serverCert, pool)
	revoked := StationRevocationCheck(v.Store)
	tlsConf.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil // RequireAndVerifyClientCert has refused it already
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := revoked(cctx, cs.PeerCertificates[0])
		if err != nil {
			log.Warn("station refused at the handshake", "err", err)
		}
		return err
	}
	err = srv.Serve(ctx, ln, tlsConf)
	log.Info("upstream CA stopped")
	return err
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

// ImportEKListFile imports the station-signed EK list file at path (signature in sigPath, default
// path+".sig") into the CA in dir (database dbURL, default from its config) and names the signing station.
func ImportEKListFile(ctx context.Context, dir, dbURL, path, sigPath string) (res *EKListResult, signer string, err error) {
	if sigPath == "" {
		sigPath = path + ".sig"
	}
	up, signer, err := ReadSignedEKList(dir, path, sigPath)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %v", path, err)
	}
	v, _, err := Open(ctx, OpenOptions{Dir: dir, DB: dbURL})
	if err != nil {
		return nil, "", err
	}
	defer v.Store.Close()
	signer = printable(signer)
	res, err = v.ImportEKList(ctx, "file:"+signer, up)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %v", path, err)
	}
	return res, signer, nil
}

// ReadSignedEKList reads a station's EK list file (docs/ek-list.md, CSV or JSON) and checks its detached
// signature: the signer's certificate must chain to this CA's station access CA, so only a station this CA
// enrolled can hand it a list, and any changed byte in the file or the signature refuses the whole list.
func ReadSignedEKList(dir, path, sigPath string) (*EKListUpload, string, error) {
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
