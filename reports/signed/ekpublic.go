package signed

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"

	"github.com/tpmline/tpmline/internal/tpmwire"
)

// TPM algorithm and curve identifiers, TCG TPM 2.0 Library Part 2 (Structures), 6.3 TPM_ALG_ID and 6.4
// TPM_ECC_CURVE.
const (
	tpmAlgRSA    = 0x0001
	tpmAlgNull   = 0x0010
	tpmAlgRSAES  = 0x0015 // its scheme details are TPMS_EMPTY
	tpmAlgECDAA  = 0x001A // its scheme details carry a count after the hash
	tpmAlgECC    = 0x0023
	tpmECCP256   = 0x0003
	tpmECCP384   = 0x0004
	tpmECCP521   = 0x0005
	maxEKPublic  = 1024 // as provisioning.MaxPublicBytes: a marshalled TPMT_PUBLIC (RSA-4096 is ~600 bytes)
	maxEKCertDER = 4096 // as provisioning.MaxCertBytes
)

// EKPublicSHA256 is the EK identity the upstream CA keys EK lists by: SHA-256 over the DER
// SubjectPublicKeyInfo of the public key as x509.MarshalPKIXPublicKey encodes it (RSA with NULL
// parameters, ECC as a named curve with an uncompressed point).
func EKPublicSHA256(pub crypto.PublicKey) ([32]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(spki), nil
}

// parseTPMTPublic reads the key out of a marshalled TPMT_PUBLIC (Part 2, 12.2.4) of type RSA or ECC, the
// two EK types. It reads exactly one structure: trailing bytes are an error.
func parseTPMTPublic(b []byte) (crypto.PublicKey, error) {
	r := tpmwire.NewReader(b)
	typ := r.U16()
	r.U16() // nameAlg
	r.U32() // objectAttributes
	r.TPM2B()
	symmetric := func() {
		if r.U16() != tpmAlgNull {
			r.U16() // keyBits
			r.U16() // mode
		}
	}
	scheme := func() {
		switch r.U16() {
		case tpmAlgNull, tpmAlgRSAES:
		case tpmAlgECDAA:
			r.U16()
			r.U16()
		default:
			r.U16()
		}
	}
	var pub crypto.PublicKey
	switch typ {
	case tpmAlgRSA:
		symmetric()
		scheme()
		bits := int(r.U16())
		exp := r.U32()
		n := r.TPM2B()
		if r.Err() != nil {
			break
		}
		if exp == 0 {
			exp = 65537 // Part 2, 12.2.3.5: zero means the default exponent
		}
		if len(n) == 0 || n[0] == 0 || len(n)*8 != bits {
			return nil, fmt.Errorf("RSA modulus is %d bytes for a %d-bit key", len(n), bits)
		}
		if exp > 1<<31-1 || exp%2 == 0 {
			return nil, fmt.Errorf("RSA exponent %d is not usable", exp)
		}
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp)}
	case tpmAlgECC:
		symmetric()
		scheme()
		curveID := r.U16()
		if r.U16() != tpmAlgNull { // kdf
			r.U16()
		}
		x, y := r.TPM2B(), r.TPM2B()
		if r.Err() != nil {
			break
		}
		var curve elliptic.Curve
		switch curveID {
		case tpmECCP256:
			curve = elliptic.P256()
		case tpmECCP384:
			curve = elliptic.P384()
		case tpmECCP521:
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("ECC curve %#04x is not supported", curveID)
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(x) > size || len(y) > size {
			return nil, errors.New("ECC point is larger than the curve")
		}
		point := make([]byte, 1+2*size)
		point[0] = 4
		copy(point[1+size-len(x):], x)
		copy(point[1+2*size-len(y):], y)
		k, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, fmt.Errorf("ECC point: %v", err)
		}
		pub = k
	default:
		return nil, fmt.Errorf("key type %#04x is neither RSA nor ECC", typ)
	}
	if r.Err() != nil {
		return nil, r.Err()
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%d bytes after the structure", r.Len())
	}
	return pub, nil
}
