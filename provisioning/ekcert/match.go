package ekcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/internal/tpmwire"
)

// MatchPublic checks that pub, the EK public area a TPM reported, holds the same key as cert: it is
// MatchPublicArea of pub's marshalling. Callers holding the marshalled bytes (the CA) call MatchPublicArea
// and save go-tpm's reflection.
func MatchPublic(cert *x509.Certificate, pub *tpm2.TPMTPublic) error {
	if cert == nil || pub == nil {
		return fmt.Errorf("%w: certificate or EK public area missing", ErrMismatch)
	}
	raw, err := marshalPublic(pub)
	if err != nil {
		return fmt.Errorf("%w: EK public area: %v", ErrMismatch, err)
	}
	return MatchPublicArea(cert, raw)
}

// MatchPublicArea checks that raw, a marshalled TPMT_PUBLIC of an EK, holds the same key as cert. The
// public area becomes a Go key by the one conversion, tpmwire.PublicKey (modulus length and exponent, a
// NIST curve, the point on it; a TPM exponent of 0 means 65537); then for RSA the key size, modulus and
// exponent must equal the certificate's, for ECC the curve and the point. Any difference, or an unusable
// public area, is ErrMismatch.
func MatchPublicArea(cert *x509.Certificate, raw []byte) error {
	if cert == nil {
		return fmt.Errorf("%w: certificate missing", ErrMismatch)
	}
	ek, err := tpmwire.PublicKey(raw)
	if err != nil {
		return fmt.Errorf("%w: EK public area: %v", ErrMismatch, err)
	}
	switch key := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		got, ok := ek.(*rsa.PublicKey)
		switch {
		case !ok:
			return fmt.Errorf("%w: certificate key is RSA, EK public area is %s", ErrMismatch, keyKind(ek))
		case got.Size() != key.Size():
			return fmt.Errorf("%w: EK is RSA-%d, certificate key is RSA-%d", ErrMismatch, got.Size()*8, key.Size()*8)
		case got.N.Cmp(key.N) != 0:
			return fmt.Errorf("%w: RSA modulus differs", ErrMismatch)
		case got.E != key.E:
			return fmt.Errorf("%w: RSA exponent %d, certificate has %d", ErrMismatch, got.E, key.E)
		}
		return nil
	case *ecdsa.PublicKey:
		got, ok := ek.(*ecdsa.PublicKey)
		switch {
		case !ok:
			return fmt.Errorf("%w: certificate key is ECC, EK public area is %s", ErrMismatch, keyKind(ek))
		case got.Curve != key.Curve:
			return fmt.Errorf("%w: EK curve is %s, certificate key is on %s", ErrMismatch, got.Curve.Params().Name, key.Curve.Params().Name)
		case !got.Equal(key):
			return fmt.Errorf("%w: ECC point differs", ErrMismatch)
		}
		return nil
	default:
		return fmt.Errorf("%w: certificate key is %T, neither RSA nor ECC", ErrMismatch, cert.PublicKey)
	}
}

func keyKind(k crypto.PublicKey) string {
	if _, ok := k.(*rsa.PublicKey); ok {
		return "RSA"
	}
	return "ECC"
}

// marshalPublic marshals a public area that may have been decoded from a hostile TPM's bytes: go-tpm
// panics on a union that does not fit its type.
func marshalPublic(pub *tpm2.TPMTPublic) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("does not marshal: %v", r)
		}
	}()
	return tpm2.Marshal(*pub), nil
}
