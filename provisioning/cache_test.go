package provisioning_test

import (
	"bytes"
	"testing"

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
