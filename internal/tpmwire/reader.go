// Package tpmwire reads the TPM 2.0 wire format (TPM 2.0 Part 1, 18; Part 2, 10.4): big-endian integers and
// TPM2B sized buffers. It is also the one home of the key rules that need no go-tpm: a marshalled
// TPMT_PUBLIC to a checked Go public key (PublicKey) and the EK identity (KeyIdentity, EKIdentity), so that
// the station, the CA, the reports and the inventory (which never imports go-tpm) compute them alike. The
// strict decoders into go-tpm's types build on this Reader and live in provisioning (decode.go).
package tpmwire

import (
	"encoding/binary"
	"errors"
)

// ErrTruncated is the error of a read past the end of the input.
var ErrTruncated = errors.New("structure is truncated")

// Reader reads one structure from a byte slice. A read past the end makes Err report ErrTruncated and
// yields zeros (nil for byte reads), as does every read after it.
type Reader struct {
	b   []byte
	err error
}

// NewReader reads b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Take returns the next n bytes (capacity limited to n, so appending never writes into the input).
func (r *Reader) Take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = ErrTruncated
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// U8 reads a UINT8 (also BYTE, TPMI_YES_NO).
func (r *Reader) U8() uint8 {
	if b := r.Take(1); b != nil {
		return b[0]
	}
	return 0
}

// U16 reads a big-endian UINT16.
func (r *Reader) U16() uint16 {
	if b := r.Take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

// U32 reads a big-endian UINT32.
func (r *Reader) U32() uint32 {
	if b := r.Take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// U64 reads a big-endian UINT64.
func (r *Reader) U64() uint64 {
	if b := r.Take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// TPM2B reads a sized buffer: a UINT16 size and that many bytes. An empty buffer is a non-nil empty slice,
// as go-tpm decodes one.
func (r *Reader) TPM2B() []byte {
	n := int(r.U16())
	if r.err != nil {
		return nil
	}
	if n == 0 {
		return []byte{}
	}
	return r.Take(n)
}

// Err is ErrTruncated after a read past the end, else nil.
func (r *Reader) Err() error { return r.err }

// Len is the number of bytes not read yet.
func (r *Reader) Len() int { return len(r.b) }

// End reports whether every byte was read and none was missing.
func (r *Reader) End() bool { return r.err == nil && len(r.b) == 0 }
