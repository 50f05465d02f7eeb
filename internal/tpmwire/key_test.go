package tpmwire

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
)

// rsaPublic marshals a TPMT_PUBLIC of an RSA key with a NULL symmetric definition and scheme.
func rsaPublic(bits uint16, exp uint32, n []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, algRSA)
	b = binary.BigEndian.AppendUint16(b, 0x000B) // SHA-256
	b = binary.BigEndian.AppendUint32(b, 0x00030072)
	b = binary.BigEndian.AppendUint16(b, 0) // authPolicy
	b = binary.BigEndian.AppendUint16(b, algNull)
	b = binary.BigEndian.AppendUint16(b, algNull)
	b = binary.BigEndian.AppendUint16(b, bits)
	b = binary.BigEndian.AppendUint32(b, exp)
	b = binary.BigEndian.AppendUint16(b, uint16(len(n)))
	return append(b, n...)
}

// eccPublic marshals a TPMT_PUBLIC of an ECC key with a NULL symmetric definition, scheme and KDF.
func eccPublic(curve uint16, x, y []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, algECC)
	b = binary.BigEndian.AppendUint16(b, 0x000B)
	b = binary.BigEndian.AppendUint32(b, 0x00030072)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, algNull)
	b = binary.BigEndian.AppendUint16(b, algNull)
	b = binary.BigEndian.AppendUint16(b, curve)
	b = binary.BigEndian.AppendUint16(b, algNull)
	b = binary.BigEndian.AppendUint16(b, uint16(len(x)))
	b = append(b, x...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(y)))
	return append(b, y...)
}

func testKeys(t testing.TB) (*rsa.PrivateKey, *ecdsa.PrivateKey) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return rk, ek
}

// TestPublicKey has one case per check PublicKey's doc comment numbers.
func TestPublicKey(t *testing.T) {
	rk, ek := testKeys(t)
	n := rk.N.Bytes()
	pt, _ := ek.PublicKey.Bytes()
	x, y := pt[1:33], pt[33:]
	good := []struct {
		name string
		b    []byte
		want crypto.PublicKey
	}{
		{"RSA-2048 default exponent", rsaPublic(2048, 0, n), &rk.PublicKey},
		{"RSA-2048 explicit exponent", rsaPublic(2048, 65537, n), &rk.PublicKey},
		{"P-256", eccPublic(eccP256, x, y), &ek.PublicKey},
	}
	for _, tc := range good {
		k, err := PublicKey(tc.b)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !k.(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.want) {
			t.Fatalf("%s: key differs", tc.name)
		}
	}
	offCurve := append([]byte(nil), y...)
	offCurve[31] ^= 1
	for _, tc := range []struct {
		check, name string
		b           []byte
		want        string
	}{
		{"1", "empty", nil, "bytes"},
		{"1", "over the bound", make([]byte, MaxPublicBytes+1), "bytes"},
		{"2", "keyedHash type", append([]byte{0x00, 0x08}, make([]byte, 10)...), "not RSA or ECC"},
		{"3", "RSA-1024", rsaPublic(1024, 0, n[:128]), "modulus"},
		{"3", "modulus shorter than keyBits", rsaPublic(2048, 0, n[:255]), "modulus"},
		{"3", "modulus top bit clear", rsaPublic(2048, 0, append([]byte{0x01}, n[1:]...)), "modulus"},
		{"4", "even exponent", rsaPublic(2048, 65536, n), "exponent"},
		{"4", "exponent 1", rsaPublic(2048, 1, n), "exponent"},
		{"4", "exponent over int32", rsaPublic(2048, 1<<31+1, n), "exponent"},
		{"5", "BN-256 curve", eccPublic(0x0010, x, y), "curve"},
		{"6", "coordinate too long", eccPublic(eccP256, append([]byte{0}, x...), y), "longer"},
		{"7", "point off the curve", eccPublic(eccP256, x, offCurve), "not on the curve"},
		{"7", "point at infinity", eccPublic(eccP256, nil, nil), "not on the curve"},
		{"-", "truncated", rsaPublic(2048, 0, n)[:100], "truncated"},
		{"-", "trailing byte", append(eccPublic(eccP256, x, y), 0), "after the structure"},
	} {
		_, err := PublicKey(tc.b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("check %s, %s: error %v, want one mentioning %q", tc.check, tc.name, err, tc.want)
		}
	}
}

// TestEKIdentity: the identity is SHA-256 over the SubjectPublicKeyInfo DER, what openssl prints for
// `openssl pkey -pubin -outform DER | sha256sum` (station's openssl test runs the tool itself).
func TestEKIdentity(t *testing.T) {
	rk, ek := testKeys(t)
	pt, _ := ek.PublicKey.Bytes()
	for _, tc := range []struct {
		b   []byte
		key crypto.PublicKey
	}{{rsaPublic(2048, 0, rk.N.Bytes()), &rk.PublicKey}, {eccPublic(eccP256, pt[1:33], pt[33:]), &ek.PublicKey}} {
		spki, err := x509.MarshalPKIXPublicKey(tc.key)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(spki)
		got, err := EKIdentity(tc.b)
		if err != nil || got != hex.EncodeToString(sum[:]) {
			t.Fatalf("EKIdentity = %q, %v; want %x", got, err, sum)
		}
		if sum2 := sha256.Sum256(tc.b); got == hex.EncodeToString(sum2[:]) {
			t.Fatal("EKIdentity is the hash of the TPMT_PUBLIC bytes")
		}
	}
	if _, err := EKIdentity([]byte{1, 2, 3}); err == nil {
		t.Fatal("EKIdentity of garbage succeeded")
	}
}
