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
// It also reports what Normalise removed. Every error wraps ErrInvalid.
func PublicKey(raw []byte) (crypto.PublicKey, []Normalisation, error) {
	der, applied, err := Normalise(raw)
	if err != nil {
		return nil, applied, err
	}
	key, err := spkiKey(der)
	return key, applied, err
}

// spkiKey reads the subject public key of one DER certificate.
func spkiKey(der []byte) (crypto.PublicKey, error) {
	// Element by element into RawValues: a struct with tags costs encoding/asn1 reflection per field, and
	// EK lists read a hundred thousand of these.
	var cert, tbs, field asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &cert); err != nil || len(rest) != 0 || !isSequence(cert) {
		return nil, fmt.Errorf("%w: not an X.509 certificate: %v", ErrInvalid, err)
	}
	if _, err := asn1.Unmarshal(cert.Bytes, &tbs); err != nil || !isSequence(tbs) {
		return nil, fmt.Errorf("%w: no TBSCertificate: %v", ErrInvalid, err)
	}
	// RFC 5280 4.1: version [0] EXPLICIT (optional), serialNumber, signature, issuer, validity, subject,
	// subjectPublicKeyInfo.
	rest := tbs.Bytes
	for i := 0; i < 7; i++ {
		var err error
		if rest, err = asn1.Unmarshal(rest, &field); err != nil {
			return nil, fmt.Errorf("%w: TBSCertificate is truncated: %v", ErrInvalid, err)
		}
		if i == 0 && !(field.Class == asn1.ClassContextSpecific && field.Tag == 0) {
			i++ // no version: this was the serial number
		}
	}
	if !isSequence(field) {
		return nil, fmt.Errorf("%w: subjectPublicKeyInfo is not a SEQUENCE", ErrInvalid)
	}
	key, err := x509.ParsePKIXPublicKey(field.FullBytes)
	if err != nil {
		if alg, aerr := spkiAlgorithm(field.FullBytes); aerr == nil && alg.Equal(oidRSAESOAEP) {
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

func isSequence(v asn1.RawValue) bool {
	return v.Class == asn1.ClassUniversal && v.Tag == asn1.TagSequence && v.IsCompound
}
