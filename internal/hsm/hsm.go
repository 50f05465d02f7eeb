// Package hsm keeps private keys in a PKCS#11 token (an HSM in production, SoftHSM2 in tests) through
// github.com/ThalesGroup/crypto11. It owns the token configuration (module, token label, where the PIN
// comes from), key generation and lookup by label, and the signer that survives the token going away: a
// signature made while the token is gone fails with ErrTokenUnavailable, and the next one after it is back
// reopens the session and checks the key is still the one it had.
package hsm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// Config names a token and where its user PIN comes from. The PIN itself is never part of a configuration
// file: it is read from PINFile or from the environment variable PINEnv when the token is opened.
type Config struct {
	Module  string `json:"module"`             // path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so
	Token   string `json:"token"`              // the token label (CKA_LABEL of the token)
	PINFile string `json:"pin_file,omitempty"` // a file holding the user PIN (trailing newline ignored)
	PINEnv  string `json:"pin_env,omitempty"`  // an environment variable holding the user PIN
}

// Errors a caller tells apart.
var (
	ErrWrongPIN         = errors.New("the token refused the PIN")
	ErrNoKey            = errors.New("no such key on the token")
	ErrKeyExists        = errors.New("a key with this label is already on the token")
	ErrTokenUnavailable = errors.New("the PKCS#11 token is unavailable")
)

// Check says what is missing from c.
func (c Config) Check() error {
	switch {
	case c.Module == "":
		return errors.New("pkcs11: the module path is required (e.g. /usr/lib/softhsm/libsofthsm2.so)")
	case c.Token == "":
		return errors.New("pkcs11: the token label is required")
	case c.PINFile == "" && c.PINEnv == "":
		return errors.New("pkcs11: say where the PIN comes from: a PIN file or an environment variable")
	case c.PINFile != "" && c.PINEnv != "":
		return errors.New("pkcs11: give the PIN file or the PIN environment variable, not both")
	}
	return nil
}

func (c Config) pin() (string, error) {
	if c.PINEnv != "" {
		p, ok := os.LookupEnv(c.PINEnv)
		if !ok || p == "" {
			return "", fmt.Errorf("pkcs11: the PIN variable %s is not set", c.PINEnv)
		}
		return p, nil
	}
	b, err := os.ReadFile(c.PINFile)
	if err != nil {
		return "", fmt.Errorf("pkcs11: reading the PIN file: %w", err)
	}
	p := strings.TrimRight(string(b), "\r\n")
	if p == "" {
		return "", fmt.Errorf("pkcs11: the PIN file %s is empty", c.PINFile)
	}
	return p, nil
}

// Token is an open, logged-in session pool on one token. Its methods are safe for concurrent use.
type Token struct {
	cfg Config
	mu  sync.Mutex
	ctx *crypto11.Context // nil while the token is gone
	// gen counts reopenings: a signer whose key came from an older context looks its key up again.
	gen uint64
}

// Open logs in to the token c names.
func Open(c Config) (*Token, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	t := &Token{cfg: c}
	ctx, err := t.configure()
	if err != nil {
		return nil, err
	}
	t.ctx = ctx
	return t, nil
}

func (t *Token) configure() (*crypto11.Context, error) {
	pin, err := t.cfg.pin()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(t.cfg.Module); err != nil {
		return nil, fmt.Errorf("pkcs11: module %s: %w", t.cfg.Module, err)
	}
	ctx, err := crypto11.Configure(&crypto11.Config{Path: t.cfg.Module, TokenLabel: t.cfg.Token, Pin: pin})
	if err != nil {
		return nil, t.classify("opening", err)
	}
	return ctx, nil
}

// classify maps a PKCS#11 failure to the package's errors, naming the token.
func (t *Token) classify(doing string, err error) error {
	var rv pkcs11.Error
	if errors.As(err, &rv) {
		switch rv {
		case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE, pkcs11.CKR_PIN_LOCKED:
			return fmt.Errorf("pkcs11 token %q: %w (%v); check the PIN file or variable", t.cfg.Token, ErrWrongPIN, err)
		case pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_ERROR,
			pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_USER_NOT_LOGGED_IN,
			pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_OBJECT_HANDLE_INVALID:
			return fmt.Errorf("pkcs11 token %q %s: %w (%v)", t.cfg.Token, doing, ErrTokenUnavailable, err)
		}
	}
	// crypto11 does not export its token-not-found error; its text is the only way to tell.
	if strings.Contains(err.Error(), "could not find PKCS#11 token") {
		return fmt.Errorf("pkcs11 token %q %s: %w (no slot holds a token with this label)", t.cfg.Token, doing, ErrTokenUnavailable)
	}
	return fmt.Errorf("pkcs11 token %q %s: %w", t.cfg.Token, doing, err)
}

// Close logs out and closes the sessions.
func (t *Token) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx == nil {
		return nil
	}
	err := t.ctx.Close()
	t.ctx = nil
	return err
}

// current returns the open context, reopening it when the token came back after it went away.
func (t *Token) current() (*crypto11.Context, uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx != nil {
		return t.ctx, t.gen, nil
	}
	ctx, err := t.configure()
	if err != nil {
		return nil, 0, err
	}
	t.ctx, t.gen = ctx, t.gen+1
	return ctx, t.gen, nil
}

// lost drops the context of generation gen after a failure that says the token is gone, so the next
// operation opens a fresh one.
func (t *Token) lost(gen uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx != nil && t.gen == gen {
		t.ctx.Close()
		t.ctx = nil
	}
}

// Generate makes a new P-256 signing key labelled label on the token. The private key is created
// sensitive and non-extractable (crypto11's defaults), so it never leaves the token.
func (t *Token) Generate(label string) (*Signer, error) {
	if label == "" {
		return nil, errors.New("pkcs11: a key label is required")
	}
	ctx, gen, err := t.current()
	if err != nil {
		return nil, err
	}
	if k, err := t.find(ctx, gen, label); err != nil {
		return nil, err
	} else if k != nil {
		return nil, fmt.Errorf("pkcs11 token %q: key %q: %w; choose another label or remove it", t.cfg.Token, label, ErrKeyExists)
	}
	id := make([]byte, 16)
	if _, err := io.ReadFull(rand.Reader, id); err != nil {
		return nil, err
	}
	k, err := ctx.GenerateECDSAKeyPairWithLabel(id, []byte(label), elliptic.P256())
	if err != nil {
		return nil, t.failed(gen, "generating key "+label, err)
	}
	return t.newSigner(label, k, gen)
}

// Key finds the key labelled label.
func (t *Token) Key(label string) (*Signer, error) {
	ctx, gen, err := t.current()
	if err != nil {
		return nil, err
	}
	k, err := t.find(ctx, gen, label)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return nil, fmt.Errorf("pkcs11 token %q: key %q: %w (was it generated on this token?)", t.cfg.Token, label, ErrNoKey)
	}
	return t.newSigner(label, k, gen)
}

// find returns the key pair labelled label, nil when there is none.
func (t *Token) find(ctx *crypto11.Context, gen uint64, label string) (crypto11.Signer, error) {
	ks, err := ctx.FindKeyPairs(nil, []byte(label))
	if err != nil {
		return nil, t.failed(gen, "looking up key "+label, err)
	}
	switch len(ks) {
	case 0:
		return nil, nil
	case 1:
		return ks[0], nil
	}
	return nil, fmt.Errorf("pkcs11 token %q holds %d keys labelled %q; a CA key label must name one key", t.cfg.Token, len(ks), label)
}

func (t *Token) newSigner(label string, k crypto11.Signer, gen uint64) (*Signer, error) {
	spki, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return nil, fmt.Errorf("pkcs11 token %q: key %q: %w", t.cfg.Token, label, err)
	}
	return &Signer{t: t, label: label, pub: k.Public(), spki: spki, key: k, gen: gen}, nil
}

func (t *Token) failed(gen uint64, doing string, err error) error {
	err = t.classify(doing, err)
	if errors.Is(err, ErrTokenUnavailable) {
		t.lost(gen)
	}
	return err
}

// Signer is a crypto.Signer whose private key stays on the token.
type Signer struct {
	t     *Token
	label string
	pub   crypto.PublicKey
	spki  []byte
	mu    sync.Mutex
	key   crypto11.Signer
	gen   uint64
}

var _ crypto.Signer = (*Signer)(nil)

// Label is the key's CKA_LABEL.
func (s *Signer) Label() string { return s.label }

// Public is the key's public half, read once when the key was found.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// Sign signs digest on the token. While the token is gone it fails with ErrTokenUnavailable; once it is
// back, the key is looked up again and refused unless its public key is the one this Signer started with.
func (s *Signer) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	key, gen, err := s.handle()
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(r, digest, opts)
	if err != nil {
		return nil, s.t.failed(gen, "signing with key "+s.label, err)
	}
	return sig, nil
}

// Ready checks the token answers and still holds the key (a round trip to the token), reopening the
// session when the token came back. A server calls it before it commits to work that ends in a signature,
// so a request is refused before anything is spent rather than failing halfway.
func (s *Signer) Ready() error {
	ctx, gen, err := s.t.current()
	if err != nil {
		return err
	}
	k, err := s.t.find(ctx, gen, s.label)
	if err != nil {
		return err
	}
	if k == nil {
		// The key was there when this Signer was made: a token that no longer shows it has been pulled
		// (SoftHSM2 with its directory gone) or wiped; either way nothing may be signed until it is back.
		s.t.lost(gen)
		return fmt.Errorf("pkcs11 token %q no longer shows key %q: %w; put the token back", s.t.cfg.Token, s.label, ErrTokenUnavailable)
	}
	_, _, err = s.handle()
	return err
}

func (s *Signer) handle() (crypto11.Signer, uint64, error) {
	ctx, gen, err := s.t.current()
	if err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen == gen && s.key != nil {
		return s.key, gen, nil
	}
	k, err := s.t.find(ctx, gen, s.label)
	if err != nil {
		return nil, 0, err
	}
	if k == nil {
		return nil, 0, fmt.Errorf("pkcs11 token %q is back without key %q: %w", s.t.cfg.Token, s.label, ErrNoKey)
	}
	spki, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil || !bytes.Equal(spki, s.spki) {
		return nil, 0, fmt.Errorf("pkcs11 token %q: key %q is not the key this process started with; refusing to sign", s.t.cfg.Token, s.label)
	}
	s.key, s.gen = k, gen
	return k, gen, nil
}

// IsECDSAP256 reports whether pub is the P-256 key Generate makes (a check for keys found by label).
func IsECDSAP256(pub crypto.PublicKey) bool {
	k, ok := pub.(*ecdsa.PublicKey)
	return ok && k.Curve == elliptic.P256()
}
