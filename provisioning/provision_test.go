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

// TestSteps provisions a board through every step against the real CA, then checks that write-locked
// indices refuse other certificates and that rework clears the board and keeps the keys.
func TestSteps(t *testing.T) {
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
			ca := startCA(t).Client()
			var events []string
			layout := provisioning.DefaultLayout()
			layout.WriteLock = true
			opts := stepOptions{
				Serial: "SN-0001", Product: "widget", KeyAlg: tc.alg, Layout: layout,
				Step: func(name string) { events = append(events, name) },
			}
			res, err := runSteps(context.Background(), tpm, ca, opts)
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

			// A certificate other than the one in a write-locked index is refused there.
			other := append([]byte(nil), res.Certificates.IDevIDCert...)
			if err := provisioning.WriteCertNV(tpm, layout.IAKCertIndex, other, true); !errors.Is(err, provisioning.ErrNVLocked) {
				t.Errorf("writing another certificate to the locked IAK index: %v, want ErrNVLocked", err)
			}
			// Rework clears the board first and succeeds, with the same keys and new certificates.
			opts.Rework = true
			res2, err := runSteps(context.Background(), tpm, ca, opts)
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

func TestStepsFailures(t *testing.T) {
	ctx := context.Background()
	base := stepOptions{Serial: "SN-0002", Product: "widget"}

	t.Run("no EK certificate", func(t *testing.T) {
		tpm := openTPM(t, fixtures.WithManufactureOptions(fixtures.ManufactureOptions{NoCerts: true}))
		_, err := runSteps(ctx, tpm, startCA(t).Client(), base)
		if err == nil || !strings.Contains(err.Error(), "step ek:") || !strings.Contains(err.Error(), "SN-0002") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no EK with the IAK's name algorithm", func(t *testing.T) {
		tpm := openTPM(t)
		opts := base
		opts.KeyAlg = provisioning.KeyP384
		if _, err := runSteps(ctx, tpm, startCA(t).Client(), opts); err == nil || !strings.Contains(err.Error(), "name algorithm") {
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
		_, err = runSteps(ctx, tpm, startCA(t).Client(), base)
		if err == nil || !strings.Contains(err.Error(), "step ek-check:") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("credential for another key", func(t *testing.T) {
		tpm := openTPM(t)
		ca := tamperingCA{startCA(t).Client(), func(ch *provisioning.Challenge) { ch.CredentialBlob[len(ch.CredentialBlob)-1] ^= 1 }}
		_, err := runSteps(ctx, tpm, ca, base)
		if err == nil || !strings.Contains(err.Error(), "step activate-credential:") {
			t.Fatalf("got %v", err)
		}
		st, _ := provisioning.Inspect(tpm, provisioning.DefaultLayout())
		if st.IAK != nil || st.IAKCert != nil {
			t.Error("a failed board was persisted")
		}
	})
	t.Run("CA refuses", func(t *testing.T) {
		// The EK is already enrolled under another serial: the real CA answers ek_serial_conflict.
		tpm := openTPM(t)
		ca := startCA(t).Client()
		first := base
		first.Serial = "SN-9999"
		if _, err := runSteps(ctx, tpm, ca, first); err != nil {
			t.Fatal(err)
		}
		if err := provisioning.Clear(tpm, provisioning.DefaultLayout()); err != nil {
			t.Fatal(err)
		}
		_, err := runSteps(ctx, tpm, ca, base)
		var pe *provisioning.Error
		if !errors.As(err, &pe) || pe.Code != provisioning.CodeEKSerialConflict {
			t.Fatalf("got %v, want the CA's ek_serial_conflict", err)
		}
	})
	t.Run("CA issues for another key", func(t *testing.T) {
		tpm := openTPM(t)
		_, err := runSteps(ctx, tpm, swappingCA{startCA(t).Client()}, base)
		if err == nil || !strings.Contains(err.Error(), "for another key") {
			t.Fatalf("got %v", err)
		}
		st, _ := provisioning.Inspect(tpm, provisioning.DefaultLayout())
		if st.IAK != nil || st.IAKCert != nil {
			t.Error("a wrongly certified board was persisted")
		}
	})
	t.Run("bad serial", func(t *testing.T) {
		tpm := openTPM(t)
		ca := startCA(t).Client()
		for _, serial := range []string{"", strings.Repeat("x", provisioning.MaxSerialLen+1)} {
			opts := base
			opts.Serial = serial
			if _, err := runSteps(ctx, tpm, ca, opts); err == nil || !strings.Contains(err.Error(), "step enroll:") {
				t.Errorf("serial %q: %v, want a refused enrollment", serial, err)
			}
		}
	})
	t.Run("bad key algorithm and layouts", func(t *testing.T) {
		if _, err := provisioning.ParseKeyAlg("ed25519"); err == nil {
			t.Error("key algorithm ed25519 accepted")
		}
		tpm := openTPM(t)
		for _, l := range []provisioning.Layout{
			{IAKHandle: 0x81000001, IDevIDHandle: 0x81000001, IAKCertIndex: 0x01C90100, IDevIDCertIndex: 0x01C90200},
			{IAKHandle: 0x80000001, IDevIDHandle: 0x81000001, IAKCertIndex: 0x01C90100, IDevIDCertIndex: 0x01C90200},
		} {
			if _, err := provisioning.Inspect(tpm, l); err == nil {
				t.Errorf("layout %+v accepted by Inspect", l)
			}
			if err := provisioning.Clear(tpm, l); err == nil {
				t.Errorf("layout %+v accepted by Clear", l)
			}
		}
	})
}

// tamperingCA changes the real CA's challenge before the board sees it.
type tamperingCA struct {
	provisioning.CA
	tamper func(*provisioning.Challenge)
}

func (c tamperingCA) Enroll(ctx context.Context, req *provisioning.EnrollRequest) (*provisioning.Challenge, error) {
	ch, err := c.CA.Enroll(ctx, req)
	if err == nil {
		c.tamper(ch)
	}
	return ch, err
}

// swappingCA returns the real CA's IDevID certificate as the IAK's and vice versa.
type swappingCA struct{ provisioning.CA }

func (s swappingCA) Activate(ctx context.Context, req *provisioning.ActivateRequest) (*provisioning.Certificates, error) {
	c, err := s.CA.Activate(ctx, req)
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
