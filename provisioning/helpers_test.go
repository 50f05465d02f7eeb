package provisioning_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/provisioning"
)

// openTPM opens the in-process simulator, freshly manufactured with EK certificates by the simulated vendor.
// The simulator is one per process: tests using it must not run in parallel. At cleanup it checks that the
// test left no transient object or session loaded, then closes (and wipes) the simulator.
func openTPM(t *testing.T, opts ...fixtures.Option) transport.TPM {
	t.Helper()
	tpm, err := fixtures.Open("sim", opts...)
	if err != nil {
		t.Fatalf("opening simulator: %v", err)
	}
	t.Cleanup(func() {
		if err := tpm.Close(); err != nil {
			t.Errorf("closing simulator: %v", err)
		}
	})
	t.Cleanup(func() { assertNoTransients(t, tpm) })
	return tpm
}

func assertNoTransients(t *testing.T, tpm transport.TPM) {
	t.Helper()
	for _, first := range []uint32{0x80000000, 0x02000000, 0x03000000} {
		hs, err := provisioning.ListHandles(tpm, first, first|0x00FFFFFF)
		if err != nil {
			t.Errorf("listing handles from %#x: %v", first, err)
			continue
		}
		if len(hs) != 0 {
			t.Errorf("test left %d handles loaded from %#x: %v", len(hs), first, hs)
		}
	}
}

func mustFlush(t *testing.T, tpm transport.TPM, k *provisioning.Key) {
	t.Helper()
	if err := k.Flush(tpm); err != nil {
		t.Errorf("flushing %#x: %v", uint32(k.Handle), err)
	}
}

// writePlatformNV acts as the TPM vendor: it defines idx under the platform hierarchy (empty platform auth
// on the simulator) with the attributes vendors give EK certificate indices, writes data and locks it.
func writePlatformNV(t *testing.T, tpm transport.TPM, idx uint32, data []byte) {
	t.Helper()
	platform := tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}
	pub := tpm2.TPMSNVPublic{
		NVIndex: tpm2.TPMHandle(idx),
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			PPWrite: true, WriteDefine: true, PPRead: true, OwnerRead: true, AuthRead: true,
			NoDA: true, PlatformCreate: true, NT: tpm2.TPMNTOrdinary,
		},
		DataSize: uint16(len(data)),
	}
	if _, err := (tpm2.NVDefineSpace{AuthHandle: platform, PublicInfo: tpm2.New2B(pub)}).Execute(tpm); err != nil {
		t.Fatalf("defining NV %#x: %v", idx, err)
	}
	for off := 0; off < len(data); off += 1024 {
		end := min(off+1024, len(data))
		rp, err := (tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(idx)}).Execute(tpm)
		if err != nil {
			t.Fatal(err)
		}
		_, err = (tpm2.NVWrite{
			AuthHandle: platform,
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: rp.NVName},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data[off:end]},
			Offset:     uint16(off),
		}).Execute(tpm)
		if err != nil {
			t.Fatalf("writing NV %#x: %v", idx, err)
		}
	}
}

// addEKCert has the simulated vendor certify the EK of alg and store the certificate at idx, the way
// Manufacture does for the low range.
func addEKCert(t *testing.T, tpm transport.TPM, alg provisioning.EKAlg, idx uint32) *x509.Certificate {
	t.Helper()
	m, err := fixtures.DefaultManufacturer()
	if err != nil {
		t.Fatal(err)
	}
	id, err := fixtures.ReadTPMIdentity(tpm)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := provisioning.CreateEK(tpm, alg)
	if err != nil {
		t.Fatal(err)
	}
	defer mustFlush(t, tpm, ek)
	pub, err := tpm2.Pub(ek.Public)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := m.IssueEKCert(pub, id, x509.KeyUsageKeyAgreement)
	if err != nil {
		t.Fatal(err)
	}
	writePlatformNV(t, tpm, idx, cert.Raw)
	return cert
}

// verifyTPMSignature verifies a marshalled TPMT_SIGNATURE over data with the key pub, the way a verifier
// does: digest with the signature's hash, then ECDSA or RSASSA-PKCS1-v1_5.
func verifyTPMSignature(pub *tpm2.TPMTPublic, data, sigBytes []byte) error {
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](sigBytes)
	if err != nil {
		return err
	}
	key, err := tpm2.Pub(*pub)
	if err != nil {
		return err
	}
	digest := func(alg tpm2.TPMIAlgHash) ([]byte, crypto.Hash, error) {
		var h hash.Hash
		var ch crypto.Hash
		switch alg {
		case tpm2.TPMAlgSHA256:
			h, ch = sha256.New(), crypto.SHA256
		case tpm2.TPMAlgSHA384:
			h, ch = sha512.New384(), crypto.SHA384
		default:
			return nil, 0, fmt.Errorf("hash %v", alg)
		}
		h.Write(data)
		return h.Sum(nil), ch, nil
	}
	switch sig.SigAlg {
	case tpm2.TPMAlgECDSA:
		e, err := sig.Signature.ECDSA()
		if err != nil {
			return err
		}
		d, _, err := digest(e.Hash)
		if err != nil {
			return err
		}
		k, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return errors.New("ECDSA signature from a non-ECC key")
		}
		r, s := new(big.Int).SetBytes(e.SignatureR.Buffer), new(big.Int).SetBytes(e.SignatureS.Buffer)
		if !ecdsa.Verify(k, d, r, s) {
			return errors.New("ECDSA signature does not verify")
		}
		return nil
	case tpm2.TPMAlgRSASSA:
		r, err := sig.Signature.RSASSA()
		if err != nil {
			return err
		}
		d, ch, err := digest(r.Hash)
		if err != nil {
			return err
		}
		k, ok := key.(*rsa.PublicKey)
		if !ok {
			return errors.New("RSA signature from a non-RSA key")
		}
		return rsa.VerifyPKCS1v15(k, ch, d, r.Sig.Buffer)
	}
	return fmt.Errorf("signature algorithm %v", sig.SigAlg)
}
