package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tpmline/tpmline/internal/pemfile"
)

// Rooted in the OEM's PKI: init --issuing-csr (and --access-csr) makes the issuing CA's (the station
// access CA's) key, in a file or on the token, and a CSR for it instead of a certificate of its own; the
// OEM's root signs the CSR, directly or through intermediates; ImportCACert checks the certificate and its
// whole path to the root before the CA uses them. Until then the CA does not serve. Both CAs go through
// the same code: an OEMCA says what differs between them.

// IssuingChainFile holds the OEM intermediates between the issuing CA and the OEM root, issuer first;
// absent when the root signed the issuing CA directly. The CA sends them in every enrollment's chain.
const IssuingChainFile = "issuing-intermediates.crt"

// OEMCA is one of the two CAs of a directory that the OEM's PKI can sign, and the rule its certificate
// must meet.
type OEMCA struct {
	Name     string // in messages: "issuing CA", "station access CA"
	Command  string // the import command the operator runs
	CSRFlag  string // the init flag that made the CSR
	certFile string
	keyFile  string
	label    func(*PKCS11Keys) string
	// usage is the key usage the certificate needs, and why (in the refusal).
	usage    x509.KeyUsage
	usageMsg string
	// pathLenZero: the CA signs end-entity certificates only.
	pathLenZero bool
	// pending lists the files the import writes; none may exist before it.
	pending []string
}

var (
	// IssuingCA signs IAKs, IDevIDs, CRLs and OCSP answers.
	IssuingCA = &OEMCA{Name: "issuing CA", Command: "import-issuing-cert", CSRFlag: "--issuing-csr", certFile: IssuingCertFile,
		keyFile: IssuingKeyFile, label: func(p *PKCS11Keys) string { return p.IssuingKey },
		usage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, usageMsg: "keyCertSign and cRLSign; the issuing CA signs certificates, CRLs and OCSP answers",
		pathLenZero: true, pending: []string{IssuingCertFile, RootCertFile, IssuingChainFile}}
	// AccessCA signs the stations' client certificates and the CA's TLS server certificate; stations and
	// the server trust it alone (as an anchor, whatever signed it), so nothing else under the OEM's root
	// can pass as a station.
	AccessCA = &OEMCA{Name: "station access CA", Command: "import-access-cert", CSRFlag: "--access-csr", certFile: AccessCertFile,
		keyFile: AccessKeyFile, label: func(p *PKCS11Keys) string { return p.AccessKey },
		usage: x509.KeyUsageCertSign, usageMsg: "keyCertSign; the station access CA signs the stations' and the server's certificates",
		pending: []string{AccessCertFile, ServerCertFile, ServerKeyFile, TrustFile}}
)

// writeCSR writes a PEM CSR for key, with subject, to path.
func writeCSR(path, what string, subject pkix.Name, key crypto.Signer) error {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key)
	if err != nil {
		return fmt.Errorf("making the %s's CSR: %w", what, err)
	}
	return writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644)
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// errPending is the answer of a command that needs c's certificate before it was imported.
func errPending(dir string, c *OEMCA) error {
	return fmt.Errorf("%s: the %s has no certificate yet; have the OEM's PKI sign the CSR init wrote, then run upstream-ca %s --dir %s --root ROOT.pem [--intermediate CA.pem] CERT.pem",
		dir, c.Name, c.Command, dir)
}

func checkImported(dir string, c *OEMCA) error {
	if _, err := os.Stat(filepath.Join(dir, c.certFile)); errors.Is(err, os.ErrNotExist) {
		return errPending(dir, c)
	}
	return nil
}

// OEMChain is where the OEM's path from the certificate up to its root is read. Root is the OEM's
// self-signed root (the trust anchor the operator got from the OEM, not from the file that came with the
// certificate); Intermediates are PEM files of the CAs between it and the certificate, in any order; Chain
// is one PEM file of intermediates followed by the root, which then must be the file's only self-signed
// certificate and, with Root given as well, the same one.
type OEMChain struct {
	Root          string
	Intermediates []string
	Chain         string
}

// Imported is what ImportCACert installed.
type Imported struct {
	Cert          *x509.Certificate
	Intermediates []*x509.Certificate // issuer first
	Root          *x509.Certificate
	// RootSHA256 is the root certificate's SHA-256 fingerprint, for the operator to compare with the OEM's.
	RootSHA256 [32]byte
}

// maxIntermediates bounds an OEM's path: a root, a policy CA and a regional CA are deep already.
const maxIntermediates = 4

// readChain reads an OEMChain: the root and the intermediates.
func readChain(ch OEMChain) (*x509.Certificate, []*x509.Certificate, error) {
	var root *x509.Certificate
	var inter []*x509.Certificate
	if ch.Root != "" {
		certs, err := pemfile.Certificates(ch.Root)
		if err != nil {
			return nil, nil, fmt.Errorf("the OEM root: %w", err)
		}
		if len(certs) != 1 {
			return nil, nil, fmt.Errorf("%s holds %d certificates; --root is the OEM root alone (intermediates go in --intermediate or --chain)", ch.Root, len(certs))
		}
		root = certs[0]
		if !selfSignedCA(root) {
			return nil, nil, fmt.Errorf("%s is not a self-signed CA certificate; give the OEM's root certificate", ch.Root)
		}
	}
	for _, p := range ch.Intermediates {
		certs, err := pemfile.Certificates(p)
		if err != nil {
			return nil, nil, fmt.Errorf("an OEM intermediate: %w", err)
		}
		for _, c := range certs {
			if selfSignedCA(c) {
				return nil, nil, fmt.Errorf("%s holds the self-signed %s: give the root with --root, intermediates with --intermediate", p, c.Subject)
			}
		}
		inter = append(inter, certs...)
	}
	if ch.Chain != "" {
		certs, err := pemfile.Certificates(ch.Chain)
		if err != nil {
			return nil, nil, fmt.Errorf("the OEM chain: %w", err)
		}
		var chainRoot *x509.Certificate
		for _, c := range certs {
			if !selfSignedCA(c) {
				inter = append(inter, c)
				continue
			}
			if chainRoot != nil {
				return nil, nil, fmt.Errorf("%s holds two self-signed roots (%s and %s); a chain ends at one root", ch.Chain, chainRoot.Subject, c.Subject)
			}
			chainRoot = c
		}
		switch {
		case chainRoot == nil && root == nil:
			return nil, nil, fmt.Errorf("%s holds no self-signed root; end the chain with the OEM root or give it with --root", ch.Chain)
		case chainRoot != nil && root != nil && !bytes.Equal(chainRoot.Raw, root.Raw):
			return nil, nil, fmt.Errorf("%s ends at the root %s, not at the --root given (%s); check which root the OEM signed with", ch.Chain, chainRoot.Subject, root.Subject)
		case root == nil:
			root = chainRoot
		}
	}
	if root == nil {
		return nil, nil, errors.New("no OEM root: give --root ROOT.pem (or a --chain file ending with the root)")
	}
	if len(inter) > maxIntermediates {
		return nil, nil, fmt.Errorf("%d OEM intermediates, over the bound of %d", len(inter), maxIntermediates)
	}
	return root, inter, nil
}

func selfSignedCA(c *x509.Certificate) bool {
	return c.BasicConstraintsValid && c.IsCA && bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

// ImportCACert installs the certificate of c (the issuing or the station access CA) at certPath, which the
// OEM root signed directly or through the intermediates of ch, in the CA directory dir (made with init and
// c's CSR flag), after checking, in order: the root is a self-signed CA certificate, no intermediate is;
// the certificate file holds one certificate, for this CA's key of c; it is a CA (basic constraints
// CA:true), with path length 0 when c signs end-entity certificates only, and has c's key usage; it is
// valid at now; it chains to the root through the intermediates (crypto/x509 verification at now, which
// checks each CA's signature, validity, CA flag, key usage for signing certificates, path length and name
// constraints); every intermediate given is on that path (the CA would hand out the rest to relying
// parties). It writes c's files (for the issuing CA: issuing.crt, the intermediates and root.crt; for
// the station access CA: station-access.crt, then the TLS server certificate it signs and the stations'
// trust file) and refuses to replace any of them.
func ImportCACert(dir string, c *OEMCA, certPath string, ch OEMChain, now time.Time) (*Imported, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	for _, f := range c.pending {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("%s already has %s; refusing to replace the %s's chain", dir, f, c.Name)
		}
	}
	root, inter, err := readChain(ch)
	if err != nil {
		return nil, err
	}
	certs, err := pemfile.Certificates(certPath)
	if err != nil {
		return nil, fmt.Errorf("the %s certificate: %w", c.Name, err)
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%s holds more than one certificate; give the %s's certificate alone, and its intermediates with --intermediate or --chain", certPath, c.Name)
	}
	cert := certs[0]
	keys, err := openCAKeys(dir, cfg)
	if err != nil {
		return nil, err
	}
	defer keys.Close()
	key, err := keys.keyOf(c)
	if err != nil {
		return nil, err
	}
	if err := sameKey(cert, key); err != nil {
		return nil, fmt.Errorf("%s is not a certificate for the %s's key (signed from another CSR?)", certPath, c.Name)
	}
	switch {
	case !cert.BasicConstraintsValid || !cert.IsCA:
		return nil, fmt.Errorf("%s is not a CA certificate (basic constraints CA:true missing); sign the CSR with a CA extension", certPath)
	case c.pathLenZero && (cert.MaxPathLen != 0 || !cert.MaxPathLenZero):
		return nil, fmt.Errorf("%s allows CAs under the %s (path length %d); it must be pathlen:0, it signs device certificates only", certPath, c.Name, cert.MaxPathLen)
	case cert.KeyUsage&c.usage != c.usage:
		return nil, fmt.Errorf("%s lacks key usage %s", certPath, c.usageMsg)
	case now.Before(cert.NotBefore) || now.After(cert.NotAfter):
		return nil, fmt.Errorf("%s is valid from %s to %s, not now (%s)", certPath, cert.NotBefore.Format(time.RFC3339),
			cert.NotAfter.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	chains, err := cert.Verify(x509.VerifyOptions{Roots: pool(root), Intermediates: pool(inter...), CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, fmt.Errorf("%s does not chain to the OEM root %s through the %d intermediate(s) given: %w", certPath, root.Subject, len(inter), err)
	}
	path := shortestPath(chains)
	onPath := path[1 : len(path)-1]
	for _, ic := range inter {
		if !containsCert(onPath, ic) {
			return nil, fmt.Errorf("the intermediate %s is not on the path from %s to the OEM root; give only the CAs that signed it", ic.Subject, certPath)
		}
	}
	if err := c.install(dir, cfg, &KeyPair{Cert: cert, Key: key}, onPath, root, now); err != nil {
		return nil, err
	}
	return &Imported{Cert: cert, Intermediates: onPath, Root: root, RootSHA256: sha256.Sum256(root.Raw)}, nil
}

// install writes c's files once its certificate checked out.
func (c *OEMCA) install(dir string, cfg *Config, kp *KeyPair, inter []*x509.Certificate, root *x509.Certificate, now time.Time) error {
	cert := kp.Cert
	if c == AccessCA {
		// The server certificate first: the access CA's own file last, so a failure before it leaves a
		// directory that still reads as pending.
		if err := writeServerCert(dir, cfg.Organization, kp, now); err != nil {
			return err
		}
		if err := writeNew(filepath.Join(dir, TrustFile), PEMCertificates(cert), 0o644); err != nil {
			return err
		}
		return writeNew(filepath.Join(dir, AccessCertFile), PEMCertificates(cert), 0o644)
	}
	if len(inter) > 0 {
		if err := writeNew(filepath.Join(dir, IssuingChainFile), PEMCertificates(inter...), 0o644); err != nil {
			return err
		}
	}
	if err := writeNew(filepath.Join(dir, RootCertFile), PEMCertificates(root), 0o644); err != nil {
		return err
	}
	return writeNew(filepath.Join(dir, IssuingCertFile), PEMCertificates(cert), 0o644)
}

// shortestPath is the verified chain with the fewest certificates (x509 may find several when
// intermediates cross-sign).
func shortestPath(chains [][]*x509.Certificate) []*x509.Certificate {
	best := chains[0]
	for _, ch := range chains[1:] {
		if len(ch) < len(best) {
			best = ch
		}
	}
	return best
}

func containsCert(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range certs {
		if bytes.Equal(x.Raw, c.Raw) {
			return true
		}
	}
	return false
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// readIntermediates reads IssuingChainFile when the directory has one.
func readIntermediates(dir string) ([]*x509.Certificate, error) {
	path := filepath.Join(dir, IssuingChainFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return pemfile.Certificates(path)
}

// keyOf is the private key of c without its certificate: the key file, or the token's key.
func (k *caKeys) keyOf(c *OEMCA) (crypto.Signer, error) {
	if k.token != nil {
		return k.token.Key(c.label(k.p11))
	}
	path := filepath.Join(k.dir, c.keyFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(raw)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PRIVATE KEY PEM block", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", path)
	}
	return s, nil
}

// oemKey makes the key of c for init with c's CSR flag, writes the CSR to csrPath and, without a token,
// the key file.
func oemKey(dir, csrPath string, c *OEMCA, subject pkix.Name, generate func() (crypto.Signer, error), onToken bool) error {
	key, err := generate()
	if err != nil {
		return err
	}
	if err := writeCSR(csrPath, c.Name, subject, key); err != nil {
		return err
	}
	if !onToken {
		return writeKey(filepath.Join(dir, c.keyFile), key)
	}
	return nil
}
