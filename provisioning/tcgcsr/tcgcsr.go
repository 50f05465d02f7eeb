// Package tcgcsr builds and strictly parses the TCG-CSR-IDEVID, the certificate signing request of TCG
// "TPM 2.0 Keys for Device Identity and Attestation" (v1.00 r12, section 13.1, "TCG-CSR-IDEVID"): the
// board's product model and serial, its EK certificate, the IAK and IDevID public areas, TPM2_Certify of the
// IDevID by the IAK, all signed by the IDevID. docs/protocol.md describes how the CA accepts it.
//
// Layout (every integer a 4-byte big-endian UINT32):
//
//	TCG_CSR_IDEVID  { structVer = 0x00000100, contentSize, sigSz, TCG_CSR_IDEVID_CONTENT, signature[sigSz] }
//	TCG_CSR_IDEVID_CONTENT { structVer = 0x00000100, hashAlgoId, hashSz, hash[hashSz],
//	    prodModelSz, prodSerialSz, prodCaDataSz, bootEvntLogSz, ekCertSz, attestPubSz, atCreateTktSz,
//	    atCertifyInfoSz, atCertifyInfoSignatureSz, signingPubSz, sgnCertifyInfoSz, sgnCertifyInfoSignatureSz,
//	    padSz, then the fields in that order, then pad[padSz] }
//
// hash is hashAlgoId's digest of everything that follows it in the content (checked against the ST
// Microelectronics vector in testdata); signature is a TPMT_SIGNATURE by the IDevID over the content.
package tcgcsr

import (
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/provisioning"
)

// StructVer is the only structure version defined (both the envelope and the content).
const StructVer = 0x00000100

// Bounds. A CSR carries one EK certificate, four small TPM structures, optionally a boot event log.
const (
	MaxModelLen    = provisioning.MaxProductLen
	MaxSerialLen   = provisioning.MaxSerialLen
	MaxCADataBytes = 4096
	MaxBootLog     = 64 << 10
	MaxBytes       = 96 << 10 // a whole TCG_CSR_IDEVID
	maxPad         = 15       // the pad makes the content a multiple of 16 bytes
)

// ErrMalformed: the bytes are not a TCG-CSR-IDEVID this parser accepts. Every Parse error matches it.
var ErrMalformed = errors.New("malformed TCG-CSR-IDEVID")

// Content is TCG_CSR_IDEVID_CONTENT. Byte fields are the marshalled TPM structures (TPMT_PUBLIC,
// TPMS_ATTEST, TPMT_SIGNATURE) or DER, as carried.
type Content struct {
	HashAlg      tpm2.TPMIAlgHash // hashAlgoId: SHA-256, SHA-384 or SHA-512
	ProdModel    string
	ProdSerial   string
	ProdCAData   []byte
	BootEventLog []byte
	EKCert       []byte // DER
	AttestPub    []byte // the IAK's TPMT_PUBLIC
	// AtCreateTkt, AtCertifyInfo and AtCertifyInfoSignature prove the IAK by an earlier key; all three are
	// empty for an IAK that is a primary (tpmline's, and the ST vector's).
	AtCreateTkt             []byte
	AtCertifyInfo           []byte
	AtCertifyInfoSignature  []byte
	SigningPub              []byte // the IDevID's TPMT_PUBLIC
	SgnCertifyInfo          []byte // TPMS_ATTEST: TPM2_Certify of the IDevID by the IAK
	SgnCertifyInfoSignature []byte // TPMT_SIGNATURE by the IAK over SgnCertifyInfo
	Pad                     []byte // as received; Marshal makes its own
}

// CSR is a parsed TCG_CSR_IDEVID.
type CSR struct {
	Content
	// ContentBytes is the content exactly as received: what Signature covers.
	ContentBytes []byte
	Signature    []byte // TPMT_SIGNATURE by the IDevID
}

func hashOf(alg tpm2.TPMIAlgHash) (crypto.Hash, error) {
	switch alg {
	case tpm2.TPMAlgSHA256:
		return crypto.SHA256, nil
	case tpm2.TPMAlgSHA384:
		return crypto.SHA384, nil
	case tpm2.TPMAlgSHA512:
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("hash algorithm %#04x is not SHA-256, SHA-384 or SHA-512", uint16(alg))
}

func (c *Content) fields() [][]byte {
	return [][]byte{[]byte(c.ProdModel), []byte(c.ProdSerial), c.ProdCAData, c.BootEventLog, c.EKCert,
		c.AttestPub, c.AtCreateTkt, c.AtCertifyInfo, c.AtCertifyInfoSignature, c.SigningPub, c.SgnCertifyInfo,
		c.SgnCertifyInfoSignature}
}

// Marshal encodes the content with its hash and a zero pad to a multiple of 16 bytes. It checks the
// bounds Parse checks, so what it makes parses.
func (c *Content) Marshal() ([]byte, error) {
	h, err := hashOf(c.HashAlg)
	if err != nil {
		return nil, err
	}
	fs := c.fields()
	if err := checkFields(fs); err != nil {
		return nil, err
	}
	var tail []byte
	for _, f := range fs {
		tail = binary.BigEndian.AppendUint32(tail, uint32(len(f)))
	}
	size := 3*4 + h.Size() + len(tail) + 4
	for _, f := range fs {
		size += len(f)
	}
	pad := (16 - size%16) % 16
	tail = binary.BigEndian.AppendUint32(tail, uint32(pad))
	for _, f := range fs {
		tail = append(tail, f...)
	}
	tail = append(tail, make([]byte, pad)...)
	d := h.New()
	d.Write(tail)
	out := binary.BigEndian.AppendUint32(nil, StructVer)
	out = binary.BigEndian.AppendUint32(out, uint32(c.HashAlg))
	out = binary.BigEndian.AppendUint32(out, uint32(h.Size()))
	out = d.Sum(out)
	out = append(out, tail...)
	if len(out) > MaxBytes {
		return nil, fmt.Errorf("TCG-CSR-IDEVID content is %d bytes, over the %d-byte bound", len(out), MaxBytes)
	}
	return out, nil
}

// Digest is the digest the IDevID signs: HashAlg over the marshalled content.
func Digest(alg tpm2.TPMIAlgHash, content []byte) ([]byte, error) {
	h, err := hashOf(alg)
	if err != nil {
		return nil, err
	}
	d := h.New()
	d.Write(content)
	return d.Sum(nil), nil
}

// Envelope wraps marshalled content and the IDevID's marshalled TPMT_SIGNATURE into a TCG_CSR_IDEVID.
func Envelope(content, sig []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, StructVer)
	out = binary.BigEndian.AppendUint32(out, uint32(len(content)))
	out = binary.BigEndian.AppendUint32(out, uint32(len(sig)))
	out = append(out, content...)
	return append(out, sig...)
}

var fieldNames = [...]string{"prodModel", "prodSerial", "prodCaData", "bootEvntLog", "ekCert", "attestPub",
	"atCreateTkt", "atCertifyInfo", "atCertifyInfoSignature", "signingPub", "sgnCertifyInfo",
	"sgnCertifyInfoSignature"}

// fieldMax bounds each field; fieldRequired says which may not be empty.
var (
	fieldMax = [...]int{MaxModelLen, MaxSerialLen, MaxCADataBytes, MaxBootLog, provisioning.MaxCertBytes,
		provisioning.MaxPublicBytes, provisioning.MaxAttestBytes, provisioning.MaxAttestBytes, provisioning.MaxSigBytes,
		provisioning.MaxPublicBytes, provisioning.MaxAttestBytes, provisioning.MaxSigBytes}
	fieldRequired = [...]bool{true, true, false, false, true, true, false, false, false, true, true, true}
)

func checkFields(fs [][]byte) error {
	for i, f := range fs {
		if len(f) > fieldMax[i] {
			return fmt.Errorf("%s is %d bytes, over the %d-byte bound", fieldNames[i], len(f), fieldMax[i])
		}
		if len(f) == 0 && fieldRequired[i] {
			return fmt.Errorf("%s is empty", fieldNames[i])
		}
	}
	// The IAK's own certification is all or nothing.
	if (len(fs[6]) == 0) != (len(fs[7]) == 0) || (len(fs[7]) == 0) != (len(fs[8]) == 0) {
		return errors.New("atCreateTkt, atCertifyInfo and atCertifyInfoSignature are not all present or all empty")
	}
	return nil
}

// reader reads big-endian UINT32s and sized fields, refusing anything past the end.
type reader struct {
	b   []byte
	off int
}

func (r *reader) u32(what string) (uint32, error) {
	if len(r.b)-r.off < 4 {
		return 0, fmt.Errorf("%w: truncated at %s (offset %d)", ErrMalformed, what, r.off)
	}
	v := binary.BigEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v, nil
}

func (r *reader) bytes(what string, n uint32) ([]byte, error) {
	if uint64(n) > uint64(len(r.b)-r.off) {
		return nil, fmt.Errorf("%w: %s is %d bytes, past the end (offset %d of %d)", ErrMalformed, what, n, r.off, len(r.b))
	}
	out := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return out, nil
}

// Parse strictly decodes a TCG_CSR_IDEVID: bounded sizes, every length checked against what is left,
// no trailing bytes, the content's hash recomputed, the TPM structures decoded canonically
// (provisioning.DecodePublic, DecodeAttest, DecodeSignature). It does not verify a signature or a key
// attribute: that is the CA's part. It never panics.
func Parse(b []byte) (*CSR, error) {
	if len(b) > MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes, over the %d-byte bound", ErrMalformed, len(b), MaxBytes)
	}
	r := &reader{b: b}
	ver, err := r.u32("structVer")
	if err != nil {
		return nil, err
	}
	if ver != StructVer {
		return nil, fmt.Errorf("%w: structVer %#08x, want %#08x", ErrMalformed, ver, StructVer)
	}
	contentSize, err := r.u32("contentSize")
	if err != nil {
		return nil, err
	}
	sigSize, err := r.u32("sigSz")
	if err != nil {
		return nil, err
	}
	if sigSize == 0 || sigSize > provisioning.MaxSigBytes {
		return nil, fmt.Errorf("%w: sigSz %d (want 1..%d)", ErrMalformed, sigSize, provisioning.MaxSigBytes)
	}
	content, err := r.bytes("content", contentSize)
	if err != nil {
		return nil, err
	}
	sig, err := r.bytes("signature", sigSize)
	if err != nil {
		return nil, err
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes after the signature", ErrMalformed, len(b)-r.off)
	}
	if _, err := provisioning.DecodeSignature(sig); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	}
	c, err := ParseContent(content)
	if err != nil {
		return nil, err
	}
	return &CSR{Content: *c, ContentBytes: content, Signature: sig}, nil
}

// ParseContent strictly decodes a TCG_CSR_IDEVID_CONTENT (the checks of Parse that concern it).
func ParseContent(b []byte) (*Content, error) {
	if len(b) > MaxBytes {
		return nil, fmt.Errorf("%w: content is %d bytes, over the %d-byte bound", ErrMalformed, len(b), MaxBytes)
	}
	r := &reader{b: b}
	ver, err := r.u32("content structVer")
	if err != nil {
		return nil, err
	}
	if ver != StructVer {
		return nil, fmt.Errorf("%w: content structVer %#08x, want %#08x", ErrMalformed, ver, StructVer)
	}
	algID, err := r.u32("hashAlgoId")
	if err != nil {
		return nil, err
	}
	if algID > 0xffff {
		return nil, fmt.Errorf("%w: hashAlgoId %#08x is not a TPM_ALG_ID", ErrMalformed, algID)
	}
	c := &Content{HashAlg: tpm2.TPMIAlgHash(algID)}
	h, err := hashOf(c.HashAlg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	hashSize, err := r.u32("hashSz")
	if err != nil {
		return nil, err
	}
	if hashSize != uint32(h.Size()) {
		return nil, fmt.Errorf("%w: hashSz %d, want %d for hash algorithm %#04x", ErrMalformed, hashSize, h.Size(), algID)
	}
	hash, err := r.bytes("hash", hashSize)
	if err != nil {
		return nil, err
	}
	d := h.New()
	d.Write(b[r.off:])
	if string(d.Sum(nil)) != string(hash) {
		return nil, fmt.Errorf("%w: hash does not match the content that follows it", ErrMalformed)
	}
	var sizes [len(fieldNames)]uint32
	for i := range sizes {
		if sizes[i], err = r.u32(fieldNames[i] + "Sz"); err != nil {
			return nil, err
		}
		if uint64(sizes[i]) > uint64(fieldMax[i]) {
			return nil, fmt.Errorf("%w: %s is %d bytes, over the %d-byte bound", ErrMalformed, fieldNames[i], sizes[i], fieldMax[i])
		}
	}
	padSize, err := r.u32("padSz")
	if err != nil {
		return nil, err
	}
	if padSize > maxPad {
		return nil, fmt.Errorf("%w: padSz %d, over %d", ErrMalformed, padSize, maxPad)
	}
	fs := make([][]byte, len(fieldNames))
	for i := range fs {
		if fs[i], err = r.bytes(fieldNames[i], sizes[i]); err != nil {
			return nil, err
		}
	}
	if err := checkFields(fs); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if c.Pad, err = r.bytes("pad", padSize); err != nil {
		return nil, err
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes after the pad", ErrMalformed, len(b)-r.off)
	}
	c.ProdModel, c.ProdSerial = string(fs[0]), string(fs[1])
	c.ProdCAData, c.BootEventLog, c.EKCert, c.AttestPub = fs[2], fs[3], fs[4], fs[5]
	c.AtCreateTkt, c.AtCertifyInfo, c.AtCertifyInfoSignature = fs[6], fs[7], fs[8]
	c.SigningPub, c.SgnCertifyInfo, c.SgnCertifyInfoSignature = fs[9], fs[10], fs[11]
	for _, p := range []struct {
		name string
		b    []byte
	}{{"attestPub", c.AttestPub}, {"signingPub", c.SigningPub}} {
		if _, err := provisioning.DecodePublic(p.b); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, p.name, err)
		}
	}
	if _, err := provisioning.DecodeAttest(c.SgnCertifyInfo); err != nil {
		return nil, fmt.Errorf("%w: sgnCertifyInfo: %v", ErrMalformed, err)
	}
	if _, err := provisioning.DecodeSignature(c.SgnCertifyInfoSignature); err != nil {
		return nil, fmt.Errorf("%w: sgnCertifyInfoSignature: %v", ErrMalformed, err)
	}
	if len(c.AtCertifyInfo) > 0 {
		if _, err := provisioning.DecodeAttest(c.AtCertifyInfo); err != nil {
			return nil, fmt.Errorf("%w: atCertifyInfo: %v", ErrMalformed, err)
		}
		if _, err := provisioning.DecodeSignature(c.AtCertifyInfoSignature); err != nil {
			return nil, fmt.Errorf("%w: atCertifyInfoSignature: %v", ErrMalformed, err)
		}
	}
	return c, nil
}
