package ca

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/tpmline/tpmline/internal/hsm"
)

// Where the CA's keys live. By default each is a PKCS #8 file in the CA directory (root.key, issuing.key,
// station-access.key). With config.json's pkcs11 section the root, issuing and station access CA keys are
// in a PKCS#11 token instead, found by label, and the directory holds their certificates only. The TLS
// server key stays a file either way: the handshake signs with it on every connection, and a station told
// "the CA's key token is unavailable" in a JSON error is better served than one whose handshake fails.

// PKCS11Keys is config.json's pkcs11 section: the token and the label of each CA key on it.
type PKCS11Keys struct {
	hsm.Config
	RootKey    string `json:"root_key,omitempty"`
	IssuingKey string `json:"issuing_key"`
	AccessKey  string `json:"access_key"`
}

// DefaultKeyLabelPrefix starts the labels init gives the keys it generates on a token.
const DefaultKeyLabelPrefix = "tpmline-ca-"

// InitOptions are Init's choices beyond the directory and the organization.
type InitOptions struct {
	// PKCS11, when set, makes Init generate the root, issuing and station access CA keys on this token;
	// no private key of those three is ever written to disk.
	PKCS11 *hsm.Config
	// KeyLabelPrefix starts the labels of the generated keys (root, issuing, access); default
	// DefaultKeyLabelPrefix. Two CAs on one token need two prefixes.
	KeyLabelPrefix string
	// PublicURL is config.json's public_url (CRL and OCSP, named in issued certificates).
	PublicURL string
	// IssuingCSR, when set, roots the CA in the OEM's PKI: no root of its own, the issuing CA's key made
	// and a CSR for it written to this path, for the OEM's offline root to sign (ImportIssuingCert).
	IssuingCSR string
	// AccessCSR does the same for the station access CA (ImportCACert with AccessCA); the TLS server
	// certificate and the stations' trust file are made at the import.
	AccessCSR string
}

// caKeys makes (init) or finds (every other command) the CA's keys.
type caKeys struct {
	dir   string
	token *hsm.Token
	p11   *PKCS11Keys
}

func openCAKeys(dir string, cfg *Config) (*caKeys, error) {
	k := &caKeys{dir: dir, p11: cfg.PKCS11}
	if k.p11 == nil {
		return k, nil
	}
	// root_key is only init's (a CA rooted in the OEM's PKI has none): nothing after init signs with it.
	if k.p11.IssuingKey == "" || k.p11.AccessKey == "" {
		return nil, fmt.Errorf("%s: pkcs11 needs issuing_key and access_key labels", filepath.Join(dir, ConfigFile))
	}
	var err error
	if k.token, err = hsm.Open(k.p11.Config); err != nil {
		return nil, fmt.Errorf("opening the CA's key token: %w", err)
	}
	return k, nil
}

// Close releases the token; a signer from it stops working.
func (k *caKeys) Close() {
	if k.token != nil {
		k.token.Close()
	}
}

// load reads the certificate certFile and finds its private key: keyFile in the directory, or the key
// labelled label on the token, which must be the certificate's key.
func (k *caKeys) load(certFile, keyFile string, label func(*PKCS11Keys) string) (*KeyPair, error) {
	if k.token == nil {
		return ReadKeyPair(filepath.Join(k.dir, certFile), filepath.Join(k.dir, keyFile))
	}
	cert, err := ReadCertificate(filepath.Join(k.dir, certFile))
	if err != nil {
		return nil, err
	}
	key, err := k.token.Key(label(k.p11))
	if err != nil {
		return nil, err
	}
	if err := sameKey(cert, key); err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

func sameKey(cert *x509.Certificate, key crypto.Signer) error {
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	if !bytes.Equal(spki, cert.RawSubjectPublicKeyInfo) {
		return errors.New("the token's key is not this certificate's key (another CA's key under the same label?)")
	}
	return nil
}

// Ready reports whether key can sign now: for a key on a token, a round trip that finds it there. Files
// are always ready.
func Ready(key crypto.Signer) error {
	if s, ok := key.(*hsm.Signer); ok {
		return s.Ready()
	}
	return nil
}

// publicOnly is a crypto.Signer that has only the public half: NewCertificateFor needs the subject's key
// as a Signer, and for a certificate signed by a parent it only ever reads Public.
type publicOnly struct{ pub crypto.PublicKey }

func (p publicOnly) Public() crypto.PublicKey { return p.pub }

func (p publicOnly) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("a station key held elsewhere cannot sign here")
}

func newCertificatePub(spec CertSpec, pub crypto.PublicKey, parent *KeyPair, now time.Time) (*KeyPair, error) {
	kp, err := NewCertificateFor(spec, publicOnly{pub}, parent, now)
	if err != nil {
		return nil, err
	}
	kp.Key = nil
	return kp, nil
}

// StationCSR reads a station's PEM certificate request (made where its key lives, openssl req or a
// token's tool) and checks its self-signature, so the station proved it holds the key; the CSR's subject
// is not used: the CA names the station.
func StationCSR(path string) (crypto.PublicKey, error) {
	raw, err := readBounded(path, 64<<10)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(raw)
	if blk == nil || (blk.Type != "CERTIFICATE REQUEST" && blk.Type != "NEW CERTIFICATE REQUEST") {
		return nil, fmt.Errorf("%s: no CERTIFICATE REQUEST PEM block", path)
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%s: the request's signature does not verify: %w", path, err)
	}
	return csr.PublicKey, nil
}
