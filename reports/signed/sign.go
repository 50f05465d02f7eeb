package signed

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// SigFormat names the detached signature format (docs/reports.md, "Signatures").
const SigFormat = "tpmline-sig/1"

// Signature algorithms a .sig file names. Each is a signature over SHA-256 of the statement (see
// Statement), which binds the SHA-256 of the content bytes.
const (
	AlgECDSASHA256     = "ECDSA-SHA256"        // ASN.1 DER (r, s), any NIST curve the key uses
	AlgRSAPSSSHA256    = "RSA-PSS-SHA256"      // MGF1-SHA256, salt length 32
	AlgRSAPKCS1SHA256  = "RSA-PKCS1v15-SHA256" // for keys (HSM, TPM) that cannot do PSS
	MaxSigFileBytes    = 64 << 10              // a .sig file: a chain of MaxSigCerts certificates fits with room
	MaxSigCerts        = 8
	maxSigCertDERBytes = 4096
	maxSignatureBytes  = 1024 // RSA-8192 is 1024 bytes; an ECDSA P-521 DER signature is ~139
)

// Signer is the station's signing identity: its mutual-TLS client key and certificate chain (leaf first).
type Signer struct {
	Key   crypto.Signer
	Chain []*x509.Certificate
	// PKCS1v15 selects RSASSA-PKCS1-v1_5 over the default RSA-PSS for RSA keys that cannot do PSS.
	PKCS1v15 bool
	// Rand is the randomness for ECDSA and PSS; nil means crypto/rand.
	Rand io.Reader
}

// Verified is what a valid signature proves.
type Verified struct {
	Algorithm     string
	ContentSHA256 [32]byte
	ContentLength int64
	SignedAt      time.Time           // the time the station claims it signed; covered by the signature
	Chain         []*x509.Certificate // leaf (the signer) first, as carried in the .sig file
	// ChainVerified is true when Verify was given roots and the chain leads to one of them.
	ChainVerified bool
}

// Signer returns the signing certificate.
func (v *Verified) Signer() *x509.Certificate { return v.Chain[0] }

// sigFile is the .sig JSON. Field order is the canonical order; Verify re-encodes and insists on identical
// bytes so that no byte of the file is free to change.
type sigFile struct {
	Format        string   `json:"format"`
	Algorithm     string   `json:"algorithm"`
	ContentSHA256 string   `json:"content_sha256"`
	ContentLength int64    `json:"content_length"`
	SignedAt      string   `json:"signed_at"`
	Certificates  []string `json:"certificates"`
	Signature     string   `json:"signature"`
}

// Statement is the exact byte string whose SHA-256 is signed. It binds the content digest and length, the
// signing time and every certificate the file carries, so a third party can check it with one openssl call
// (docs/reports.md shows how).
func Statement(algorithm string, contentSHA256 [32]byte, contentLength int64, signedAt time.Time, chain [][]byte) []byte {
	var b bytes.Buffer
	b.WriteString(SigFormat + "\n")
	b.WriteString("algorithm " + algorithm + "\n")
	b.WriteString("content-sha256 " + hex.EncodeToString(contentSHA256[:]) + "\n")
	b.WriteString("content-length " + strconv.FormatInt(contentLength, 10) + "\n")
	b.WriteString("signed-at " + signedAt.UTC().Format(time.RFC3339) + "\n")
	for _, der := range chain {
		sum := sha256.Sum256(der)
		b.WriteString("certificate-sha256 " + hex.EncodeToString(sum[:]) + "\n")
	}
	return b.Bytes()
}

// Sign reads content to its end and returns the detached .sig file for it, signed at signedAt (truncated
// to the second, UTC).
func (s Signer) Sign(content io.Reader, signedAt time.Time) ([]byte, error) {
	if s.Key == nil {
		return nil, errors.New("signing: no signing key configured")
	}
	if len(s.Chain) == 0 || s.Chain[0] == nil {
		return nil, errors.New("signing: no signer certificate configured")
	}
	if len(s.Chain) > MaxSigCerts {
		return nil, fmt.Errorf("signing: chain has %d certificates, over the bound of %d", len(s.Chain), MaxSigCerts)
	}
	leaf := s.Chain[0]
	if !publicKeysEqual(s.Key.Public(), leaf.PublicKey) {
		return nil, errors.New("signing: the key does not belong to the first certificate of the chain; check the station's key and certificate files")
	}
	alg, opts, err := s.algorithm()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	n, err := io.Copy(h, content)
	if err != nil {
		return nil, fmt.Errorf("signing: reading the content: %w", err)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	signedAt = signedAt.UTC().Truncate(time.Second)
	if signedAt.Year() < 1 || signedAt.Year() > 9999 {
		return nil, fmt.Errorf("signing: signing time %v is out of range", signedAt)
	}
	ders := make([][]byte, len(s.Chain))
	pems := make([]string, len(s.Chain))
	for i, c := range s.Chain {
		if c == nil || len(c.Raw) == 0 || len(c.Raw) > maxSigCertDERBytes {
			return nil, fmt.Errorf("signing: certificate %d of the chain is empty or over %d bytes", i, maxSigCertDERBytes)
		}
		ders[i] = c.Raw
		pems[i] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	digest := sha256.Sum256(Statement(alg, sum, n, signedAt, ders))
	rnd := s.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	sig, err := s.Key.Sign(rnd, digest[:], opts)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	f := sigFile{
		Format: SigFormat, Algorithm: alg, ContentSHA256: hex.EncodeToString(sum[:]), ContentLength: n,
		SignedAt: signedAt.Format(time.RFC3339), Certificates: pems, Signature: base64.StdEncoding.EncodeToString(sig),
	}
	out := encodeSigFile(&f)
	// Catch a key that signs wrongly (a misconfigured HSM) here rather than at the customer.
	if _, err := verifyParsed(&f, out, sum, n, nil); err != nil {
		return nil, fmt.Errorf("signing: the key produced a signature that does not verify: %w", err)
	}
	return out, nil
}

func (s Signer) algorithm() (string, crypto.SignerOpts, error) {
	switch s.Key.Public().(type) {
	case *ecdsa.PublicKey:
		return AlgECDSASHA256, crypto.SHA256, nil
	case *rsa.PublicKey:
		if s.PKCS1v15 {
			return AlgRSAPKCS1SHA256, crypto.SHA256, nil
		}
		return AlgRSAPSSSHA256, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}, nil
	default:
		return "", nil, fmt.Errorf("signing: key type %T is not supported; use an ECDSA or RSA station key", s.Key.Public())
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

func encodeSigFile(f *sigFile) []byte {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		// Only strings and an int64: marshalling cannot fail.
		panic(err)
	}
	return append(b, '\n')
}

// Verify checks a detached .sig file against content. The checks, in order; the first that fails is
// named in the error:
//
//  1. the .sig file is at most MaxSigFileBytes, JSON with exactly the known fields, format SigFormat;
//  2. it is in canonical form (byte for byte what Sign writes), so no byte of it is free to change;
//  3. the algorithm is one of ECDSA-SHA256, RSA-PSS-SHA256, RSA-PKCS1v15-SHA256;
//  4. content_sha256 is 64 lowercase hex digits and content_length a non-negative number;
//  5. signed_at is an RFC 3339 UTC time to the second;
//  6. 1..MaxSigCerts certificates, each one PEM CERTIFICATE block that parses;
//  7. the signature is strict base64 of at most 1024 bytes;
//  8. the content's length and SHA-256 equal the recorded ones;
//  9. the leaf key type matches the algorithm, and the leaf allows digital signatures if it has a key usage;
//  10. the signature verifies under the leaf key over the statement (Statement);
//  11. when roots is not nil: the chain leads from the leaf through the carried certificates to one of
//     roots, valid at signed_at.
func Verify(content, sig []byte, roots *x509.CertPool) (*Verified, error) {
	f, err := parseSigFile(sig)
	if err != nil {
		return nil, err
	}
	return verifyParsed(f, sig, sha256.Sum256(content), int64(len(content)), roots)
}

// VerifyReader is Verify for content too large to hold: it hashes content as it reads it.
func VerifyReader(content io.Reader, sig []byte, roots *x509.CertPool) (*Verified, error) {
	f, err := parseSigFile(sig)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	n, err := io.Copy(h, content)
	if err != nil {
		return nil, fmt.Errorf("signature: reading the content: %w", err)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return verifyParsed(f, sig, sum, n, roots)
}

func parseSigFile(sig []byte) (*sigFile, error) {
	if len(sig) == 0 {
		return nil, errors.New("signature file is empty")
	}
	if len(sig) > MaxSigFileBytes {
		return nil, fmt.Errorf("signature file is %d bytes, over the %d-byte bound", len(sig), MaxSigFileBytes)
	}
	var f sigFile
	dec := json.NewDecoder(bytes.NewReader(sig))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("signature file is not valid: %v", err)
	}
	if dec.More() {
		return nil, errors.New("signature file has data after its JSON object")
	}
	if f.Format != SigFormat {
		return nil, fmt.Errorf("signature file format is %q, want %q", Clip(f.Format), SigFormat)
	}
	return &f, nil
}

func verifyParsed(f *sigFile, raw []byte, sum [32]byte, n int64, roots *x509.CertPool) (*Verified, error) {
	if !bytes.Equal(encodeSigFile(f), raw) {
		return nil, errors.New("signature file is not in canonical form (edited, reformatted or has duplicate fields)")
	}
	switch f.Algorithm {
	case AlgECDSASHA256, AlgRSAPSSSHA256, AlgRSAPKCS1SHA256:
	default:
		return nil, fmt.Errorf("signature algorithm %q is not supported", Clip(f.Algorithm))
	}
	var want [32]byte
	if len(f.ContentSHA256) != 64 || !IsLowerHex(f.ContentSHA256) {
		return nil, errors.New("signature file content_sha256 is not 64 lowercase hex digits")
	}
	hex.Decode(want[:], []byte(f.ContentSHA256))
	if f.ContentLength < 0 {
		return nil, errors.New("signature file content_length is negative")
	}
	at, err := time.Parse(time.RFC3339, f.SignedAt)
	if err != nil || at.Location() != time.UTC || at.Format(time.RFC3339) != f.SignedAt {
		return nil, fmt.Errorf("signature file signed_at %q is not an RFC 3339 UTC time", Clip(f.SignedAt))
	}
	if len(f.Certificates) == 0 {
		return nil, errors.New("signature file carries no signer certificate")
	}
	if len(f.Certificates) > MaxSigCerts {
		return nil, fmt.Errorf("signature file carries %d certificates, over the bound of %d", len(f.Certificates), MaxSigCerts)
	}
	chain := make([]*x509.Certificate, len(f.Certificates))
	ders := make([][]byte, len(f.Certificates))
	for i, p := range f.Certificates {
		block, rest := pem.Decode([]byte(p))
		if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 || len(block.Headers) != 0 {
			return nil, fmt.Errorf("signature file certificate %d is not one PEM CERTIFICATE block", i)
		}
		// PEM's base64 ignores stray bits and whitespace; only the canonical encoding is accepted.
		if string(pem.EncodeToMemory(block)) != p {
			return nil, fmt.Errorf("signature file certificate %d is not in canonical PEM form", i)
		}
		if len(block.Bytes) > maxSigCertDERBytes {
			return nil, fmt.Errorf("signature file certificate %d is over %d bytes", i, maxSigCertDERBytes)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("signature file certificate %d does not parse: %v", i, err)
		}
		chain[i], ders[i] = c, block.Bytes
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(f.Signature)
	if err != nil || len(sig) == 0 {
		return nil, errors.New("signature file signature is not base64")
	}
	if len(sig) > maxSignatureBytes {
		return nil, fmt.Errorf("signature is %d bytes, over the %d-byte bound", len(sig), maxSignatureBytes)
	}
	if n != f.ContentLength {
		return nil, fmt.Errorf("content is %d bytes but was signed at %d bytes: the file was changed or truncated", n, f.ContentLength)
	}
	if sum != want {
		return nil, errors.New("content SHA-256 differs from the signed one: the file was changed after signing")
	}
	leaf := chain[0]
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, fmt.Errorf("signer certificate %q does not allow digital signatures", Clip(leaf.Subject.CommonName))
	}
	digest := sha256.Sum256(Statement(f.Algorithm, sum, n, at, ders))
	switch f.Algorithm {
	case AlgECDSASHA256:
		pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("signature algorithm is %s but the signer key is %T", f.Algorithm, leaf.PublicKey)
		}
		if !ecdsa.VerifyASN1(pub, digest[:], sig) {
			return nil, fmt.Errorf("signature does not verify under the key of %q", Clip(leaf.Subject.CommonName))
		}
	case AlgRSAPSSSHA256, AlgRSAPKCS1SHA256:
		pub, ok := leaf.PublicKey.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("signature algorithm is %s but the signer key is %T", f.Algorithm, leaf.PublicKey)
		}
		if f.Algorithm == AlgRSAPSSSHA256 {
			err = rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
		}
		if err != nil {
			return nil, fmt.Errorf("signature does not verify under the key of %q", Clip(leaf.Subject.CommonName))
		}
	}
	v := &Verified{Algorithm: f.Algorithm, ContentSHA256: sum, ContentLength: n, SignedAt: at, Chain: chain}
	if roots != nil {
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots: roots, Intermediates: inter, CurrentTime: at,
			// The station key is a TLS client key; it is the station's identity, whatever its EKU.
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			return nil, fmt.Errorf("signer certificate %q is not trusted: %v", Clip(leaf.Subject.CommonName), oneLine(err))
		}
		v.ChainVerified = true
	}
	return v, nil
}

// IsLowerHex reports whether s is only lowercase hex digits, the one spelling of a digest in our files.
func IsLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Clip makes a hostile string safe to quote in a one-line error.
func Clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return '?'
		}
		return r
	}, s)
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}
