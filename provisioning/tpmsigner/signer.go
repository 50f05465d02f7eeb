// Package tpmsigner is a crypto.Signer over a key that lives in a TPM (go-tpm's transport.TPM): the IDevID
// for TLS client authentication, or any signing key a board made with its TPM. The private key never leaves
// the TPM; every Sign is one TPM2_Sign.
package tpmsigner

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Signer signs with the key at Handle. A TPM runs one command at a time, and so does a Signer: Sign is safe
// for concurrent use (a TLS server may sign several handshakes at once) but serialises them.
type Signer struct {
	tpm    transport.TPM
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	public tpm2.TPMTPublic
	pub    crypto.PublicKey
	auth   []byte

	mu sync.Mutex
}

var _ crypto.Signer = (*Signer)(nil)

// New reads the public area of the key at handle (a persistent handle, or a transient one the caller keeps
// loaded) and returns a Signer for it. auth is the key's authValue (nil for the project's keys, whose
// templates set an empty one). The key must be a non-restricted signing key: a restricted key signs only
// digests the TPM made itself and TPM2_Sign would refuse every TLS handshake.
func New(tpm transport.TPM, handle tpm2.TPMHandle, auth []byte) (*Signer, error) {
	rsp, err := (tpm2.ReadPublic{ObjectHandle: handle}).Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("reading the key at %#x: %w", uint32(handle), err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("reading the key at %#x: %w", uint32(handle), err)
	}
	if !pub.ObjectAttributes.SignEncrypt || pub.ObjectAttributes.Restricted || pub.ObjectAttributes.Decrypt {
		return nil, fmt.Errorf("the key at %#x is not an unrestricted signing key", uint32(handle))
	}
	k, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, fmt.Errorf("the key at %#x: %w", uint32(handle), err)
	}
	return &Signer{tpm: tpm, handle: handle, name: rsp.Name, public: *pub, pub: k, auth: auth}, nil
}

// Public is the key's public half (*ecdsa.PublicKey or *rsa.PublicKey).
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// Handle is where the key is.
func (s *Signer) Handle() tpm2.TPMHandle { return s.handle }

// Sign signs digest, the hash named by opts. ECDSA keys give an ASN.1 ECDSA-Sig-Value (what crypto/tls and
// x509 expect); RSA keys sign PKCS #1 v1.5 or, with *rsa.PSSOptions, PSS. A key whose template fixes a
// scheme (the TCG H-2 IDevID: ECDSA-SHA256) signs only with that scheme's hash; the NULL-scheme key of the
// product profile option signs with any hash the TPM has (SHA-384 for TLS 1.2 peers that ask for it).
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := opts.HashFunc()
	alg, err := hashAlg(h)
	if err != nil {
		return nil, err
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("tpmsigner: digest is %d bytes, %v wants %d", len(digest), h, h.Size())
	}
	scheme, err := s.scheme(alg, opts)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rsp, err := (tpm2.Sign{
		KeyHandle: tpm2.AuthHandle{Handle: s.handle, Name: s.name, Auth: tpm2.PasswordAuth(s.auth)},
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme:  scheme,
		// An unrestricted key needs no hash check ticket (TPM 2.0 Part 3, 20.2): the NULL ticket.
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}).Execute(s.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpmsigner: TPM2_Sign with the key at %#x: %w", uint32(s.handle), err)
	}
	switch scheme.Scheme {
	case tpm2.TPMAlgECDSA:
		sig, err := rsp.Signature.Signature.ECDSA()
		if err != nil {
			return nil, fmt.Errorf("tpmsigner: %w", err)
		}
		return ecdsaDER(sig.SignatureR.Buffer, sig.SignatureS.Buffer), nil
	case tpm2.TPMAlgRSAPSS:
		sig, err := rsp.Signature.Signature.RSAPSS()
		if err != nil {
			return nil, fmt.Errorf("tpmsigner: %w", err)
		}
		return sig.Sig.Buffer, nil
	default:
		sig, err := rsp.Signature.Signature.RSASSA()
		if err != nil {
			return nil, fmt.Errorf("tpmsigner: %w", err)
		}
		return sig.Sig.Buffer, nil
	}
}

// scheme picks the TPM signature scheme for one signature and refuses what the key's template rules out.
func (s *Signer) scheme(alg tpm2.TPMAlgID, opts crypto.SignerOpts) (tpm2.TPMTSigScheme, error) {
	var fixed, fixedHash, want tpm2.TPMAlgID
	switch s.pub.(type) {
	case *ecdsa.PublicKey:
		want = tpm2.TPMAlgECDSA
		parms, err := s.public.Parameters.ECCDetail()
		if err != nil {
			return tpm2.TPMTSigScheme{}, fmt.Errorf("tpmsigner: %w", err)
		}
		fixed = parms.Scheme.Scheme
		if fixed == tpm2.TPMAlgECDSA {
			d, err := parms.Scheme.Details.ECDSA()
			if err != nil {
				return tpm2.TPMTSigScheme{}, fmt.Errorf("tpmsigner: %w", err)
			}
			fixedHash = d.HashAlg
		}
	case *rsa.PublicKey:
		want = tpm2.TPMAlgRSASSA
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			// The TPM's PSS salt is as long as the digest (TPM 2.0 Part 1, B.7; libtpms and the chips we
			// know): what TLS 1.3 requires and what PSSSaltLengthEqualsHash asks for.
			if pss.SaltLength != rsa.PSSSaltLengthEqualsHash && pss.SaltLength != rsa.PSSSaltLengthAuto && pss.SaltLength != opts.HashFunc().Size() {
				return tpm2.TPMTSigScheme{}, fmt.Errorf("tpmsigner: a TPM signs PSS with a salt as long as the digest, not %d bytes", pss.SaltLength)
			}
			want = tpm2.TPMAlgRSAPSS
		}
		parms, err := s.public.Parameters.RSADetail()
		if err != nil {
			return tpm2.TPMTSigScheme{}, fmt.Errorf("tpmsigner: %w", err)
		}
		fixed = parms.Scheme.Scheme
		switch fixed {
		case tpm2.TPMAlgRSASSA:
			d, err := parms.Scheme.Details.RSASSA()
			if err != nil {
				return tpm2.TPMTSigScheme{}, fmt.Errorf("tpmsigner: %w", err)
			}
			fixedHash = d.HashAlg
		case tpm2.TPMAlgRSAPSS:
			d, err := parms.Scheme.Details.RSAPSS()
			if err != nil {
				return tpm2.TPMTSigScheme{}, fmt.Errorf("tpmsigner: %w", err)
			}
			fixedHash = d.HashAlg
		}
	default:
		return tpm2.TPMTSigScheme{}, errors.New("tpmsigner: unsupported key type")
	}
	if fixed != tpm2.TPMAlgNull && (fixed != want || fixedHash != alg) {
		return tpm2.TPMTSigScheme{}, fmt.Errorf("tpmsigner: the key's template fixes scheme %v with hash %v; asked for %v with %v (a NULL-scheme key signs any)", fixed, fixedHash, want, alg)
	}
	return tpm2.TPMTSigScheme{Scheme: want, Details: tpm2.NewTPMUSigScheme(want, &tpm2.TPMSSchemeHash{HashAlg: alg})}, nil
}

func hashAlg(h crypto.Hash) (tpm2.TPMAlgID, error) {
	switch h {
	case crypto.SHA256:
		return tpm2.TPMAlgSHA256, nil
	case crypto.SHA384:
		return tpm2.TPMAlgSHA384, nil
	case crypto.SHA512:
		return tpm2.TPMAlgSHA512, nil
	case crypto.SHA1:
		return tpm2.TPMAlgSHA1, nil
	}
	return 0, fmt.Errorf("tpmsigner: hash %v is not one a TPM signs with", h)
}

// ecdsaDER encodes r and s as an ASN.1 ECDSA-Sig-Value (SEC 1, C.5).
func ecdsaDER(r, s []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(new(big.Int).SetBytes(r))
		b.AddASN1BigInt(new(big.Int).SetBytes(s))
	})
	return b.BytesOrPanic()
}
