package ekcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
)

// PublicKey is the one reading of an EK certificate's public key for the places that must not depend on
// the rest of the certificate being acceptable to Go's x509 (EK certificates in the field carry negative
// serials, odd extensions and the like; the CA's Verifier owns the verdict on those): the station's check
// of its TPM's EK against the certificate, the reports' EK lists. It normalises raw with Normalise (the same
// quirks, and only those, that Parse and the CA tolerate), reads the TBSCertificate with encoding/asn1 up
// to its subjectPublicKeyInfo (RFC 5280 4.1) and parses that. Keys other than RSA and ECDSA are refused.
// Every error wraps ErrInvalid.
func PublicKey(raw []byte) (crypto.PublicKey, error) {
	der, _, err := Normalise(raw)
	if err != nil {
		return nil, err
	}
	var cert struct {
		TBS struct {
			Version   int `asn1:"optional,explicit,default:0,tag:0"`
			Serial    asn1.RawValue
			SigAlg    asn1.RawValue
			Issuer    asn1.RawValue
			Validity  asn1.RawValue
			Subject   asn1.RawValue
			PublicKey asn1.RawValue
			// Unique IDs and extensions follow; encoding/asn1 ignores elements past the last field.
		}
		SigAlg    asn1.RawValue
		Signature asn1.BitString
	}
	rest, err := asn1.Unmarshal(der, &cert)
	if err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: not an X.509 certificate: %v", ErrInvalid, err)
	}
	key, err := x509.ParsePKIXPublicKey(cert.TBS.PublicKey.FullBytes)
	if err != nil {
		if alg, aerr := spkiAlgorithm(cert.TBS.PublicKey.FullBytes); aerr == nil && alg.Equal(oidRSAESOAEP) {
			return nil, fmt.Errorf("%w: %w: its key is RSAES-OAEP (TCPA)", ErrInvalid, ErrTPM12)
		}
		return nil, fmt.Errorf("%w: subject public key: %v", ErrInvalid, err)
	}
	switch key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
		return key, nil
	}
	return nil, fmt.Errorf("%w: EK key is %T, neither RSA nor ECC", ErrInvalid, key)
}
