package reports

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
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
	r := tpmReader{b: b}
	typ := r.u16()
	r.u16() // nameAlg
	r.u32() // objectAttributes
	r.tpm2b()
	symmetric := func() {
		if r.u16() != tpmAlgNull {
			r.u16() // keyBits
			r.u16() // mode
		}
	}
	scheme := func() {
		switch r.u16() {
		case tpmAlgNull, tpmAlgRSAES:
		case tpmAlgECDAA:
			r.u16()
			r.u16()
		default:
			r.u16()
		}
	}
	var pub crypto.PublicKey
	switch typ {
	case tpmAlgRSA:
		symmetric()
		scheme()
		bits := int(r.u16())
		exp := r.u32()
		n := r.tpm2b()
		if r.err != nil {
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
		curveID := r.u16()
		if r.u16() != tpmAlgNull { // kdf
			r.u16()
		}
		x, y := r.tpm2b(), r.tpm2b()
		if r.err != nil {
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
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the structure", len(r.b))
	}
	return pub, nil
}

type tpmReader struct {
	b   []byte
	err error
}

func (r *tpmReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = errors.New("structure is truncated")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *tpmReader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *tpmReader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *tpmReader) tpm2b() []byte { return r.take(int(r.u16())) }
