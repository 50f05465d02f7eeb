package provisioning_test

import (
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/provisioning"
)

// TestIDevIDTemplateFor: the NULL-scheme option clears exactly the ECC scheme; RSA IDevIDs are NULL-scheme
// already and unknown schemes are refused.
func TestIDevIDTemplateFor(t *testing.T) {
	h2, _ := provisioning.IDevIDTemplate(provisioning.KeyP256)
	null, err := provisioning.IDevIDTemplateFor(provisioning.KeyP256, provisioning.IDevIDSchemeNull)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := null.Parameters.ECCDetail()
	if p.Scheme.Scheme != tpm2.TPMAlgNull || p.CurveID != tpm2.TPMECCNistP256 || null.ObjectAttributes != h2.ObjectAttributes || null.NameAlg != h2.NameAlg {
		t.Fatalf("NULL-scheme IDevID template %+v", null)
	}
	if p2, _ := h2.Parameters.ECCDetail(); p2.Scheme.Scheme != tpm2.TPMAlgECDSA {
		t.Fatal("the H-2 template lost its ECDSA scheme")
	}
	rsa, _ := provisioning.IDevIDTemplateFor(provisioning.KeyRSA2048, provisioning.IDevIDSchemeNull)
	if r, _ := rsa.Parameters.RSADetail(); r.Scheme.Scheme != tpm2.TPMAlgNull {
		t.Fatal("RSA IDevID has a fixed scheme")
	}
	if _, err := provisioning.ParseIDevIDScheme("ecdsa"); err == nil {
		t.Fatal("unknown scheme accepted")
	}
}
