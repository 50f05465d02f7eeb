package tpmwire

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
)

// TPM algorithm and curve identifiers, TCG TPM 2.0 Library Part 2 (Structures), 6.3 TPM_ALG_ID and 6.4
// TPM_ECC_CURVE.
const (
	algRSA   = 0x0001
	algNull  = 0x0010
	algRSAES = 0x0015 // its scheme details are TPMS_EMPTY
	algECDAA = 0x001A // its scheme details carry a count after the hash
	algECC   = 0x0023
	eccP256  = 0x0003
	eccP384  = 0x0004
	eccP521  = 0x0005
)

// MaxPublicBytes bounds a marshalled TPMT_PUBLIC (RSA-4096 is ~600 bytes); provisioning.MaxPublicBytes is
// this value.
const MaxPublicBytes = 1024

// RSA key sizes PublicKey accepts: TPM 2.0 EKs and device keys are RSA-2048 to RSA-4096 (TCG EK
// Credential Profile templates L-1, H-1, H-6, H-7).
const (
	minRSABits = 2048
	maxRSABits = 4096
)

// PublicKey is the one conversion of a marshalled TPMT_PUBLIC (Part 2, 12.2.4) of type RSA or ECC into a
// Go public key. It reads exactly one structure (trailing bytes are an error) and checks the key itself:
//  1. the input is 1..MaxPublicBytes bytes;
//  2. the type is RSA or ECC;
//  3. RSA: keyBits is 2048..4096 and the modulus is exactly keyBits long (top bit set);
//  4. RSA: the exponent (0 meaning 2^16+1, Part 2, 12.2.3.5) is odd, at least 3 and fits an int32;
//  5. ECC: the curve is NIST P-256, P-384 or P-521;
//  6. ECC: neither coordinate is longer than the curve's field;
//  7. ECC: the point is on the curve (and not the point at infinity).
//
// It reads the parameters it skips (symmetric definition, scheme, KDF) by their wire shape only: whether
// they suit a given key is the caller's policy (the CA's signingKey, the EK checks). It is free of go-tpm
// so that the inventory and the reports can recompute an EK identity from stored bytes.
func PublicKey(b []byte) (crypto.PublicKey, error) {
	if len(b) == 0 || len(b) > MaxPublicBytes {
		return nil, fmt.Errorf("public area is %d bytes (want 1..%d)", len(b), MaxPublicBytes)
	}
	r := NewReader(b)
	typ := r.U16()
	r.U16() // nameAlg
	r.U32() // objectAttributes
	r.TPM2B()
	symmetric := func() { // TPMT_SYM_DEF_OBJECT, Part 2, 11.1.7
		if r.U16() != algNull {
			r.U16() // keyBits
			r.U16() // mode
		}
	}
	scheme := func() { // TPMT_RSA_SCHEME / TPMT_ECC_SCHEME, Part 2, 11.2.4 and 11.2.5
		switch r.U16() {
		case algNull, algRSAES:
		case algECDAA:
			r.U16() // hashAlg
			r.U16() // count
		default:
			r.U16() // hashAlg
		}
	}
	var pub crypto.PublicKey
	switch typ {
	case algRSA:
		symmetric()
		scheme()
		bits := int(r.U16())
		exp := r.U32()
		n := r.TPM2B()
		if r.Err() != nil {
			break
		}
		if bits < minRSABits || bits > maxRSABits || len(n)*8 != bits || n[0]&0x80 == 0 {
			return nil, fmt.Errorf("RSA modulus of %d bytes is not the declared %d bits (2048..4096)", len(n), bits)
		}
		if exp == 0 {
			exp = 65537
		}
		if exp < 3 || exp > 1<<31-1 || exp%2 == 0 {
			return nil, fmt.Errorf("RSA exponent %d is not usable", exp)
		}
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp)}
	case algECC:
		symmetric()
		scheme()
		curveID := r.U16()
		if r.U16() != algNull { // TPMT_KDF_SCHEME, Part 2, 11.2.3.3
			r.U16()
		}
		x, y := r.TPM2B(), r.TPM2B()
		if r.Err() != nil {
			break
		}
		var curve elliptic.Curve
		switch curveID {
		case eccP256:
			curve = elliptic.P256()
		case eccP384:
			curve = elliptic.P384()
		case eccP521:
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("ECC curve %#04x is not NIST P-256, P-384 or P-521", curveID)
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(x) > size || len(y) > size {
			return nil, errors.New("ECC point coordinates are longer than the curve's field")
		}
		point := make([]byte, 1+2*size)
		point[0] = 4
		copy(point[1+size-len(x):1+size], x)
		copy(point[1+2*size-len(y):], y)
		k, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, errors.New("ECC point is not on the curve")
		}
		pub = k
	default:
		return nil, fmt.Errorf("key type %#04x is not RSA or ECC", typ)
	}
	if r.Err() != nil {
		return nil, fmt.Errorf("public area: %w", r.Err())
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("public area: %d bytes after the structure", r.Len())
	}
	return pub, nil
}

// KeyIdentity is the EK identity tpmline shows and exchanges everywhere (inventory, reports, EK lists,
// the CA): SHA-256 of the key's DER SubjectPublicKeyInfo as x509.MarshalPKIXPublicKey encodes it (RSA with
// NULL parameters, ECC as a named curve with an uncompressed point). Anyone can recompute it from the EK
// certificate or a PEM public key: `openssl pkey -pubin -outform DER | sha256sum`.
func KeyIdentity(pub crypto.PublicKey) ([32]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(spki), nil
}

// EKIdentity is KeyIdentity, as 64 lowercase hex digits, of the key in a marshalled TPMT_PUBLIC.
func EKIdentity(tpmtPublic []byte) (string, error) {
	k, err := PublicKey(tpmtPublic)
	if err != nil {
		return "", err
	}
	sum, err := KeyIdentity(k)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(sum[:]), nil
}
