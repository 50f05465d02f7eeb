package provisioning

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// The one strict decoding of the TPM structures both ends receive from something they do not trust (the
// station from a board's TPM or a relay, the CA from a station): TPMT_PUBLIC, TPMS_ATTEST and
// TPMT_SIGNATURE. Each decoder
//  1. refuses empty input and input over its bound (MaxPublicBytes, MaxAttestBytes, MaxSigBytes), with an
//     error matching ErrStructSize;
//  2. decodes with the direct decoders of decode_fast.go where the shape is one tpmline's boards produce,
//     else with go-tpm's Unmarshal, recovering from a panic inside it (go-tpm's reflection is not hardened
//     against arbitrary input);
//  3. refuses trailing bytes and any encoding that does not marshal back to exactly the input, so the Name
//     computed, the bytes a signature covers and the bytes stored are one and the same.
// Other errors match ErrMalformed. Checks of content (magic, type, attributes, algorithms) are the
// caller's.

var (
	// ErrStructSize: a TPM structure is empty or over its bound.
	ErrStructSize = errors.New("TPM structure size out of bounds")
	// ErrMalformed: a TPM structure does not decode, or not canonically.
	ErrMalformed = errors.New("malformed TPM structure")
)

// DecodePublic strictly decodes one canonical TPMT_PUBLIC (TPM 2.0 Part 2, 12.2.4).
func DecodePublic(b []byte) (*tpm2.TPMTPublic, error) {
	if err := structSize(b, MaxPublicBytes); err != nil {
		return nil, err
	}
	if pub, ok := decodePublicFast(b); ok {
		return pub, nil
	}
	return strictUnmarshal[tpm2.TPMTPublic](b)
}

// DecodeAttest strictly decodes one canonical TPMS_ATTEST (TPM 2.0 Part 2, 10.12.12).
func DecodeAttest(b []byte) (*tpm2.TPMSAttest, error) {
	if err := structSize(b, MaxAttestBytes); err != nil {
		return nil, err
	}
	if at, ok := decodeCertifyFast(b); ok {
		return at, nil
	}
	return strictUnmarshal[tpm2.TPMSAttest](b)
}

// DecodeSignature strictly decodes one canonical TPMT_SIGNATURE (TPM 2.0 Part 2, 11.3.4).
func DecodeSignature(b []byte) (*tpm2.TPMTSignature, error) {
	if err := structSize(b, MaxSigBytes); err != nil {
		return nil, err
	}
	if sig, ok := decodeSignatureFast(b); ok {
		return sig, nil
	}
	return strictUnmarshal[tpm2.TPMTSignature](b)
}

func structSize(b []byte, max int) error {
	if len(b) == 0 || len(b) > max {
		return fmt.Errorf("%w: %d bytes (want 1..%d)", ErrStructSize, len(b), max)
	}
	return nil
}

// strictUnmarshal decodes b as T and refuses trailing or non-canonical bytes. It never panics: a panic in
// go-tpm's Unmarshal or Marshal becomes ErrMalformed.
func strictUnmarshal[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](b []byte) (v *T, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("%w: %T does not decode", ErrMalformed, v)
		}
	}()
	v, err = tpm2.Unmarshal[T, P](b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(tpm2.Marshal(*v), b) {
		return nil, fmt.Errorf("%w: trailing or non-canonical bytes", ErrMalformed)
	}
	return v, nil
}
