package ekcert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// defaultRSAExponent is what a TPMS_RSA_PARMS exponent of zero means (TPM 2.0 Library Part 2, 12.2.3.5).
const defaultRSAExponent = 65537

// maxRSABytes bounds the modulus MatchPublic will look at (RSA-16384; TPMs stop at 4096).
const maxRSABytes = 2048

// MatchPublic checks that pub, the EK public area a TPM reported, holds the same key as cert: for RSA the
// key size, modulus and exponent (a TPM exponent of 0 means 65537); for ECC the curve and the point X, Y.
// Any difference, or an unusable public area, is ErrMismatch.
func MatchPublic(cert *x509.Certificate, pub *tpm2.TPMTPublic) error {
	if cert == nil || pub == nil {
		return fmt.Errorf("%w: certificate or EK public area missing", ErrMismatch)
	}
	switch key := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		return matchRSA(key, pub)
	case *ecdsa.PublicKey:
		return matchECC(key, pub)
	default:
		return fmt.Errorf("%w: certificate key is %T, neither RSA nor ECC", ErrMismatch, cert.PublicKey)
	}
}

func matchRSA(key *rsa.PublicKey, pub *tpm2.TPMTPublic) error {
	if pub.Type != tpm2.TPMAlgRSA {
		return fmt.Errorf("%w: certificate key is RSA, EK public area is algorithm %#04x", ErrMismatch, uint16(pub.Type))
	}
	parms, err := pub.Parameters.RSADetail()
	if err != nil {
		return fmt.Errorf("%w: EK public area RSA parameters: %v", ErrMismatch, err)
	}
	uniq, err := pub.Unique.RSA()
	if err != nil {
		return fmt.Errorf("%w: EK public area RSA modulus: %v", ErrMismatch, err)
	}
	size := key.Size()
	if size > maxRSABytes {
		return fmt.Errorf("%w: certificate RSA key of %d bits is too large", ErrMismatch, size*8)
	}
	if int(parms.KeyBits) != size*8 || len(uniq.Buffer) != size {
		return fmt.Errorf("%w: EK is RSA-%d with a %d-byte modulus, certificate key is RSA-%d", ErrMismatch, parms.KeyBits, len(uniq.Buffer), size*8)
	}
	if !bytes.Equal(uniq.Buffer, key.N.FillBytes(make([]byte, size))) {
		return fmt.Errorf("%w: RSA modulus differs", ErrMismatch)
	}
	e := int64(parms.Exponent)
	if e == 0 {
		e = defaultRSAExponent
	}
	if e != int64(key.E) {
		return fmt.Errorf("%w: RSA exponent %d, certificate has %d", ErrMismatch, e, key.E)
	}
	return nil
}

func matchECC(key *ecdsa.PublicKey, pub *tpm2.TPMTPublic) error {
	if pub.Type != tpm2.TPMAlgECC {
		return fmt.Errorf("%w: certificate key is ECC, EK public area is algorithm %#04x", ErrMismatch, uint16(pub.Type))
	}
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return fmt.Errorf("%w: EK public area ECC parameters: %v", ErrMismatch, err)
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return fmt.Errorf("%w: EK public area ECC point: %v", ErrMismatch, err)
	}
	var curve elliptic.Curve
	switch parms.CurveID { // TPM 2.0 Library Part 2, 6.4 TPM_ECC_CURVE
	case tpm2.TPMECCNistP256:
		curve = elliptic.P256()
	case tpm2.TPMECCNistP384:
		curve = elliptic.P384()
	case tpm2.TPMECCNistP521:
		curve = elliptic.P521()
	default:
		return fmt.Errorf("%w: EK curve %#04x is not a NIST curve", ErrMismatch, uint16(parms.CurveID))
	}
	if key.Curve != curve {
		return fmt.Errorf("%w: EK curve is %s, certificate key is on %s", ErrMismatch, curve.Params().Name, key.Curve.Params().Name)
	}
	want, err := key.Bytes() // SEC 1 2.3.3 uncompressed: 04 || X || Y
	if err != nil {
		return fmt.Errorf("%w: certificate ECC key: %v", ErrMismatch, err)
	}
	n := (curve.Params().BitSize + 7) / 8
	x, y := point.X.Buffer, point.Y.Buffer
	if len(x) > n || len(y) > n {
		return fmt.Errorf("%w: EK point coordinates of %d and %d bytes are too long for %s", ErrMismatch, len(x), len(y), curve.Params().Name)
	}
	got := make([]byte, 1+2*n)
	got[0] = 4
	copy(got[1+n-len(x):1+n], x)
	copy(got[1+2*n-len(y):], y)
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%w: ECC point differs", ErrMismatch)
	}
	return nil
}
