package provisioning_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/provisioning"
)

func TestProvision(t *testing.T) {
	for _, tc := range []struct {
		alg    provisioning.KeyAlg
		wantEK uint32
	}{
		{provisioning.KeyP256, provisioning.NVEKCertP256}, // ECC EK preferred over RSA for an ECC product
		{provisioning.KeyRSA2048, provisioning.NVEKCertP256},
		{provisioning.KeyP384, provisioning.NVEKCertP384H}, // SHA-384 IAK pairs with the H-3 EK
	} {
		t.Run(string(tc.alg), func(t *testing.T) {
			tpm := openTPM(t)
			if tc.alg == provisioning.KeyP384 {
				addEKCert(t, tpm, provisioning.EKP384H, provisioning.NVEKCertP384H)
			}
			ca := newTestCA(t)
			var events []string
			layout := provisioning.DefaultLayout()
			layout.WriteLock = true
			opts := provisioning.Options{
				Serial: "SN-0001", Product: "widget", KeyAlg: tc.alg, Layout: layout,
				Step: func(name string, start bool) {
					if start {
						events = append(events, name)
					}
				},
			}
			res, err := provisioning.Provision(context.Background(), tpm, ca, opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.EKCert.Index != tc.wantEK {
				t.Errorf("enrolled with EK cert %#x, want %#x", res.EKCert.Index, tc.wantEK)
			}
			if !res.State.Provisioned() || !res.State.IAKCert.Attributes.WriteLocked {
				t.Errorf("board state after provisioning: %+v", res.State)
			}
			want := []string{"flush", "tpm-info", "ek-certs", "ek", "ek-check", "iak", "idevid", "enroll",
				"activate-credential", "certify", "issue", "persist", "flush-done", "nv-write", "read-back"}
			if strings.Join(events, ",") != strings.Join(want, ",") {
				t.Errorf("steps %v, want %v", events, want)
			}
			var total time.Duration
			var line strings.Builder
			for _, s := range res.Steps {
				total += s.Duration
				line.WriteString(s.Name + "=" + s.Duration.Round(10*time.Microsecond).String() + " ")
			}
			t.Logf("%s: %s total=%s", tc.alg, line.String(), total.Round(10*time.Microsecond))

			// Same board again without rework: the keys are the same primaries, but the CA issued new
			// certificates and the locked indices refuse them.
			_, err = provisioning.Provision(context.Background(), tpm, ca, opts)
			if !errors.Is(err, provisioning.ErrNVLocked) {
				t.Errorf("second run without rework: %v, want ErrNVLocked", err)
			}
			// Rework clears the board first and succeeds, with the same keys.
			opts.Rework = true
			res2, err := provisioning.Provision(context.Background(), tpm, ca, opts)
			if err != nil {
				t.Fatalf("rework: %v", err)
			}
			if !bytes.Equal(res2.IAKPublic, res.IAKPublic) || bytes.Equal(res2.Certificates.IAKCert, res.Certificates.IAKCert) {
				t.Error("rework: want the same IAK with a new certificate")
			}
			if err := provisioning.Clear(tpm, layout); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestProvisionFailures(t *testing.T) {
	ctx := context.Background()
	base := provisioning.Options{Serial: "SN-0002", Product: "widget"}

	t.Run("no EK certificate", func(t *testing.T) {
		tpm := openTPM(t, fixtures.WithManufactureOptions(fixtures.ManufactureOptions{NoCerts: true}))
		_, err := provisioning.Provision(ctx, tpm, newTestCA(t), base)
		if err == nil || !strings.Contains(err.Error(), "step ek:") || !strings.Contains(err.Error(), "SN-0002") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no EK with the IAK's name algorithm", func(t *testing.T) {
		tpm := openTPM(t)
		opts := base
		opts.KeyAlg = provisioning.KeyP384
		if _, err := provisioning.Provision(ctx, tpm, newTestCA(t), opts); err == nil || !strings.Contains(err.Error(), "name algorithm") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("swapped EK certificate", func(t *testing.T) {
		// The RSA certificate sits where the P-256 one should: the EK check stops the board.
		tpm := openTPM(t, fixtures.WithManufactureOptions(fixtures.ManufactureOptions{SkipECC: true}))
		certs, err := provisioning.ReadEKCertificates(tpm)
		if err != nil {
			t.Fatal(err)
		}
		writePlatformNV(t, tpm, provisioning.NVEKCertP256, certs[0].Data)
		_, err = provisioning.Provision(ctx, tpm, newTestCA(t), base)
		if err == nil || !strings.Contains(err.Error(), "step ek-check:") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("credential for another key", func(t *testing.T) {
		tpm := openTPM(t)
		ca := newTestCA(t)
		ca.tamper = func(ch *provisioning.Challenge) { ch.CredentialBlob[len(ch.CredentialBlob)-1] ^= 1 }
		_, err := provisioning.Provision(ctx, tpm, ca, base)
		if err == nil || !strings.Contains(err.Error(), "step activate-credential:") {
			t.Fatalf("got %v", err)
		}
		st, _ := provisioning.Inspect(tpm, provisioning.DefaultLayout())
		if st.IAK != nil || st.IAKCert != nil {
			t.Error("a failed board was persisted")
		}
	})
	t.Run("CA refuses", func(t *testing.T) {
		tpm := openTPM(t)
		_, err := provisioning.Provision(ctx, tpm, refusingCA{}, base)
		var pe *provisioning.Error
		if !errors.As(err, &pe) || pe.Code != provisioning.CodeEKSerialConflict {
			t.Fatalf("got %v, want the CA's ek_serial_conflict", err)
		}
	})
	t.Run("CA issues for another key", func(t *testing.T) {
		tpm := openTPM(t)
		ca := newTestCA(t)
		_, err := provisioning.Provision(ctx, tpm, swappingCA{ca}, base)
		if err == nil || !strings.Contains(err.Error(), "for another key") {
			t.Fatalf("got %v", err)
		}
		st, _ := provisioning.Inspect(tpm, provisioning.DefaultLayout())
		if st.IAK != nil || st.IAKCert != nil {
			t.Error("a wrongly certified board was persisted")
		}
	})
	t.Run("bad options", func(t *testing.T) {
		for _, o := range []provisioning.Options{
			{Serial: ""},
			{Serial: strings.Repeat("x", 65)},
			{Serial: "a", KeyAlg: "ed25519"},
			{Serial: "a", Layout: provisioning.Layout{IAKHandle: 0x81000001, IDevIDHandle: 0x81000001, IAKCertIndex: 0x01C90100, IDevIDCertIndex: 0x01C90200}},
			{Serial: "a", Layout: provisioning.Layout{IAKHandle: 0x80000001, IDevIDHandle: 0x81000001, IAKCertIndex: 0x01C90100, IDevIDCertIndex: 0x01C90200}},
		} {
			if _, err := provisioning.Provision(ctx, nil, newTestCA(t), o); err == nil {
				t.Errorf("options %+v accepted", o)
			}
		}
	})
}

type refusingCA struct{}

func (refusingCA) Enroll(context.Context, *provisioning.EnrollRequest) (*provisioning.Challenge, error) {
	return nil, provisioning.Errorf(provisioning.CodeEKSerialConflict, "EK enrolled under SN-9999")
}

func (refusingCA) Activate(context.Context, *provisioning.ActivateRequest) (*provisioning.Certificates, error) {
	return nil, errors.New("not reached")
}

// swappingCA returns the IDevID certificate as the IAK's and vice versa.
type swappingCA struct{ *testCA }

func (s swappingCA) Activate(ctx context.Context, req *provisioning.ActivateRequest) (*provisioning.Certificates, error) {
	c, err := s.testCA.Activate(ctx, req)
	if err != nil {
		return nil, err
	}
	c.IAKCert, c.IDevIDCert = c.IDevIDCert, c.IAKCert
	return c, nil
}

func TestChooseEKCert(t *testing.T) {
	certs := []provisioning.NVCert{
		{Index: provisioning.NVEKCertRSA2048}, {Index: provisioning.NVEKCertP256},
		{Index: provisioning.NVEKCertP384H}, {Index: provisioning.NVEKChainFirst},
	}
	for _, tc := range []struct {
		nameAlg tpm2.TPMAlgID
		index   uint32
		want    uint32
	}{
		{tpm2.TPMAlgSHA256, 0, provisioning.NVEKCertP256},
		{tpm2.TPMAlgSHA256, provisioning.NVEKCertRSA2048, provisioning.NVEKCertRSA2048},
		{tpm2.TPMAlgSHA384, 0, provisioning.NVEKCertP384H},
		{tpm2.TPMAlgSHA384, provisioning.NVEKCertP256, 0},
		{tpm2.TPMAlgSHA256, provisioning.NVEKChainFirst, 0},
	} {
		c, _, err := provisioning.ChooseEKCert(certs, tc.nameAlg, tc.index)
		if tc.want == 0 {
			if err == nil {
				t.Errorf("%v/%#x: chose %#x, want an error", tc.nameAlg, tc.index, c.Index)
			}
			continue
		}
		if err != nil || c.Index != tc.want {
			t.Errorf("%v/%#x: got %#x, %v; want %#x", tc.nameAlg, tc.index, c.Index, err, tc.want)
		}
	}
}
