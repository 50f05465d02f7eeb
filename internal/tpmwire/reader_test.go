package tpmwire

import (
	"errors"
	"testing"
)

func TestReader(t *testing.T) {
	r := NewReader([]byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x00, 0x00, 0x00, 0x02, 0xAA, 0xBB, 0x00, 0x00})
	if v := r.U8(); v != 0x01 {
		t.Errorf("U8 = %#x", v)
	}
	if v := r.U16(); v != 0x0203 {
		t.Errorf("U16 = %#x", v)
	}
	if v := r.U32(); v != 0x04050607 {
		t.Errorf("U32 = %#x", v)
	}
	if v := r.U16(); v != 0 {
		t.Errorf("U16 = %#x", v)
	}
	if b := r.TPM2B(); string(b) != "\xAA\xBB" || cap(b) != 2 {
		t.Errorf("TPM2B = %x (cap %d), want aabb with capacity 2", b, cap(b))
	}
	if b := r.TPM2B(); b == nil || len(b) != 0 {
		t.Errorf("empty TPM2B = %#v, want a non-nil empty slice", b)
	}
	if !r.End() || r.Err() != nil || r.Len() != 0 {
		t.Fatalf("End %v Err %v Len %d after reading everything", r.End(), r.Err(), r.Len())
	}
	if v := r.U64(); v != 0 || !errors.Is(r.Err(), ErrTruncated) || r.End() {
		t.Fatalf("read past the end: %#x, %v", v, r.Err())
	}
	if b := r.Take(0); b != nil {
		t.Error("a read after a truncation returned bytes")
	}
	short := NewReader([]byte{0x00, 0x05, 0x01})
	if b := short.TPM2B(); b != nil || !errors.Is(short.Err(), ErrTruncated) {
		t.Errorf("TPM2B declaring more than there is: %x, %v", b, short.Err())
	}
}
