package bench

import (
	"testing"

	"github.com/tpmline/tpmline/fixtures"
)

// The cryptography-only figure runs every part on real inputs (a part that fails, e.g. an EK that does
// not chain to the vendor, fails the measurement) and adds its parts up.
func TestCryptoOnly(t *testing.T) {
	vendor, err := fixtures.NewManufacturer("Bench TPM Vendor")
	if err != nil {
		t.Fatal(err)
	}
	k, err := measureCryptoOnly(vendor, 16)
	if err != nil {
		t.Fatal(err)
	}
	if k.Iterations != 16 || k.PerEnrollment != k.Chain+k.MakeCredential+k.Certify+k.Sign {
		t.Fatalf("%+v", k)
	}
	// 16 enrollments' worth is well over a millisecond of CPU: a zero total means the thread clock is
	// not read.
	if k.PerEnrollment <= 0 {
		t.Fatalf("no CPU time measured: %+v", k)
	}
	other, err := fixtures.NewManufacturer("Another Vendor")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := measureCryptoOnlyWith(vendor, other, 1); err == nil {
		t.Fatal("an EK chain to another vendor's root measured as if it verified")
	}
}
