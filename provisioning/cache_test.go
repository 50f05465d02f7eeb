package provisioning_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/provisioning"
)

// TestCachedConnection: a board's cached connection reads the same EK certificates, builds the same EK
// (with the nonce the vendor put in NV) and reports the same properties as a plain one, with fewer
// commands: the fixed properties are read once and absent EK credential indices are not probed.
func TestCachedConnection(t *testing.T) {
	tpm := openTPM(t)
	before, err := provisioning.CreateEK(tpm, provisioning.EKP256)
	if err != nil {
		t.Fatal(err)
	}
	mustFlush(t, tpm, before)
	writePlatformNV(t, tpm, provisioning.NVEKChainFirst+3, []byte("intermediate"))
	nonce := bytes.Repeat([]byte{0xA5}, 16)
	writePlatformNV(t, tpm, 0x01C0000B, nonce) // the P-256 EK nonce, EK Credential Profile 2.2.1.5.1

	type result struct {
		certs []provisioning.NVCert
		ek    []byte
		info  provisioning.TPMInfo
		cmds  int
	}
	run := func(cached bool) result {
		rec := fixtures.NewRecorder(tpm)
		var conn = provisioning.Cached(rec)
		if !cached {
			conn = rec
		}
		var r result
		p, err := provisioning.ReadProperties(conn)
		if err != nil {
			t.Fatal(err)
		}
		r.info = p.Info
		if r.certs, err = provisioning.ReadEKCertificates(conn); err != nil {
			t.Fatal(err)
		}
		ek, err := provisioning.CreateEK(conn, provisioning.EKP256)
		if err != nil {
			t.Fatal(err)
		}
		r.ek = ek.PublicBytes
		mustFlush(t, tpm, ek)
		if p2, err := provisioning.ReadProperties(conn); err != nil || p2.Info != p.Info {
			t.Fatalf("properties read again: %+v %v", p2, err)
		}
		r.cmds = len(rec.Calls())
		return r
	}
	plain, cached := run(false), run(true)
	if len(cached.certs) != len(plain.certs) || len(plain.certs) != 3 {
		t.Fatalf("certificates: cached %v, plain %v", indices(cached.certs), indices(plain.certs))
	}
	for i := range plain.certs {
		if cached.certs[i].Index != plain.certs[i].Index || !bytes.Equal(cached.certs[i].Data, plain.certs[i].Data) {
			t.Errorf("certificate %d differs: NV %#x vs %#x", i, cached.certs[i].Index, plain.certs[i].Index)
		}
	}
	if !bytes.Equal(cached.ek, plain.ek) || cached.info != plain.info {
		t.Error("the cached connection built another EK or read other properties")
	}
	if bytes.Equal(plain.ek, before.PublicBytes) {
		t.Error("the vendor's nonce did not change the EK: the test does not exercise the nonce index")
	}
	if cached.cmds >= plain.cmds {
		t.Errorf("cached connection sent %d commands, plain %d", cached.cmds, plain.cmds)
	}
	t.Logf("commands: plain %d, cached %d", plain.cmds, cached.cmds)
}

// TestReadChosenEKCert: reading only the chosen certificate and the chain gives what reading everything and
// choosing gives, with fewer commands; a preferred index defined but never written yields to the next
// candidate; a TPM without a usable certificate gives ErrNoEKCert.
func TestReadChosenEKCert(t *testing.T) {
	t.Run("same as reading all", func(t *testing.T) {
		tpm := openTPM(t)
		writePlatformNV(t, tpm, provisioning.NVEKChainFirst, []byte("intermediate"))
		all := fixtures.NewRecorder(tpm)
		certs, err := provisioning.ReadEKCertificates(all)
		if err != nil {
			t.Fatal(err)
		}
		want, wantAlg, err := provisioning.ChooseEKCert(certs, tpm2.TPMAlgSHA256, 0)
		if err != nil {
			t.Fatal(err)
		}
		chosen := fixtures.NewRecorder(tpm)
		got, gotAlg, chain, err := provisioning.ReadChosenEKCert(chosen, tpm2.TPMAlgSHA256, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got.Index != want.Index || !bytes.Equal(got.Data, want.Data) || gotAlg != wantAlg || gotAlg != provisioning.EKP256 {
			t.Fatalf("chose NV %#x (%s), reading all chooses %#x (%s)", got.Index, gotAlg, want.Index, wantAlg)
		}
		if len(chain) != 1 || chain[0].Index != provisioning.NVEKChainFirst || string(chain[0].Data) != "intermediate" {
			t.Fatalf("chain %v", indices(chain))
		}
		if len(chosen.Calls()) >= len(all.Calls()) {
			t.Errorf("reading the chosen certificate took %d commands, reading all %d", len(chosen.Calls()), len(all.Calls()))
		}
	})
	t.Run("unwritten index skipped", func(t *testing.T) {
		tpm := openTPM(t, fixtures.WithManufactureOptions(fixtures.ManufactureOptions{SkipECC: true}))
		platform := tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}
		if _, err := (tpm2.NVDefineSpace{AuthHandle: platform, PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex: tpm2.TPMHandle(provisioning.NVEKCertP256), NameAlg: tpm2.TPMAlgSHA256, DataSize: 16,
			Attributes: tpm2.TPMANV{PPWrite: true, PPRead: true, AuthRead: true, NoDA: true, PlatformCreate: true, NT: tpm2.TPMNTOrdinary},
		})}).Execute(tpm); err != nil {
			t.Fatal(err)
		}
		got, alg, _, err := provisioning.ReadChosenEKCert(tpm, tpm2.TPMAlgSHA256, 0)
		if err != nil || got.Index != provisioning.NVEKCertRSA2048 || alg != provisioning.EKRSA2048 || len(got.Data) == 0 {
			t.Fatalf("got NV %#x (%s), %v; want the RSA certificate", got.Index, alg, err)
		}
	})
	t.Run("none usable", func(t *testing.T) {
		tpm := openTPM(t)
		if _, _, _, err := provisioning.ReadChosenEKCert(tpm, tpm2.TPMAlgSHA384, 0); !errors.Is(err, provisioning.ErrNoEKCert) {
			t.Fatalf("SHA-384 EK certificate on a TPM with low range ones only: %v, want ErrNoEKCert", err)
		}
	})
}
