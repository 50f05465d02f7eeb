package ca

import (
	"crypto"
	"crypto/rand"
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

// Rooted in the OEM's PKI: init --issuing-csr makes the issuing CA's key (in files or on the token) and a
// CSR for it instead of a root of its own; the OEM's offline root signs the CSR; import-issuing-cert checks
// the certificate and the root before the CA uses them. Until then the CA does not serve.

// writeIssuingCSR writes a PEM CSR for key, subject org's issuing CA, to path.
func writeIssuingCSR(path, org string, key crypto.Signer) error {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{Organization: []string{org}, CommonName: org + " TPM Identity Issuing CA"}}, key)
	if err != nil {
		return fmt.Errorf("making the issuing CA's CSR: %w", err)
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

// errIssuingPending is Open's answer for a CA whose issuing certificate was not imported yet.
func errIssuingPending(dir string) error {
	return fmt.Errorf("%s: the issuing CA has no certificate yet; have the OEM root sign the CSR init wrote, then run upstream-ca import-issuing-cert --dir %s --root ROOT.pem CERT.pem", dir, dir)
}

// ImportIssuingCert installs the issuing CA certificate at certPath, signed by the OEM root at rootPath,
// in the CA directory dir (made with init --issuing-csr), after checking, in order: the root is a
// self-signed CA certificate; the certificate is for this CA's issuing key; it is a CA (basic
// constraints CA:true) with path length 0 (it signs device certificates only) and may sign certificates
// and CRLs; it is valid at now; it chains to the root (crypto/x509 verification at now, which applies the
// root's own constraints and validity). It writes issuing.crt and root.crt and refuses to replace them.
func ImportIssuingCert(dir, certPath, rootPath string, now time.Time) (*x509.Certificate, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	for _, f := range []string{IssuingCertFile, RootCertFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("%s already has %s; refusing to replace the CA's chain", dir, f)
		}
	}
	root, err := readOneCertificate(rootPath)
	if err != nil {
		return nil, fmt.Errorf("the OEM root: %w", err)
	}
	if !root.BasicConstraintsValid || !root.IsCA || root.CheckSignatureFrom(root) != nil {
		return nil, fmt.Errorf("%s is not a self-signed CA certificate; give the OEM's root certificate", rootPath)
	}
	cert, err := readOneCertificate(certPath)
	if err != nil {
		return nil, fmt.Errorf("the issuing CA certificate: %w", err)
	}
	keys, err := openCAKeys(dir, cfg)
	if err != nil {
		return nil, err
	}
	defer keys.Close()
	key, err := keys.issuingKey()
	if err != nil {
		return nil, err
	}
	if err := sameKey(cert, key); err != nil {
		return nil, fmt.Errorf("%s is not a certificate for this CA's issuing key (signed from another CSR?)", certPath)
	}
	switch {
	case !cert.BasicConstraintsValid || !cert.IsCA:
		return nil, fmt.Errorf("%s is not a CA certificate (basic constraints CA:true missing); sign the CSR with a CA extension", certPath)
	case cert.MaxPathLen != 0 || !cert.MaxPathLenZero:
		return nil, fmt.Errorf("%s allows CAs under the issuing CA (path length %d); it must be pathlen:0, it signs device certificates only", certPath, cert.MaxPathLen)
	case cert.KeyUsage&x509.KeyUsageCertSign == 0 || cert.KeyUsage&x509.KeyUsageCRLSign == 0:
		return nil, fmt.Errorf("%s lacks key usage keyCertSign and cRLSign; the issuing CA signs certificates, CRLs and OCSP answers", certPath)
	case now.Before(cert.NotBefore) || now.After(cert.NotAfter):
		return nil, fmt.Errorf("%s is valid from %s to %s, not now (%s)", certPath, cert.NotBefore.Format(time.RFC3339),
			cert.NotAfter.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(root), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%s does not chain to the OEM root %s: %w", certPath, root.Subject, err)
	}
	if err := writeNew(filepath.Join(dir, RootCertFile), PEMCertificates(root), 0o644); err != nil {
		return nil, err
	}
	if err := writeNew(filepath.Join(dir, IssuingCertFile), PEMCertificates(cert), 0o644); err != nil {
		return nil, err
	}
	return cert, nil
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// readOneCertificate reads a PEM file holding exactly one certificate: the issuing CA must sit directly
// under the OEM root (the chain the CA hands out is issuing CA + root).
func readOneCertificate(path string) (*x509.Certificate, error) {
	certs, err := pemfile.Certificates(path)
	if err != nil {
		return nil, err
	}
	if len(certs) == 1 {
		return certs[0], nil
	}
	return nil, errors.New(path + " holds more than one certificate; the issuing CA must be signed by the OEM root directly (no intermediates)")
}

// issuingKey is the issuing CA's private key without its certificate: issuing.key, or the token's key.
func (k *caKeys) issuingKey() (crypto.Signer, error) {
	if k.token != nil {
		return k.token.Key(k.p11.IssuingKey)
	}
	path := filepath.Join(k.dir, IssuingKeyFile)
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
