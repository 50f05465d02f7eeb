package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/internal/tpmwire"
	"github.com/tpmline/tpmline/provisioning"
)

// TPM structures arrive from hostile clients. Every parse here is provisioning's strict decoding
// (DecodePublic, DecodeAttest, DecodeSignature: bounded, canonical, panic-safe); this file maps its errors to
// protocol codes and adds the CA's checks of content.

// decodeError maps a strict decoder's error to a protocol error about field.
func decodeError(field, structure string, err error, code provisioning.ErrorCode) error {
	if errors.Is(err, provisioning.ErrStructSize) {
		return provisioning.Errorf(provisioning.CodeTooLarge, "%s is over its bound: %v", field, err)
	}
	return provisioning.Errorf(code, "%s is not a %s: %v", field, structure, err)
}

// parsePublic strictly decodes a marshalled TPMT_PUBLIC (TPM 2.0 Part 2, 12.2.4) submitted in field.
func parsePublic(field string, b []byte) (*tpm2.TPMTPublic, error) {
	if len(b) == 0 {
		return nil, provisioning.Errorf(provisioning.CodeBadRequest, "%s is missing", field)
	}
	pub, err := provisioning.DecodePublic(b)
	if err != nil {
		return nil, decodeError(field, "TPMT_PUBLIC", err, provisioning.CodeBadRequest)
	}
	return pub, nil
}

// objectName is the TPM Name of a public area: nameAlg || H_nameAlg(TPMT_PUBLIC) (TPM 2.0 Part 1, 16). raw
// must be pub's canonical marshalling (parsePublic guarantees it), so it is hashed as it is rather than
// marshalled again.
func objectName(pub *tpm2.TPMTPublic, raw []byte) ([]byte, error) {
	var h crypto.Hash
	switch pub.NameAlg {
	case tpm2.TPMAlgSHA256:
		h = crypto.SHA256
	case tpm2.TPMAlgSHA384:
		h = crypto.SHA384
	default:
		return nil, fmt.Errorf("name algorithm %#04x is not SHA-256 or SHA-384", uint16(pub.NameAlg))
	}
	d := h.New()
	d.Write(raw)
	return d.Sum(binary.BigEndian.AppendUint16(nil, uint16(pub.NameAlg))), nil
}

// parseStored decodes a public area the CA stored after round 1 checked it strictly: its own record, so
// the canonical-bytes check costs nothing but keeps one decoder for every public area.
func parseStored(b []byte) (*tpm2.TPMTPublic, error) { return provisioning.DecodePublic(b) }

// approvedHash: the name and signing hashes the CA accepts. SHA-1 is refused (TCG Algorithm Registry lists it as
// deprecated for new keys); SHA-512 is outside the TCG IDevID templates.
func approvedHash(h tpm2.TPMIAlgHash) bool {
	return h == tpm2.TPMAlgSHA256 || h == tpm2.TPMAlgSHA384
}

// keyAlgorithm is the outcome of checking a signing key's algorithm: the Go public key and its signing scheme.
type keyAlgorithm struct {
	Public crypto.PublicKey
	// Scheme is TPM_ALG_RSASSA, TPM_ALG_RSAPSS, TPM_ALG_ECDSA, or TPM_ALG_NULL for an unrestricted key that
	// leaves the scheme to each TPM2_Sign.
	Scheme tpm2.TPMAlgID
	Hash   tpm2.TPMIAlgHash
}

// signingKey checks the algorithm of a signing key against the TCG "TPM 2.0 Keys for Device Identity and
// Attestation" templates (section 7.3: RSA-2048 with SHA-256, ECC NIST P-256 with SHA-256, ECC NIST P-384
// with SHA-384; SHA-384 is also accepted with RSA and P-256) and returns its Go public key. requireScheme is
// set for restricted keys, which must name a scheme (TPM 2.0 Part 2, 12.2.3.5).
func signingKey(pub *tpm2.TPMTPublic, raw []byte, requireScheme bool) (*keyAlgorithm, error) {
	if !approvedHash(pub.NameAlg) {
		return nil, fmt.Errorf("name algorithm %#04x is not SHA-256 or SHA-384", uint16(pub.NameAlg))
	}
	switch pub.Type {
	case tpm2.TPMAlgRSA:
		parms, err := pub.Parameters.RSADetail()
		if err != nil {
			return nil, errors.New("RSA key without RSA parameters")
		}
		if parms.Symmetric.Algorithm != tpm2.TPMAlgNull {
			return nil, errors.New("signing key with a symmetric algorithm")
		}
		if parms.KeyBits != 2048 {
			return nil, fmt.Errorf("RSA key of %d bits, want 2048", parms.KeyBits)
		}
		// 0 means the default exponent 2^16+1 (TPM 2.0 Part 2, 12.2.3.5); other exponents are legal for
		// the TPM but never produced by the TCG templates, and refusing them avoids weak-exponent keys.
		if parms.Exponent != 0 && parms.Exponent != 65537 {
			return nil, fmt.Errorf("RSA exponent %d, want 65537", parms.Exponent)
		}
		uniq, err := pub.Unique.RSA()
		if err != nil {
			return nil, errors.New("RSA key without a modulus")
		}
		if len(uniq.Buffer) != 256 || uniq.Buffer[0]&0x80 == 0 {
			return nil, errors.New("RSA modulus is not 2048 bits")
		}
		key, err := publicKey(raw)
		if err != nil {
			return nil, err
		}
		ka := &keyAlgorithm{Public: key}
		switch parms.Scheme.Scheme {
		case tpm2.TPMAlgRSASSA:
			d, err := parms.Scheme.Details.RSASSA()
			if err != nil {
				return nil, errors.New("RSASSA scheme without details")
			}
			ka.Scheme, ka.Hash = tpm2.TPMAlgRSASSA, d.HashAlg
		case tpm2.TPMAlgRSAPSS:
			d, err := parms.Scheme.Details.RSAPSS()
			if err != nil {
				return nil, errors.New("RSAPSS scheme without details")
			}
			ka.Scheme, ka.Hash = tpm2.TPMAlgRSAPSS, d.HashAlg
		case tpm2.TPMAlgNull:
			ka.Scheme = tpm2.TPMAlgNull
		default:
			return nil, fmt.Errorf("RSA scheme %#04x is not RSASSA or RSAPSS", uint16(parms.Scheme.Scheme))
		}
		return ka.checkScheme(requireScheme)
	case tpm2.TPMAlgECC:
		parms, err := pub.Parameters.ECCDetail()
		if err != nil {
			return nil, errors.New("ECC key without ECC parameters")
		}
		if parms.Symmetric.Algorithm != tpm2.TPMAlgNull {
			return nil, errors.New("signing key with a symmetric algorithm")
		}
		if parms.KDF.Scheme != tpm2.TPMAlgNull {
			return nil, errors.New("signing key with a KDF")
		}
		if parms.CurveID != tpm2.TPMECCNistP256 && parms.CurveID != tpm2.TPMECCNistP384 {
			return nil, fmt.Errorf("ECC curve %#04x is not NIST P-256 or P-384", uint16(parms.CurveID))
		}
		// A device key's coordinates are full length (the TPM pads them); publicKey checks the point.
		pt, err := pub.Unique.ECC()
		if err != nil {
			return nil, errors.New("ECC key without a point")
		}
		size := 32 // P-256
		if parms.CurveID == tpm2.TPMECCNistP384 {
			size = 48
		}
		if len(pt.X.Buffer) != size || len(pt.Y.Buffer) != size {
			return nil, errors.New("ECC point coordinates have the wrong length")
		}
		key, err := publicKey(raw)
		if err != nil {
			return nil, err
		}
		ka := &keyAlgorithm{Public: key}
		switch parms.Scheme.Scheme {
		case tpm2.TPMAlgECDSA:
			d, err := parms.Scheme.Details.ECDSA()
			if err != nil {
				return nil, errors.New("ECDSA scheme without details")
			}
			ka.Scheme, ka.Hash = tpm2.TPMAlgECDSA, d.HashAlg
		case tpm2.TPMAlgNull:
			ka.Scheme = tpm2.TPMAlgNull
		default:
			return nil, fmt.Errorf("ECC scheme %#04x is not ECDSA", uint16(parms.Scheme.Scheme))
		}
		return ka.checkScheme(requireScheme)
	default:
		return nil, fmt.Errorf("key type %#04x is not RSA or ECC", uint16(pub.Type))
	}
}

// checkScheme: a restricted key must name a scheme; a named scheme must use an approved hash.
func (ka *keyAlgorithm) checkScheme(requireScheme bool) (*keyAlgorithm, error) {
	if ka.Scheme == tpm2.TPMAlgNull {
		if requireScheme {
			return nil, errors.New("restricted signing key without a signing scheme")
		}
		return ka, nil
	}
	if !approvedHash(ka.Hash) {
		return nil, fmt.Errorf("signing hash %#04x is not SHA-256 or SHA-384", uint16(ka.Hash))
	}
	return ka, nil
}

// checkIAK checks an Initial Attestation Key public area (TCG "TPM 2.0 Keys for Device Identity and
// Attestation" 7.3.4.2, the IAK templates): restricted, sign, not decrypt, fixedTPM, fixedParent,
// sensitiveDataOrigin; an approved algorithm with an explicit signing scheme; the EK's name algorithm (the
// credential's KDF and HMAC run with the EK's nameAlg over the IAK's Name: TPM 2.0 Part 1, 24.4).
func checkIAK(iak *tpm2.TPMTPublic, iakRaw []byte, ek *tpm2.TPMTPublic) (*keyAlgorithm, error) {
	a := iak.ObjectAttributes
	for _, c := range []struct {
		ok   bool
		what string
	}{
		{a.Restricted, "not restricted"},
		{a.SignEncrypt, "not a signing key"},
		{!a.Decrypt, "a decryption key"},
		{a.FixedTPM, "not fixedTPM"},
		{a.FixedParent, "not fixedParent"},
		{a.SensitiveDataOrigin, "not sensitiveDataOrigin (not generated by the TPM)"},
	} {
		if !c.ok {
			return nil, provisioning.Errorf(provisioning.CodeIAKAttributes, "IAK is %s", c.what)
		}
	}
	ka, err := signingKey(iak, iakRaw, true)
	if err != nil {
		return nil, provisioning.Errorf(provisioning.CodeIAKAlgorithm, "IAK: %v", err)
	}
	if iak.NameAlg != ek.NameAlg {
		return nil, provisioning.Errorf(provisioning.CodeIAKAlgorithm, "IAK name algorithm differs from the EK's")
	}
	return ka, nil
}

// checkIDevID checks an IDevID public area (TCG "TPM 2.0 Keys for Device Identity and Attestation" 7.3.4.1):
// fixedTPM, fixedParent, sensitiveDataOrigin, sign, not restricted (it signs external data such as TLS
// handshakes), not decrypt, and an approved algorithm (its scheme may be NULL).
func checkIDevID(pub *tpm2.TPMTPublic, raw []byte) (*keyAlgorithm, error) {
	a := pub.ObjectAttributes
	for _, c := range []struct {
		ok   bool
		what string
	}{
		{a.FixedTPM, "not fixedTPM"},
		{a.FixedParent, "not fixedParent"},
		{a.SensitiveDataOrigin, "not sensitiveDataOrigin (not generated by the TPM)"},
		{a.SignEncrypt, "not a signing key"},
		{!a.Restricted, "restricted"},
		{!a.Decrypt, "a decryption key"},
	} {
		if !c.ok {
			return nil, provisioning.Errorf(provisioning.CodeIDevIDAttributes, "IDevID is %s", c.what)
		}
	}
	ka, err := signingKey(pub, raw, false)
	if err != nil {
		return nil, provisioning.Errorf(provisioning.CodeIDevIDAttributes, "IDevID algorithm: %v", err)
	}
	return ka, nil
}

// checkEKPublic checks the submitted EK public area can receive a credential: a restricted decryption key
// that is not a signing key, with a symmetric algorithm for the credential's inner wrapper (TCG EK Credential
// Profile 2.2.1, TPM 2.0 Part 1, 24.4).
func checkEKPublic(ek *tpm2.TPMTPublic) error {
	a := ek.ObjectAttributes
	if !a.Restricted || !a.Decrypt || a.SignEncrypt || !a.FixedTPM || !a.FixedParent {
		return provisioning.Errorf(provisioning.CodeEKMismatch, "EK public is not a fixedTPM restricted decryption key")
	}
	if !approvedHash(ek.NameAlg) {
		return provisioning.Errorf(provisioning.CodeEKMismatch, "EK name algorithm is not SHA-256 or SHA-384")
	}
	return nil
}

// certifyEvidence is what round 2 proves once parsed.
type certifyEvidence struct {
	Attest *tpm2.TPMSAttest
	Name   []byte // the attested object's Name
}

// parseCertify strictly decodes TPM2_Certify's TPMS_ATTEST (TPM 2.0 Part 2, 10.12.12) and checks the parts that
// need no key: the TPM_GENERATED magic (Part 2, 6.2: 0xff544347; go-tpm v0.9.8 does not check it) and the
// type TPM_ST_ATTEST_CERTIFY (Part 2, 6.9: 0x8017).
func parseCertify(b []byte) (*certifyEvidence, error) { return parseCertifyField("certify_info", b) }

// parseCertifyField is parseCertify for the structure carried in field.
func parseCertifyField(field string, b []byte) (*certifyEvidence, error) {
	if len(b) == 0 {
		return nil, provisioning.Errorf(provisioning.CodeBadRequest, "%s is missing", field)
	}
	at, err := provisioning.DecodeAttest(b)
	if err != nil {
		return nil, decodeError(field, "TPMS_ATTEST", err, provisioning.CodeAttestInvalid)
	}
	if at.Magic != tpm2.TPMGeneratedValue {
		return nil, provisioning.Errorf(provisioning.CodeAttestInvalid, "%s lacks the TPM_GENERATED magic", field)
	}
	if at.Type != tpm2.TPMSTAttestCertify {
		return nil, provisioning.Errorf(provisioning.CodeAttestInvalid, "%s is attestation type %#04x, not TPM_ST_ATTEST_CERTIFY", field, uint16(at.Type))
	}
	ci, err := at.Attested.Certify()
	if err != nil {
		return nil, provisioning.Errorf(provisioning.CodeAttestInvalid, "%s carries no certify information", field)
	}
	return &certifyEvidence{Attest: at, Name: ci.Name.Buffer}, nil
}

// parseSignature strictly decodes a TPMT_SIGNATURE (TPM 2.0 Part 2, 11.3.4).
func parseSignature(b []byte) (*tpm2.TPMTSignature, error) {
	return parseSignatureField("certify_signature", b, provisioning.CodeAttestSignature)
}

// parseSignatureField is parseSignature for the structure carried in field; code is the error code of a
// structure that does not decode.
func parseSignatureField(field string, b []byte, code provisioning.ErrorCode) (*tpm2.TPMTSignature, error) {
	if len(b) == 0 {
		return nil, provisioning.Errorf(provisioning.CodeBadRequest, "%s is missing", field)
	}
	sig, err := provisioning.DecodeSignature(b)
	if err != nil {
		return nil, decodeError(field, "TPMT_SIGNATURE", err, code)
	}
	return sig, nil
}

// verifySignature checks sig over msg under a restricted signing key: the signature's scheme and hash must be
// the key's own (a restricted key signs only with its scheme: TPM 2.0 Part 1, 25.2.4).
func verifySignature(key *keyAlgorithm, msg []byte, sig *tpm2.TPMTSignature) error {
	return verifySignatureBy("IAK", provisioning.CodeAttestSignature, key, msg, sig)
}

// verifySignatureBy is verifySignature for the key named who, refusing with code.
func verifySignatureBy(who string, code provisioning.ErrorCode, key *keyAlgorithm, msg []byte, sig *tpm2.TPMTSignature) error {
	fail := func(format string, args ...any) error {
		return provisioning.Errorf(code, format, args...)
	}
	if tpm2.TPMAlgID(sig.SigAlg) != key.Scheme {
		return fail("signature scheme %#04x is not the %s's scheme", uint16(sig.SigAlg), who)
	}
	hash, err := key.Hash.Hash()
	if err != nil || !approvedHash(key.Hash) {
		return fail("%s hash algorithm unsupported", who)
	}
	h := hash.New()
	h.Write(msg)
	digest := h.Sum(nil)
	switch key.Scheme {
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		var s *tpm2.TPMSSignatureRSA
		if key.Scheme == tpm2.TPMAlgRSASSA {
			s, err = sig.Signature.RSASSA()
		} else {
			s, err = sig.Signature.RSAPSS()
		}
		if err != nil {
			return fail("signature carries no RSA signature")
		}
		if s.Hash != key.Hash {
			return fail("signature hash is not the %s's scheme hash", who)
		}
		pub, ok := key.Public.(*rsa.PublicKey)
		if !ok {
			return fail("%s is not an RSA key", who)
		}
		if key.Scheme == tpm2.TPMAlgRSASSA {
			err = rsa.VerifyPKCS1v15(pub, hash, digest, s.Sig.Buffer)
		} else {
			// The TPM uses the largest salt that fits (TPM 2.0 Part 1, B.7); Auto accepts it.
			err = rsa.VerifyPSS(pub, hash, digest, s.Sig.Buffer, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		}
		if err != nil {
			return fail("signature does not verify under the %s", who)
		}
		return nil
	case tpm2.TPMAlgECDSA:
		s, err := sig.Signature.ECDSA()
		if err != nil {
			return fail("signature carries no ECDSA signature")
		}
		if s.Hash != key.Hash {
			return fail("signature hash is not the %s's scheme hash", who)
		}
		pub, ok := key.Public.(*ecdsa.PublicKey)
		if !ok {
			return fail("%s is not an ECC key", who)
		}
		size := (pub.Curve.Params().BitSize + 7) / 8
		if len(s.SignatureR.Buffer) > size || len(s.SignatureS.Buffer) > size {
			return fail("ECDSA signature values are too long")
		}
		r := new(big.Int).SetBytes(s.SignatureR.Buffer)
		ss := new(big.Int).SetBytes(s.SignatureS.Buffer)
		if !ecdsa.Verify(pub, digest, r, ss) {
			return fail("signature does not verify under the %s", who)
		}
		return nil
	default:
		return fail("%s scheme unsupported", who)
	}
}

// publicKey is the one conversion of a marshalled public area to a Go key, tpmwire.PublicKey (modulus,
// exponent, curve and on-curve checks).
func publicKey(raw []byte) (crypto.PublicKey, error) { return tpmwire.PublicKey(raw) }
