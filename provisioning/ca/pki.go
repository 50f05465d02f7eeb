package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"time"
)

// randomSerial is a certificate serial number of 16 random bytes, positive and with its top byte nonzero, so
// it always encodes as 16 bytes (RFC 5280 4.1.2.2 allows up to 20; CA/B BR 7.1 asks for 64 random bits).
func randomSerial(r io.Reader) (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("reading random serial: %w", err)
	}
	b[0] = b[0]&0x7f | 0x40
	return new(big.Int).SetBytes(b), nil
}

// NewKey makes an ECDSA P-256 key, the default for every CA key and TLS key.
func NewKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// KeyPair is a certificate and its private key.
type KeyPair struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// CertSpec describes a certificate NewCertificate makes.
type CertSpec struct {
	Subject  pkix.Name
	NotAfter time.Time
	IsCA     bool
	// MaxPathLen applies to CA certificates: 0 means it may sign only end-entity certificates.
	MaxPathLen  int
	ExtKeyUsage []x509.ExtKeyUsage
	DNSNames    []string
	IPAddresses []net.IP
}

// NewCertificate makes a key and a certificate for spec, signed by parent (self-signed when parent is nil).
func NewCertificate(spec CertSpec, parent *KeyPair, now time.Time) (*KeyPair, error) {
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	return NewCertificateFor(spec, key, parent, now)
}

// NewCertificateFor makes a certificate for spec over key (a key in a PKCS#11 token, say), signed by
// parent (self-signed when parent is nil).
func NewCertificateFor(spec CertSpec, key crypto.Signer, parent *KeyPair, now time.Time) (*KeyPair, error) {
	serial, err := randomSerial(rand.Reader)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               spec.Subject,
		NotBefore:             now.Add(-time.Minute).UTC().Truncate(time.Second),
		NotAfter:              spec.NotAfter,
		BasicConstraintsValid: true,
		IsCA:                  spec.IsCA,
		SubjectKeyId:          keyID(spki),
		ExtKeyUsage:           spec.ExtKeyUsage,
		DNSNames:              spec.DNSNames,
		IPAddresses:           spec.IPAddresses,
	}
	if spec.IsCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		tmpl.MaxPathLen = spec.MaxPathLen
		tmpl.MaxPathLenZero = spec.MaxPathLen == 0
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// WriteKeyPair writes CERTPATH (PEM, 0644) and KEYPATH (PKCS #8 PEM, 0600); it refuses to overwrite either.
func WriteKeyPair(kp *KeyPair, certPath, keyPath string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(kp.Key)
	if err != nil {
		return err
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kp.Cert.Raw}), 0o644)
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadKeyPair reads what WriteKeyPair wrote.
func ReadKeyPair(certPath, keyPath string) (*KeyPair, error) {
	cert, err := ReadCertificate(certPath)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(raw)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PRIVATE KEY PEM block", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", keyPath)
	}
	return &KeyPair{Cert: cert, Key: signer}, nil
}

// ReadCertificate reads one PEM certificate.
func ReadCertificate(path string) (*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(raw)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no CERTIFICATE PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// PEMCertificates encodes certificates as concatenated PEM blocks.
func PEMCertificates(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
