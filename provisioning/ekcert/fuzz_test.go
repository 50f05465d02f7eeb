package ekcert

import (
	"crypto"
	"encoding/asn1"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// seedAll adds every file of the shared EK set and the swtpm test data to the corpus.
func seedAll(f *testing.F) {
	for _, dir := range []string{filepath.Join(shared, "ek"), filepath.Join(shared, "ca"), "testdata/swtpm"} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			f.Fatal(err)
		}
		for _, e := range entries {
			f.Add(readFile(f, filepath.Join(dir, e.Name())))
		}
	}
}

func FuzzNormalise(f *testing.F) {
	seedAll(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		der, applied, err := Normalise(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || der != nil {
				t.Fatalf("error %v does not wrap ErrInvalid, or DER returned with it", err)
			}
			return
		}
		if len(der) > len(raw) {
			t.Fatalf("DER of %d bytes grew from %d input bytes", len(der), len(raw))
		}
		if len(applied) == 0 && string(der) != string(raw) {
			t.Fatal("input changed with no normalisation reported")
		}
		// One DER SEQUENCE of exactly the stated length.
		if der[0] != tagSequence {
			t.Fatalf("output starts with %#02x", der[0])
		}
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(der, &seq); err != nil || len(rest) != 0 {
			t.Fatalf("output is not one DER element of its length: %d bytes left, %v", len(rest), err)
		}
		// Normalising clean DER changes nothing.
		again, applied2, err := Normalise(der)
		if err != nil || len(applied2) != 0 || string(again) != string(der) {
			t.Fatalf("not idempotent: %v %v", applied2, err)
		}
	})
}

func FuzzParse(f *testing.F) {
	seedAll(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := Parse(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse error %v does not wrap ErrInvalid", err)
			}
			return
		}
		_ = c.ManufacturerCode()
		// Whatever parses must go through the verifier and the report without a panic.
		if _, err := (&Verifier{}).Verify(c, nil); err == nil {
			t.Fatal("verified with no roots")
		}
		_ = Describe(raw, &Verifier{}).String()
	})
}

// FuzzPublicKey: PublicKey never panics, refuses with ErrInvalid, and whenever Parse also accepts the
// input, both read the same key (the station's and the CA's view of one certificate cannot differ).
func FuzzPublicKey(f *testing.F) {
	seedAll(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		k, _, err := PublicKey(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("PublicKey error %v does not wrap ErrInvalid", err)
			}
			if _, perr := Parse(raw); perr == nil {
				t.Fatalf("Parse accepts what PublicKey refuses: %v", err)
			}
			return
		}
		if c, err := Parse(raw); err == nil {
			if !c.X509.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(k) {
				t.Fatal("Parse and PublicKey read different keys")
			}
		}
	})
}
