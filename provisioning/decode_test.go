package provisioning

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// TestStrictDecoders has one case per check of the strict decoders (decode.go's numbered list).
func TestStrictDecoders(t *testing.T) {
	publics, attests, sigs := decoderSeeds(t)
	decoders := []struct {
		name   string
		max    int
		seed   []byte
		decode func([]byte) (tpm2.Marshallable, error)
	}{
		{"TPMT_PUBLIC", MaxPublicBytes, publics[1], func(b []byte) (tpm2.Marshallable, error) { v, err := DecodePublic(b); return deref(v), err }},
		{"TPMS_ATTEST", MaxAttestBytes, attests[0], func(b []byte) (tpm2.Marshallable, error) { v, err := DecodeAttest(b); return deref(v), err }},
		{"TPMT_SIGNATURE", MaxSigBytes, sigs[0], func(b []byte) (tpm2.Marshallable, error) { v, err := DecodeSignature(b); return deref(v), err }},
	}
	for _, d := range decoders {
		// 1. bounds
		for _, b := range [][]byte{nil, make([]byte, d.max+1)} {
			if _, err := d.decode(b); !errors.Is(err, ErrStructSize) {
				t.Errorf("%s of %d bytes: %v, want ErrStructSize", d.name, len(b), err)
			}
		}
		// 2. the seed decodes (by the direct path) to what it marshals from.
		v, err := d.decode(d.seed)
		if err != nil || !bytes.Equal(tpm2.Marshal(v), d.seed) {
			t.Errorf("%s seed: %v", d.name, err)
		}
		// 3. trailing bytes and truncation
		if _, err := d.decode(append(bytes.Clone(d.seed), 0)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s with a trailing byte: %v, want ErrMalformed", d.name, err)
		}
		if _, err := d.decode(d.seed[:len(d.seed)-1]); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s truncated: %v, want ErrMalformed", d.name, err)
		}
	}
	// 2. go-tpm's path: an attestation of another type than certify is left to go-tpm, which decodes it.
	quote := tpm2.Marshal(tpm2.TPMSAttest{Magic: tpm2.TPMGeneratedValue, Type: tpm2.TPMSTAttestQuote,
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{})})
	if at, err := DecodeAttest(quote); err != nil || at.Type != tpm2.TPMSTAttestQuote {
		t.Errorf("quote attestation through go-tpm: %v", err)
	}
	// 3. non-canonical: TPMI_YES_NO 2 decodes in go-tpm but marshals back as 1.
	unsafe := bytes.Clone(attests[0])
	unsafe[4+2+2+34+2+32+8+4+4] = 2
	if _, err := DecodeAttest(unsafe); !errors.Is(err, ErrMalformed) {
		t.Errorf("non-canonical TPMI_YES_NO: %v, want ErrMalformed", err)
	}
}

func deref[T tpm2.Marshallable](v *T) tpm2.Marshallable {
	if v == nil {
		return nil
	}
	return *v
}

// FuzzStrictDecoders: no input panics a strict decoder (go-tpm's panics are recovered), and whatever one
// accepts marshals back to exactly the input.
func FuzzStrictDecoders(f *testing.F) {
	publics, attests, sigs := decoderSeeds(f)
	for _, set := range [][][]byte{publics, attests, sigs} {
		for _, b := range set {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := DecodePublic(b); err == nil && !bytes.Equal(tpm2.Marshal(*p), b) {
			t.Fatalf("TPMT_PUBLIC %x accepted, marshals to %x", b, tpm2.Marshal(*p))
		}
		if a, err := DecodeAttest(b); err == nil && !bytes.Equal(tpm2.Marshal(*a), b) {
			t.Fatalf("TPMS_ATTEST %x accepted, marshals to %x", b, tpm2.Marshal(*a))
		}
		if s, err := DecodeSignature(b); err == nil && !bytes.Equal(tpm2.Marshal(*s), b) {
			t.Fatalf("TPMT_SIGNATURE %x accepted, marshals to %x", b, tpm2.Marshal(*s))
		}
	})
}
