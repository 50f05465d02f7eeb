package provisioning_test

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/provisioning"
)

// vouchedBoard runs the recorded steps of one board (persist, NV define/write/lock, read-back) on tpm,
// in the session salted to its EK when salted, and returns the first error.
func vouchedBoard(t *testing.T, tpm, link tpmLink, salted bool) error {
	t.Helper()
	l := provisioning.DefaultLayout()
	l.WriteLock = true
	ek, err := provisioning.CreateEK(tpm, provisioning.EKP256)
	if err != nil {
		t.Fatal(err)
	}
	iak, err := provisioning.CreateIAK(tpm, provisioning.KeyP256)
	if err != nil {
		t.Fatal(err)
	}
	var end func() error
	on := provisioning.Cached(link)
	if salted {
		if on, end, err = provisioning.Vouch(on, ek); err != nil {
			t.Fatal(err)
		}
	}
	mustFlush(t, tpm, ek)
	defer func() {
		if end != nil {
			if err := end(); err != nil {
				t.Errorf("ending the session: %v", err)
			}
		}
		mustFlush(t, tpm, iak)
		if err := provisioning.Clear(tpm, l); err != nil {
			t.Errorf("clearing the board: %v", err)
		}
	}()
	if err := provisioning.Persist(on, iak, l.IAKHandle); err != nil {
		return err
	}
	cert := make([]byte, 1200)
	rand.Read(cert)
	if err := provisioning.WriteCertNV(on, l.IAKCertIndex, cert, true); err != nil {
		return err
	}
	got, err := provisioning.ReadNV(on, l.IAKCertIndex, provisioning.MaxCertBytes)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, cert) {
		return errReadBack
	}
	st, err := provisioning.Inspect(on, l)
	if err != nil {
		return err
	}
	if st.IAK == nil || !bytes.Equal(st.IAK.PublicBytes, iak.PublicBytes) || st.IAKCert == nil || !st.IAKCert.Attributes.WriteLocked {
		return errReadBack
	}
	return nil
}

type tpmLink = interface {
	Send([]byte) ([]byte, error)
}

type readBackError struct{}

func (readBackError) Error() string { return "read-back differs from what was written" }

var errReadBack error = readBackError{}

func TestVouchedSessionRunsTheRecordedSteps(t *testing.T) {
	tpm := openTPM(t)
	if err := vouchedBoard(t, tpm, tpm, true); err != nil {
		t.Fatalf("the recorded steps in the salted session: %v", err)
	}
}

// TestVouchedSessionCatchesForgeries: an interposer answers one recorded command in the TPM's place. In
// the salted session each forgery fails its HMAC at that command; without the session the same forgery
// passes the command (only a later read-back may notice), which is what the session is for.
func TestVouchedSessionCatchesForgeries(t *testing.T) {
	tpm := openTPM(t)
	for _, tc := range []struct {
		name string
		cc   tpm2.TPMCC
		how  fixtures.Forgery
	}{
		{"persist faked", tpm2.TPMCCEvictControl, fixtures.FakeSuccess},
		{"NV define faked", tpm2.TPMCCNVDefineSpace, fixtures.FakeSuccess},
		{"NV write faked", tpm2.TPMCCNVWrite, fixtures.FakeSuccess},
		{"NV lock faked", tpm2.TPMCCNVWriteLock, fixtures.FakeSuccess},
		{"NV read-back rewritten", tpm2.TPMCCNVRead, fixtures.FlipResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forge := func(cc tpm2.TPMCC) fixtures.Forgery {
				if cc == tc.cc {
					return tc.how
				}
				return fixtures.Forward
			}
			p := &fixtures.Interposer{TPM: tpm, Forge: forge}
			err := vouchedBoard(t, tpm, p, true)
			if len(p.Forged()) == 0 {
				t.Fatal("the interposer forged nothing")
			}
			if !provisioning.IsNotVouched(err) {
				t.Fatalf("salted session: err = %v, want a failed response HMAC", err)
			}
			if testing.Verbose() {
				t.Logf("caught: %v", err)
			}
			plain := &fixtures.Interposer{TPM: tpm, Forge: forge}
			if err := vouchedBoard(t, tpm, plain, false); provisioning.IsNotVouched(err) {
				t.Fatalf("without the session the forgery was caught by an HMAC: %v", err)
			}
		})
	}
}
