package provisioning_test

import (
	"context"
	"crypto/x509"
	"os"
	"testing"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/provisioning"
)

// TestSwtpmBoard runs the device side against a board made by swtpm_setup (RSA-2048 EK certificate at
// 0x01C00002, P-384 at 0x01C00016, see tpm-facts.md): a fresh one from fixtures, or the one TPMLINE_SWTPM
// names (e.g. TPMLINE_SWTPM=swtpm://127.0.0.1:2321, to check a board made by hand). It checks that the EKs this package creates from the TCG templates
// (L-1 and H-3) are the keys swtpm's vendor certified, and provisions the board with the P-384 (H-3) keys.
// The station's integration tests cover swtpm boards in full; this is the quick cross-check.
func TestSwtpmBoard(t *testing.T) {
	addr := os.Getenv("TPMLINE_SWTPM")
	var vendor *fixtures.Manufacturer
	if addr == "" {
		board, v := fixturestest.NewSwtpmBoard(t)
		addr = board.Addr()
		var err error
		if vendor, err = v.Manufacturer(); err != nil {
			t.Fatal(err)
		}
	}
	tpm, err := fixtures.Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()
	defer assertNoTransients(t, tpm)
	certs, err := provisioning.ReadEKCertificates(tpm)
	if err != nil {
		t.Fatal(err)
	}
	matched := 0
	for _, c := range certs {
		alg, ok := provisioning.EKAlgForIndex(c.Index)
		if !ok {
			continue
		}
		ek, err := provisioning.CreateEK(tpm, alg)
		if err != nil {
			t.Fatal(err)
		}
		err = provisioning.CheckEKMatchesCert(c.Data, &ek.Public)
		mustFlush(t, tpm, ek)
		if err != nil {
			t.Errorf("NV %#x (%s): %v", c.Index, alg, err)
		}
		matched++
	}
	if matched == 0 {
		t.Fatal("no EK certificate on the board")
	}
	if vendor == nil {
		t.Log("provisioning skipped: the CA cannot know the vendor of a board made by hand")
		return
	}
	ca := fixturestest.StartCA(t, fixturestest.CAOptions{
		VendorRoots: []*x509.Certificate{vendor.Root()}, VendorIntermediates: []*x509.Certificate{vendor.Intermediate()}})
	l := provisioning.DefaultLayout()
	res, err := runSteps(context.Background(), tpm, ca.Client(),
		stepOptions{Serial: "SWTPM-1", Product: "widget", KeyAlg: provisioning.KeyP384, Layout: l, Rework: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Steps {
		t.Logf("%-20s %v", s.Name, s.Duration)
	}
	if err := provisioning.Clear(tpm, l); err != nil {
		t.Fatal(err)
	}
}
