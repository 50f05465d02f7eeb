// Package acmeattest obtains certificates for a board in the field through ACME device-attest-01
// (draft-acme-device-attest) with the WebAuthn "tpm" attestation format, as step-ca serves it: a new
// signing key made in the board's TPM, certified by the IAK (TPM2_Certify over the challenge's key
// authorization), proven by the IAK certificate the station's CA issued, and a certificate for the
// board's permanent-identifier (its serial). The private key never leaves the TPM: the CSR is signed
// through tpmsigner, and the key is persisted for the services that use the certificate.
//
// The ACME protocol is golang.org/x/crypto/acme's: its Challenge.Payload carries the device-attest-01
// answer ({"attObj": ...}), so no JWS is written here.
package acmeattest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/crypto/acme"

	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/tpmsigner"
)

// pollInterval paces the challenge polls; step-ca checks an attestation synchronously, so the first answer
// usually carries the verdict.
const pollInterval = 250 * time.Millisecond

// ChallengeType is the ACME challenge this package answers.
const ChallengeType = "device-attest-01"

// IdentifierType is the ACME identifier type of a board's serial (draft-acme-device-attest 3).
const IdentifierType = "permanent-identifier"

// DefaultKeyHandle is where the new key is persisted unless configured: the TCG Provisioning Guidance's
// range for platform-manufacturer keys, after the IDevID (0x81020000) and IAK (0x81020001).
const DefaultKeyHandle tpm2.TPMHandle = 0x81020010

// COSE algorithm identifiers (RFC 9053, IANA COSE registry) of the AK's signature in attStmt.alg.
const (
	coseES256 = -7
	coseES384 = -35
	coseRS256 = -257
)

// Config is one certificate request.
type Config struct {
	Directory string              // the ACME directory URL
	HTTP      *http.Client        // trusts the ACME server; default http.DefaultClient
	TPM       transport.TPM       // the board's TPM
	Layout    provisioning.Layout // where the station left the IAK and its certificate; zero means DefaultLayout
	// IAKCert overrides the IAK certificate read from NV (DER). IAKChain is the rest of x5c: the issuing CA
	// (and any intermediates) between the IAK certificate and the relying party's attestation roots.
	IAKCert  []byte
	IAKChain [][]byte
	// Identifier is the permanent-identifier to ask for; empty takes the IAK certificate's
	// permanentIdentifier (RFC 4043), the board serial.
	Identifier string
	// KeyAlg is the new key: KeyP256 (default) or KeyRSA2048. KeyHandle is where it is persisted (default
	// DefaultKeyHandle); Replace evicts a key already there.
	KeyAlg    provisioning.KeyAlg
	KeyHandle tpm2.TPMHandle
	Replace   bool
	// AccountKey signs the ACME requests; default a fresh P-256 key per run (the account is disposable:
	// the board's identity is the attestation, not the account).
	AccountKey crypto.Signer
	// Attested, when set, sees the attestation statement before it is sent (tests tamper with it to show
	// the relying party refuses).
	Attested func(*Statement)
	Rand     io.Reader // default crypto/rand
}

// Result is what a run obtained.
type Result struct {
	Identifier string
	KeyHandle  tpm2.TPMHandle
	Chain      [][]byte // the certificate, then the chain the ACME server sent
}

// Statement is the WebAuthn "tpm" attestation statement (W3C WebAuthn Level 2, 8.3): ver "2.0", alg the
// COSE algorithm of the AK's signature, x5c the AK certificate then its chain, sig the TPMT_SIGNATURE over
// certInfo (step-ca and go-attestation decode the TPM structure, not a bare signature), certInfo the
// TPMS_ATTEST of TPM2_Certify, pubArea the certified key's TPMT_PUBLIC.
type Statement struct {
	Ver      string   `cbor:"ver"`
	Alg      int64    `cbor:"alg"`
	X5C      [][]byte `cbor:"x5c"`
	Sig      []byte   `cbor:"sig"`
	CertInfo []byte   `cbor:"certInfo"`
	PubArea  []byte   `cbor:"pubArea"`
}

// attestationObject is WebAuthn's attObj without authData, which device-attest-01 does not use.
type attestationObject struct {
	Fmt     string    `cbor:"fmt"`
	AttStmt Statement `cbor:"attStmt"`
}

// Obtain runs the whole exchange: account, order for the permanent-identifier, a new TPM key certified by
// the IAK over the key authorization, the challenge answer, the CSR signed in the TPM, the certificate.
// The key is persisted before the CSR is signed, so a certificate never names a key that is gone.
func Obtain(ctx context.Context, cfg Config) (*Result, error) {
	rnd := cfg.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	layout := cfg.Layout
	if layout == (provisioning.Layout{}) {
		layout = provisioning.DefaultLayout()
	}
	keyHandle := cfg.KeyHandle
	if keyHandle == 0 {
		keyHandle = DefaultKeyHandle
	}
	alg := cfg.KeyAlg
	if alg == "" {
		alg = provisioning.KeyP256
	}
	iakCert := cfg.IAKCert
	if iakCert == nil {
		var err error
		if iakCert, err = provisioning.ReadNV(cfg.TPM, layout.IAKCertIndex, provisioning.MaxCertBytes); err != nil {
			return nil, fmt.Errorf("reading the IAK certificate: %w", err)
		}
	}
	iakX509, err := x509.ParseCertificate(iakCert)
	if err != nil {
		return nil, fmt.Errorf("the IAK certificate: %w", err)
	}
	ident := cfg.Identifier
	if ident == "" {
		if ident, err = PermanentIdentifier(iakX509); err != nil {
			return nil, fmt.Errorf("the IAK certificate names no board (give the identifier): %w", err)
		}
	}
	iak, err := provisioning.LoadKey(cfg.TPM, layout.IAKHandle)
	if err != nil {
		return nil, fmt.Errorf("the IAK: %w", err)
	}
	iakPub, err := tpm2.Pub(iak.Public)
	if err != nil {
		return nil, fmt.Errorf("the IAK: %w", err)
	}
	if k, ok := iakX509.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(iakPub) {
		return nil, fmt.Errorf("the IAK certificate is not for the IAK at %#x", uint32(layout.IAKHandle))
	}
	coseAlg, err := coseAlgorithm(&iak.Public)
	if err != nil {
		return nil, err
	}
	// An occupied handle would only be found after the ACME exchange: look first.
	if !cfg.Replace {
		if _, err := provisioning.LoadKey(cfg.TPM, keyHandle); err == nil {
			return nil, fmt.Errorf("handle %#x already holds a key: evict it (Replace, --replace) or choose another handle", uint32(keyHandle))
		} else if !errors.Is(err, tpm2.TPMRCHandle) {
			return nil, err
		}
	}

	accountKey := cfg.AccountKey
	if accountKey == nil {
		if accountKey, err = ecdsa.GenerateKey(elliptic.P256(), rnd); err != nil {
			return nil, err
		}
	}
	hc := cfg.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	cl := &acme.Client{Key: accountKey, DirectoryURL: cfg.Directory, HTTPClient: hc}
	if _, err := cl.Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return nil, fmt.Errorf("ACME account at %s: %w", cfg.Directory, err)
	}
	order, err := cl.AuthorizeOrder(ctx, []acme.AuthzID{{Type: IdentifierType, Value: ident}})
	if err != nil {
		return nil, fmt.Errorf("ACME order for %s: %w", ident, err)
	}
	if len(order.AuthzURLs) != 1 {
		return nil, fmt.Errorf("ACME order for %s has %d authorizations, want 1", ident, len(order.AuthzURLs))
	}
	authz, err := cl.GetAuthorization(ctx, order.AuthzURLs[0])
	if err != nil {
		return nil, fmt.Errorf("ACME authorization: %w", err)
	}
	var chal *acme.Challenge
	for _, c := range authz.Challenges {
		if c.Type == ChallengeType {
			chal = c
		}
	}
	if chal == nil {
		return nil, fmt.Errorf("the ACME server offers no %s challenge for %s", ChallengeType, ident)
	}
	// The key authorization is token "." base64url(JWK thumbprint) (RFC 8555 8.1); x/crypto/acme computes
	// it for http-01, and device-attest-01 uses the same string.
	keyAuth, err := cl.HTTP01ChallengeResponse(chal.Token)
	if err != nil {
		return nil, err
	}

	key, err := createKey(cfg.TPM, alg, rnd)
	if err != nil {
		return nil, err
	}
	defer key.Flush(cfg.TPM)
	digest := sha256.Sum256([]byte(keyAuth))
	certInfo, sig, err := provisioning.Certify(cfg.TPM, iak, key, digest[:])
	if err != nil {
		return nil, fmt.Errorf("certifying the new key with the IAK: %w", err)
	}
	st := &Statement{Ver: "2.0", Alg: coseAlg, X5C: append([][]byte{iakCert}, cfg.IAKChain...), Sig: sig, CertInfo: certInfo, PubArea: key.PublicBytes}
	if cfg.Attested != nil {
		cfg.Attested(st)
	}
	attObj, err := cbor.Marshal(attestationObject{Fmt: "tpm", AttStmt: *st})
	if err != nil {
		return nil, err
	}
	payload, err := json.Marshal(map[string]string{"attObj": base64.RawURLEncoding.EncodeToString(attObj)})
	if err != nil {
		return nil, err
	}
	chal.Payload = payload
	answered, err := cl.Accept(ctx, chal)
	if err != nil {
		return nil, fmt.Errorf("answering %s: %w", ChallengeType, err)
	}
	// The verdict is the challenge's: step-ca marks a refused challenge invalid but leaves its
	// authorization pending, so waiting on the authorization alone would wait forever.
	for answered.Status != acme.StatusValid {
		if answered.Status == acme.StatusInvalid {
			return nil, fmt.Errorf("the ACME server refused the attestation of %s: %v", ident, answered.Error)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the ACME server to check the attestation of %s: %w", ident, ctx.Err())
		case <-time.After(pollInterval):
		}
		if answered, err = cl.GetChallenge(ctx, chal.URI); err != nil {
			return nil, fmt.Errorf("polling %s: %w", ChallengeType, err)
		}
	}
	if _, err := cl.WaitAuthorization(ctx, authz.URI); err != nil {
		return nil, fmt.Errorf("the ACME server refused the attestation of %s: %w", ident, err)
	}
	if order, err = cl.WaitOrder(ctx, order.URI); err != nil {
		return nil, fmt.Errorf("ACME order for %s: %w", ident, err)
	}

	if cfg.Replace {
		if err := provisioning.Evict(cfg.TPM, keyHandle); err != nil {
			return nil, err
		}
	}
	if err := provisioning.Persist(cfg.TPM, key, keyHandle); err != nil {
		return nil, fmt.Errorf("persisting the new key: %w", err)
	}
	signer, err := tpmsigner.New(cfg.TPM, keyHandle, nil)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rnd, &x509.CertificateRequest{Subject: pkix.Name{CommonName: ident}}, signer)
	if err != nil {
		return nil, fmt.Errorf("signing the CSR in the TPM: %w", err)
	}
	chain, _, err := cl.CreateOrderCert(ctx, order.FinalizeURL, csr, true)
	if err != nil {
		return nil, fmt.Errorf("ACME finalize for %s: %w", ident, err)
	}
	if len(chain) == 0 {
		return nil, errors.New("the ACME server sent no certificate")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("the ACME server's certificate: %w", err)
	}
	if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(signer.Public()) {
		return nil, errors.New("the ACME server certified another key than the one in the TPM")
	}
	return &Result{Identifier: ident, KeyHandle: keyHandle, Chain: chain}, nil
}

// createKey makes the new key: an unrestricted signing primary of the owner hierarchy, fixedTPM,
// fixedParent, sensitiveDataOrigin (what the relying party checks in pubArea), with a NULL scheme so the
// services that use it choose their hash. A random unique field makes it a new key on every run (a
// primary is otherwise a function of the template and the hierarchy seed).
func createKey(tpm transport.TPM, alg provisioning.KeyAlg, rnd io.Reader) (*provisioning.Key, error) {
	unique := make([]byte, 32)
	if _, err := io.ReadFull(rnd, unique); err != nil {
		return nil, err
	}
	t := tpm2.TPMTPublic{
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true, SignEncrypt: true,
		},
	}
	switch alg {
	case provisioning.KeyP256:
		t.Type = tpm2.TPMAlgECC
		t.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			CurveID:   tpm2.TPMECCNistP256,
			KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		})
		t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: unique}, Y: tpm2.TPM2BECCParameter{Buffer: unique}})
	case provisioning.KeyRSA2048:
		t.Type = tpm2.TPMAlgRSA
		t.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
			KeyBits:   2048,
		})
		t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: append(unique, unique...)})
	default:
		return nil, fmt.Errorf("new key algorithm %q: want p256 or rsa2048", alg)
	}
	rsp, err := (tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(t),
	}).Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("creating the new key in the TPM: %w", err)
	}
	k, err := provisioning.LoadKey(tpm, rsp.ObjectHandle)
	if err != nil {
		_, _ = (tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}).Execute(tpm)
		return nil, err
	}
	return k, nil
}

// coseAlgorithm names the IAK's signature scheme as COSE does.
func coseAlgorithm(pub *tpm2.TPMTPublic) (int64, error) {
	switch pub.Type {
	case tpm2.TPMAlgRSA:
		p, err := pub.Parameters.RSADetail()
		if err == nil && p.Scheme.Scheme == tpm2.TPMAlgRSASSA {
			if d, err := p.Scheme.Details.RSASSA(); err == nil && d.HashAlg == tpm2.TPMAlgSHA256 {
				return coseRS256, nil
			}
		}
	case tpm2.TPMAlgECC:
		p, err := pub.Parameters.ECCDetail()
		if err == nil && p.Scheme.Scheme == tpm2.TPMAlgECDSA {
			if d, err := p.Scheme.Details.ECDSA(); err == nil {
				switch d.HashAlg {
				case tpm2.TPMAlgSHA256:
					return coseES256, nil
				case tpm2.TPMAlgSHA384:
					return coseES384, nil
				}
			}
		}
	}
	return 0, errors.New("the IAK's scheme has no COSE algorithm (want RSASSA-SHA256 or ECDSA-SHA256/384)")
}

// oidPermanentIdentifier is id-on-permanentIdentifier, RFC 4043 2.
var oidPermanentIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 3}

// PermanentIdentifier reads the identifierValue of the permanentIdentifier otherName in a certificate's
// SAN (RFC 4043 2; RFC 5280 4.2.1.6 for the otherName wrapping). The board side reads it here rather than
// through the CA package, which it does not link.
func PermanentIdentifier(cert *x509.Certificate) (string, error) {
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
			continue
		}
		var names []asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &names); err != nil || len(rest) != 0 {
			return "", errors.New("malformed subjectAltName")
		}
		for _, gn := range names {
			if gn.Class != asn1.ClassContextSpecific || gn.Tag != 0 || !gn.IsCompound {
				continue
			}
			var typeID asn1.ObjectIdentifier
			rest, err := asn1.Unmarshal(gn.Bytes, &typeID)
			if err != nil || !typeID.Equal(oidPermanentIdentifier) {
				continue
			}
			var value asn1.RawValue // [0] EXPLICIT around the PermanentIdentifier
			if rest, err = asn1.Unmarshal(rest, &value); err != nil || len(rest) != 0 || value.Class != asn1.ClassContextSpecific || value.Tag != 0 {
				return "", errors.New("malformed otherName")
			}
			var pid struct {
				Value    string                `asn1:"utf8,optional"`
				Assigner asn1.ObjectIdentifier `asn1:"optional"`
			}
			if rest, err := asn1.Unmarshal(value.Bytes, &pid); err != nil || len(rest) != 0 || pid.Value == "" {
				return "", errors.New("malformed permanentIdentifier")
			}
			return pid.Value, nil
		}
	}
	return "", errors.New("no permanentIdentifier in the subjectAltName")
}
