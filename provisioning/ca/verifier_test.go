package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/provisioning"
)

// withoutIDevID frees a TPM object slot (the TPM has 3) for f, then loads the same IDevID again.
func (b *board) withoutIDevID(f func()) {
	b.t.Helper()
	if err := b.idevid.Flush(b.tpm); err != nil {
		b.t.Fatal(err)
	}
	f()
	var err error
	if b.idevid, err = provisioning.CreateIDevID(b.tpm, provisioning.KeyAlg(keyAlgOf(b))); err != nil {
		b.t.Fatal(err)
	}
}

// withoutEK frees the EK's slot for f (after activation the EK is no longer needed).
func (b *board) withoutEK(f func()) {
	b.t.Helper()
	if err := b.ek.Flush(b.tpm); err != nil {
		b.t.Fatal(err)
	}
	f()
	var err error
	if b.ek, err = provisioning.CreateEK(b.tpm, provisioning.EKRSA2048); err != nil {
		b.t.Fatal(err)
	}
}

func keyAlgOf(b *board) string {
	if b.iak.Public.Type == tpm2.TPMAlgRSA {
		return string(provisioning.KeyRSA2048)
	}
	if b.iak.Public.NameAlg == tpm2.TPMAlgSHA384 {
		return string(provisioning.KeyP384)
	}
	return string(provisioning.KeyP256)
}

// loadExternalKey loads a software P-256 public key with LoadExternal: a key the TPM did not make and
// does not protect, which TPM2_Certify nonetheless certifies.
func loadExternalKey(t testing.TB, b *board) *provisioning.Key {
	t.Helper()
	sk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecdhPub, err := sk.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	raw := ecdhPub.Bytes()
	pub := tpm2.TPMTPublic{
		Type: tpm2.TPMAlgECC, NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{SignEncrypt: true, UserWithAuth: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			CurveID:   tpm2.TPMECCNistP256,
			KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: raw[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: raw[33:]}}),
	}
	d, err := sk.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	priv := tpm2.TPMTSensitive{
		SensitiveType: tpm2.TPMAlgECC,
		Sensitive:     tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgECC, &tpm2.TPM2BECCParameter{Buffer: d}),
	}
	rsp, err := (tpm2.LoadExternal{InPrivate: tpm2.New2B(priv), InPublic: tpm2.New2B(pub), Hierarchy: tpm2.TPMRHNull}).Execute(b.tpm)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := (tpm2.ReadPublic{ObjectHandle: rsp.ObjectHandle}).Execute(b.tpm)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rp.OutPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	return &provisioning.Key{Handle: rsp.ObjectHandle, Name: rsp.Name, Public: *got, PublicBytes: rp.OutPublic.Bytes()}
}

// TestEnrollChecks has one case per round-1 check, each built from the simulator's real output and then
// tampered.
func TestEnrollChecks(t *testing.T) {
	b := newBoard(t, "SN-R1", provisioning.EKRSA2048, provisioning.KeyP256)

	// Extra real TPM keys, made while a slot is free.
	var p384IAK, iak2, external []byte
	b.withoutIDevID(func() {
		k, err := provisioning.CreateIAK(b.tpm, provisioning.KeyP384)
		if err != nil {
			t.Fatal(err)
		}
		p384IAK = k.PublicBytes
		k.Flush(b.tpm)
		k2 := secondIAK(t, b.tpm, provisioning.KeyP256)
		iak2 = k2.PublicBytes
		k2.Flush(b.tpm)
		ext := loadExternalKey(t, b)
		external = ext.PublicBytes
		ext.Flush(b.tpm)
	})
	_ = iak2

	// EK certificates that are genuine but wrong.
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	id := fixtures.TPMIdentity{Manufacturer: "id:54455354", Model: "SIM", Version: "id:00010002"}
	otherTPMCert, err := vendor.IssueEKCert(&otherKey.PublicKey, id, x509.KeyUsageKeyEncipherment)
	if err != nil {
		t.Fatal(err)
	}
	otherVendor, err := fixtures.NewManufacturer("Untrusted Vendor")
	if err != nil {
		t.Fatal(err)
	}
	ekKey, err := publicKey(b.ek.PublicBytes)
	if err != nil {
		t.Fatal(err)
	}
	untrustedCert, err := otherVendor.IssueEKCert(ekKey, id, x509.KeyUsageKeyEncipherment)
	if err != nil {
		t.Fatal(err)
	}

	flipIAK := func(f func(a *tpm2.TPMAObject)) func(r *provisioning.EnrollRequest) {
		return func(r *provisioning.EnrollRequest) {
			r.IAKPublic = tamperPublic(t, r.IAKPublic, func(p *tpm2.TPMTPublic) { f(&p.ObjectAttributes) })
		}
	}
	flipIDevID := func(f func(a *tpm2.TPMAObject)) func(r *provisioning.EnrollRequest) {
		return func(r *provisioning.EnrollRequest) {
			r.IDevIDPublic = tamperPublic(t, r.IDevIDPublic, func(p *tpm2.TPMTPublic) { f(&p.ObjectAttributes) })
		}
	}
	big := func(n int) []byte { return bytes.Repeat([]byte{0x30}, n) }
	chain9 := make([][]byte, provisioning.MaxChainCerts+1)
	for i := range chain9 {
		chain9[i] = vendor.Intermediate().Raw
	}

	cases := []struct {
		name   string
		tamper func(r *provisioning.EnrollRequest)
		code   provisioning.ErrorCode
	}{
		{"version 0", func(r *provisioning.EnrollRequest) { r.Version = 0 }, provisioning.CodeUnsupportedVersion},
		{"version 2", func(r *provisioning.EnrollRequest) { r.Version = 2 }, provisioning.CodeUnsupportedVersion},
		{"serial missing", func(r *provisioning.EnrollRequest) { r.Serial = "" }, provisioning.CodeBadRequest},
		{"serial control char", func(r *provisioning.EnrollRequest) { r.Serial = "SN\x01" }, provisioning.CodeBadRequest},
		{"serial newline", func(r *provisioning.EnrollRequest) { r.Serial = "SN\nforged log line" }, provisioning.CodeBadRequest},
		{"serial not PrintableString", func(r *provisioning.EnrollRequest) { r.Serial = "SN_1" }, provisioning.CodeBadRequest},
		{"serial non-ASCII", func(r *provisioning.EnrollRequest) { r.Serial = "SNé" }, provisioning.CodeBadRequest},
		{"serial leading space", func(r *provisioning.EnrollRequest) { r.Serial = " SN" }, provisioning.CodeBadRequest},
		{"serial too long", func(r *provisioning.EnrollRequest) { r.Serial = strings.Repeat("A", provisioning.MaxSerialLen+1) }, provisioning.CodeTooLarge},
		{"product missing", func(r *provisioning.EnrollRequest) { r.Product = "" }, provisioning.CodeBadRequest},
		{"product control char", func(r *provisioning.EnrollRequest) { r.Product = "w\x1b[2J" }, provisioning.CodeBadRequest},
		{"product too long", func(r *provisioning.EnrollRequest) { r.Product = strings.Repeat("p", provisioning.MaxProductLen+1) }, provisioning.CodeTooLarge},
		{"tpm firmware too long", func(r *provisioning.EnrollRequest) {
			r.TPM.Firmware = strings.Repeat("1", provisioning.MaxTPMStringLen+1)
		}, provisioning.CodeTooLarge},
		{"tpm vendor control char", func(r *provisioning.EnrollRequest) { r.TPM.VendorString = "x\x00" }, provisioning.CodeBadRequest},
		{"ek_cert missing", func(r *provisioning.EnrollRequest) { r.EKCert = nil }, provisioning.CodeBadRequest},
		{"ek_cert oversized", func(r *provisioning.EnrollRequest) { r.EKCert = big(provisioning.MaxCertBytes + 1) }, provisioning.CodeTooLarge},
		{"ek_cert truncated", func(r *provisioning.EnrollRequest) { r.EKCert = r.EKCert[:len(r.EKCert)/2] }, provisioning.CodeEKCertInvalid},
		{"ek_cert garbage after DER", func(r *provisioning.EnrollRequest) { r.EKCert = append(append([]byte(nil), r.EKCert...), 0x01, 0x02) }, provisioning.CodeEKCertInvalid},
		{"ek_chain too many", func(r *provisioning.EnrollRequest) { r.EKChain = chain9 }, provisioning.CodeTooLarge},
		{"ek_chain entry oversized", func(r *provisioning.EnrollRequest) { r.EKChain = [][]byte{big(provisioning.MaxCertBytes + 1)} }, provisioning.CodeTooLarge},
		{"ek_chain entry garbage", func(r *provisioning.EnrollRequest) { r.EKChain = [][]byte{{0x30, 0x03, 0x02, 0x01, 0x01}} }, provisioning.CodeEKCertInvalid},
		{"EK cert of another TPM", func(r *provisioning.EnrollRequest) { r.EKCert = otherTPMCert.Raw }, provisioning.CodeEKMismatch},
		{"TPM manufacturer contradicts the EK cert", func(r *provisioning.EnrollRequest) {
			r.TPM.Manufacturer, r.TPM.ManufacturerID = "IFX", 0x49465800
		}, provisioning.CodeBadRequest},
		{"TPM description the IAK cannot carry", func(r *provisioning.EnrollRequest) { r.TPM.Firmware = "new" }, provisioning.CodeBadRequest},
		{"EK cert from untrusted vendor", func(r *provisioning.EnrollRequest) { r.EKCert = untrustedCert.Raw }, provisioning.CodeEKUntrusted},
		{"untrusted vendor with its chain presented", func(r *provisioning.EnrollRequest) {
			r.EKCert, r.EKChain = untrustedCert.Raw, [][]byte{otherVendor.Intermediate().Raw, otherVendor.Root().Raw}
		}, provisioning.CodeEKUntrusted},
		{"CA certificate posing as EK", func(r *provisioning.EnrollRequest) { r.EKCert = vendor.Intermediate().Raw }, provisioning.CodeEKNotEK},
		{"ek_public missing", func(r *provisioning.EnrollRequest) { r.EKPublic = nil }, provisioning.CodeBadRequest},
		{"ek_public oversized", func(r *provisioning.EnrollRequest) { r.EKPublic = big(provisioning.MaxPublicBytes + 1) }, provisioning.CodeTooLarge},
		{"ek_public truncated", func(r *provisioning.EnrollRequest) { r.EKPublic = r.EKPublic[:len(r.EKPublic)-1] }, provisioning.CodeBadRequest},
		{"ek_public trailing byte", func(r *provisioning.EnrollRequest) { r.EKPublic = append(append([]byte(nil), r.EKPublic...), 0) }, provisioning.CodeBadRequest},
		{"ek_public another key", func(r *provisioning.EnrollRequest) {
			r.EKPublic = tamperPublic(t, r.EKPublic, func(p *tpm2.TPMTPublic) {
				n, _ := p.Unique.RSA()
				n.Buffer[10] ^= 1
			})
		}, provisioning.CodeEKMismatch},
		{"ek_public a signing key", func(r *provisioning.EnrollRequest) { r.EKPublic = r.IAKPublic }, provisioning.CodeEKMismatch},
		{"iak_public missing", func(r *provisioning.EnrollRequest) { r.IAKPublic = nil }, provisioning.CodeBadRequest},
		{"iak_public oversized", func(r *provisioning.EnrollRequest) { r.IAKPublic = big(provisioning.MaxPublicBytes + 1) }, provisioning.CodeTooLarge},
		{"iak_public truncated", func(r *provisioning.EnrollRequest) { r.IAKPublic = r.IAKPublic[:len(r.IAKPublic)-3] }, provisioning.CodeBadRequest},
		{"iak_public trailing byte", func(r *provisioning.EnrollRequest) { r.IAKPublic = append(append([]byte(nil), r.IAKPublic...), 0) }, provisioning.CodeBadRequest},
		{"IAK not restricted (the real IDevID)", func(r *provisioning.EnrollRequest) { r.IAKPublic = r.IDevIDPublic }, provisioning.CodeIAKAttributes},
		{"IAK restricted cleared", flipIAK(func(a *tpm2.TPMAObject) { a.Restricted = false }), provisioning.CodeIAKAttributes},
		{"IAK fixedTPM cleared", flipIAK(func(a *tpm2.TPMAObject) { a.FixedTPM = false }), provisioning.CodeIAKAttributes},
		{"IAK fixedParent cleared", flipIAK(func(a *tpm2.TPMAObject) { a.FixedParent = false }), provisioning.CodeIAKAttributes},
		{"IAK sensitiveDataOrigin cleared", flipIAK(func(a *tpm2.TPMAObject) { a.SensitiveDataOrigin = false }), provisioning.CodeIAKAttributes},
		{"IAK sign cleared", flipIAK(func(a *tpm2.TPMAObject) { a.SignEncrypt = false }), provisioning.CodeIAKAttributes},
		{"IAK decrypt set", flipIAK(func(a *tpm2.TPMAObject) { a.Decrypt = true }), provisioning.CodeIAKAttributes},
		{"IAK name algorithm differs from EK (real P-384 IAK)", func(r *provisioning.EnrollRequest) { r.IAKPublic = p384IAK }, provisioning.CodeIAKAlgorithm},
		{"IAK without signing scheme", func(r *provisioning.EnrollRequest) {
			r.IAKPublic = tamperPublic(t, r.IAKPublic, func(p *tpm2.TPMTPublic) {
				d, _ := p.Parameters.ECCDetail()
				d.Scheme = tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull}
			})
		}, provisioning.CodeIAKAlgorithm},
		{"IAK SHA-1 scheme", func(r *provisioning.EnrollRequest) {
			r.IAKPublic = tamperPublic(t, r.IAKPublic, func(p *tpm2.TPMTPublic) {
				d, _ := p.Parameters.ECCDetail()
				d.Scheme = tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA1})}
			})
		}, provisioning.CodeIAKAlgorithm},
		{"IAK point off the curve", func(r *provisioning.EnrollRequest) {
			r.IAKPublic = tamperPublic(t, r.IAKPublic, func(p *tpm2.TPMTPublic) {
				pt, _ := p.Unique.ECC()
				pt.Y.Buffer[5] ^= 1
			})
		}, provisioning.CodeIAKAlgorithm},
		{"idevid_public missing", func(r *provisioning.EnrollRequest) { r.IDevIDPublic = nil }, provisioning.CodeBadRequest},
		{"idevid_public oversized", func(r *provisioning.EnrollRequest) { r.IDevIDPublic = big(provisioning.MaxPublicBytes + 1) }, provisioning.CodeTooLarge},
		{"idevid_public truncated", func(r *provisioning.EnrollRequest) { r.IDevIDPublic = r.IDevIDPublic[:10] }, provisioning.CodeBadRequest},
		{"idevid_public trailing byte", func(r *provisioning.EnrollRequest) {
			r.IDevIDPublic = append(append([]byte(nil), r.IDevIDPublic...), 0)
		}, provisioning.CodeBadRequest},
		{"IDevID fixedTPM cleared", flipIDevID(func(a *tpm2.TPMAObject) { a.FixedTPM = false }), provisioning.CodeIDevIDAttributes},
		{"IDevID fixedParent cleared", flipIDevID(func(a *tpm2.TPMAObject) { a.FixedParent = false }), provisioning.CodeIDevIDAttributes},
		{"IDevID sensitiveDataOrigin cleared", flipIDevID(func(a *tpm2.TPMAObject) { a.SensitiveDataOrigin = false }), provisioning.CodeIDevIDAttributes},
		{"IDevID sign cleared", flipIDevID(func(a *tpm2.TPMAObject) { a.SignEncrypt = false }), provisioning.CodeIDevIDAttributes},
		{"IDevID restricted set", flipIDevID(func(a *tpm2.TPMAObject) { a.Restricted = true }), provisioning.CodeIDevIDAttributes},
		{"IDevID decrypt set", flipIDevID(func(a *tpm2.TPMAObject) { a.Decrypt = true }), provisioning.CodeIDevIDAttributes},
		{"IDevID loaded with LoadExternal", func(r *provisioning.EnrollRequest) { r.IDevIDPublic = external }, provisioning.CodeIDevIDAttributes},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			req := b.request()
			tc.tamper(req)
			_, err := e.v.Enroll(context.Background(), "station-1", req)
			wantCode(t, err, tc.code)
		})
	}
	t.Run("intermediate presented instead of configured", func(t *testing.T) {
		e := newEnv(t, "")
		e.v.EKVerifier.Intermediates = nil
		if _, err := e.v.Enroll(context.Background(), "station-1", b.request()); err == nil {
			t.Fatal("EK accepted without its intermediate")
		}
		req := b.request()
		req.EKChain = [][]byte{vendor.Intermediate().Raw}
		if _, err := e.v.Enroll(context.Background(), "station-1", req); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("error messages never echo the CA's secrets", func(t *testing.T) {
		e := newEnv(t, "")
		req := b.request()
		req.EKPublic = iak2
		_, err := e.v.Enroll(context.Background(), "station-1", req)
		if err == nil || strings.Contains(err.Error(), "0x") && strings.Contains(err.Error(), "Name") {
			t.Fatalf("unexpected %v", err)
		}
	})
}

// TestEKList covers the EK list checks of round 1: required and absent, required and present, listed under
// another serial.
func TestEKList(t *testing.T) {
	b := newBoard(t, "SN-LIST", provisioning.EKRSA2048, provisioning.KeyP256)
	ctx := context.Background()
	hash := mustEKHash(t, b)
	entry := EKListEntry{Serial: "SN-LIST", EKCert: b.ekCert, EKPublic: b.ek.PublicBytes, EKPublicSHA256: hexs(hash), TPMManufacturer: "SIM"}

	t.Run("required and absent", func(t *testing.T) {
		e := newEnv(t, "")
		e.v.RequireEKList = true
		_, err := e.v.Enroll(ctx, "st", b.request())
		wantCode(t, err, provisioning.CodeEKNotListed)
	})
	t.Run("required and present", func(t *testing.T) {
		e := newEnv(t, "")
		e.v.RequireEKList = true
		if _, err := e.v.ImportEKList(ctx, "st", &EKListUpload{Batch: "B1", Entries: []EKListEntry{entry}}); err != nil {
			t.Fatal(err)
		}
		ch, err := e.v.Enroll(ctx, "st", b.request())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.v.Activate(ctx, "st", b.answer(t, ch)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("listed under another serial", func(t *testing.T) {
		e := newEnv(t, "")
		other := entry
		other.Serial = "SN-OTHER"
		if _, err := e.v.ImportEKList(ctx, "st", &EKListUpload{Batch: "B1", Entries: []EKListEntry{other}}); err != nil {
			t.Fatal(err)
		}
		_, err := e.v.Enroll(ctx, "st", b.request())
		wantCode(t, err, provisioning.CodeEKSerialConflict)
	})
	t.Run("upload checks", func(t *testing.T) {
		e := newEnv(t, "")
		for _, tc := range []struct {
			name string
			f    func(x *EKListEntry)
		}{
			{"wrong hash", func(x *EKListEntry) { x.EKPublicSHA256 = strings.Repeat("00", 32) }},
			{"bad hex", func(x *EKListEntry) { x.EKPublicSHA256 = "zz" }},
			{"no key", func(x *EKListEntry) { x.EKCert, x.EKPublic = nil, nil }},
			{"public of another key", func(x *EKListEntry) { x.EKPublic = b.iak.PublicBytes }},
			{"bad serial", func(x *EKListEntry) { x.Serial = "a\nb" }},
			{"garbage cert", func(x *EKListEntry) { x.EKCert = []byte{1, 2, 3} }},
		} {
			x := entry
			tc.f(&x)
			_, err := e.v.ImportEKList(ctx, "st", &EKListUpload{Batch: "B", Entries: []EKListEntry{x}})
			if err == nil {
				t.Fatalf("%s: accepted", tc.name)
			}
			wantCode(t, err, provisioning.CodeEKListInvalid)
		}
		// Idempotent re-upload, conflicting re-upload.
		for i := 0; i < 2; i++ {
			res, err := e.v.ImportEKList(ctx, "st", &EKListUpload{Batch: "B", Entries: []EKListEntry{entry}})
			if err != nil || res.Added != 1-i {
				t.Fatalf("upload %d: %+v %v", i, res, err)
			}
		}
		other := entry
		other.Serial = "SN-OTHER"
		_, err := e.v.ImportEKList(ctx, "st", &EKListUpload{Batch: "B2", Entries: []EKListEntry{other}})
		wantCode(t, err, provisioning.CodeEKListInvalid)
		// Cert-only and public-only entries.
		certOnly, pubOnly := entry, entry
		certOnly.EKPublic, pubOnly.EKCert = nil, nil
		if _, err := e.v.ImportEKList(ctx, "st", &EKListUpload{Batch: "B3", Entries: []EKListEntry{certOnly, pubOnly}}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestBinding covers the one-EK-one-serial rule and reworks, on both engines (PostgreSQL records a first
// enrollment in one statement whose unique indexes stand in for the rule).
func TestBinding(t *testing.T) {
	b := newBoard(t, "SN-BIND", provisioning.EKRSA2048, provisioning.KeyP256)
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) { testBinding(t, b, engine) })
	}
}

func testBinding(t *testing.T, b *board, engine string) {
	ctx := context.Background()
	dbURL := func() string {
		if engine == "postgres" {
			return pgURL(t)
		}
		return ""
	}
	e := newEnv(t, dbURL())
	enroll := func(serial string, rework bool) error {
		req := b.request()
		req.Serial, req.Rework = serial, rework
		ch, err := e.v.Enroll(ctx, "st", req)
		if err != nil {
			return err
		}
		_, err = e.v.Activate(ctx, "st", b.answer(t, ch))
		return err
	}
	first, err := func() (*provisioning.Certificates, error) {
		ch, err := e.v.Enroll(ctx, "st", b.request())
		if err != nil {
			return nil, err
		}
		return e.v.Activate(ctx, "st", b.answer(t, ch))
	}()
	if err != nil {
		t.Fatal(err)
	}
	// Same EK, serial and keys without the rework flag: a station resuming after a crash. The proof is
	// asked again and the certificates issued before come back; nothing new is issued.
	ch, err := e.v.Enroll(ctx, "st", b.request())
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.v.Activate(ctx, "st", b.answer(t, ch))
	if err != nil || !bytes.Equal(again.IAKCert, first.IAKCert) || !bytes.Equal(again.IDevIDCert, first.IDevIDCert) {
		t.Fatalf("resumed enrollment did not return the issued certificates: %v", err)
	}
	if issued, _ := e.store.CertificatesByBoard(ctx, "SN-BIND"); len(issued) != 2 {
		t.Fatalf("resume issued new certificates: %d on record", len(issued))
	}
	// Same EK and serial with another IDevID and no rework flag: refused.
	other := b.request()
	other.IDevIDPublic = bytes.Clone(other.IDevIDPublic)
	other.IDevIDPublic[len(other.IDevIDPublic)-1] ^= 1
	if _, err := e.v.Enroll(ctx, "st", other); err == nil {
		t.Fatal("same EK and serial with other keys enrolled without rework")
	} else {
		wantCode(t, err, provisioning.CodeEKSerialConflict)
	}
	wantCode(t, enroll("SN-CLONE", false), provisioning.CodeEKSerialConflict) // the EK under another serial
	wantCode(t, enroll("SN-CLONE", true), provisioning.CodeEKSerialConflict)  // ... not even as a rework
	if err := enroll("SN-BIND", true); err != nil {                           // rework of the same board
		t.Fatal(err)
	}
	evs, err := e.store.RecentEvents(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[0].Kind != "rework" || evs[1].Kind != "resumed" || evs[2].Kind != "enrolled" {
		t.Fatalf("events %+v", evs)
	}
	enr, err := e.store.EnrollmentByEK(ctx, mustEKHash(t, b))
	if err != nil || enr.Reworks != 1 {
		t.Fatalf("enrollment %+v %v", enr, err)
	}

	t.Run("race between two serials for one EK", func(t *testing.T) {
		e := newEnv(t, dbURL())
		var chs []*provisioning.Challenge
		for _, s := range []string{"SN-A", "SN-B"} {
			req := b.request()
			req.Serial = s
			ch, err := e.v.Enroll(ctx, "st", req)
			if err != nil {
				t.Fatal(err) // both pass round 1: neither is enrolled yet
			}
			chs = append(chs, ch)
		}
		if _, err := e.v.Activate(ctx, "st", b.answer(t, chs[0])); err != nil {
			t.Fatal(err)
		}
		_, err := e.v.Activate(ctx, "st", b.answer(t, chs[1]))
		wantCode(t, err, provisioning.CodeEKSerialConflict)
	})
	t.Run("serial moved to another EK only as rework", func(t *testing.T) {
		e := newEnv(t, dbURL())
		// Another TPM's enrollment holds serial SN-MOVE.
		other := []byte("0123456789abcdef0123456789abcdef")
		if err := e.store.CompleteEnrollment(ctx, &Completion{EKSHA256: other, EKCert: []byte{1}, Serial: "SN-MOVE", Product: "p", Station: "st", At: e.now}); err != nil {
			t.Fatal(err)
		}
		req := b.request()
		req.Serial = "SN-MOVE"
		_, err := e.v.Enroll(ctx, "st", req)
		wantCode(t, err, provisioning.CodeEKSerialConflict)
		req.Rework = true
		ch, err := e.v.Enroll(ctx, "st", req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.v.Activate(ctx, "st", b.answer(t, ch)); err != nil {
			t.Fatal(err)
		}
		// The old EK stays bound to the serial it had: it cannot come back under another one.
		if err := e.store.CheckBinding(ctx, other, "SN-ELSE", true); err != ErrEKOtherSerial {
			t.Fatalf("old EK: %v", err)
		}
	})
}

// TestActivateChecks has one case per round-2 check.
func TestActivateChecks(t *testing.T) {
	b := newBoard(t, "SN-R2", provisioning.EKRSA2048, provisioning.KeyP256)
	ctx := context.Background()

	// start runs round 1 in a fresh CA and recovers the secret the honest way.
	start := func(t *testing.T) (*env, *provisioning.Challenge, *provisioning.ActivateRequest) {
		e := newEnv(t, "")
		ch, err := e.v.Enroll(ctx, "station-1", b.request())
		if err != nil {
			t.Fatal(err)
		}
		return e, ch, b.answer(t, ch)
	}
	mutate := func(ans *provisioning.ActivateRequest, f func(a *provisioning.ActivateRequest)) *provisioning.ActivateRequest {
		c := *ans
		f(&c)
		return &c
	}

	t.Run("wrong secret burns the challenge", func(t *testing.T) {
		e, _, ans := start(t)
		bad := mutate(ans, func(a *provisioning.ActivateRequest) { a.Secret = bytes.Repeat([]byte{7}, 32) })
		_, err := e.v.Activate(ctx, "station-1", bad)
		wantCode(t, err, provisioning.CodeActivationFailed)
		if strings.Contains(err.Error(), string(ans.Secret)) {
			t.Fatal("error echoes the secret")
		}
		_, err = e.v.Activate(ctx, "station-1", ans)
		wantCode(t, err, provisioning.CodeChallengeUsed)
	})
	t.Run("replayed answer", func(t *testing.T) {
		e, _, ans := start(t)
		if _, err := e.v.Activate(ctx, "station-1", ans); err != nil {
			t.Fatal(err)
		}
		_, err := e.v.Activate(ctx, "station-1", ans)
		wantCode(t, err, provisioning.CodeChallengeUsed)
	})
	t.Run("expired", func(t *testing.T) {
		e, ch, ans := start(t)
		e.now = ch.ExpiresAt
		_, err := e.v.Activate(ctx, "station-1", ans)
		wantCode(t, err, provisioning.CodeChallengeExpired)
	})
	t.Run("just before expiry", func(t *testing.T) {
		e, ch, ans := start(t)
		e.now = ch.ExpiresAt.Add(-time.Millisecond)
		if _, err := e.v.Activate(ctx, "station-1", ans); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unknown session", func(t *testing.T) {
		e, _, ans := start(t)
		_, err := e.v.Activate(ctx, "station-1", mutate(ans, func(a *provisioning.ActivateRequest) { a.SessionID = strings.Repeat("ab", 16) }))
		wantCode(t, err, provisioning.CodeChallengeUnknown)
	})
	t.Run("another station's session", func(t *testing.T) {
		e, _, ans := start(t)
		_, err := e.v.Activate(ctx, "station-2", ans)
		wantCode(t, err, provisioning.CodeChallengeUnknown)
		if _, err := e.v.Activate(ctx, "station-1", ans); err != nil {
			t.Fatalf("the owner's answer after a foreign attempt: %v", err)
		}
	})
	t.Run("version", func(t *testing.T) {
		e, _, ans := start(t)
		_, err := e.v.Activate(ctx, "station-1", mutate(ans, func(a *provisioning.ActivateRequest) { a.Version = 9 }))
		wantCode(t, err, provisioning.CodeUnsupportedVersion)
	})
	t.Run("foreign extraData", func(t *testing.T) {
		e, _, ans := start(t)
		attest, sig := rawCertify(t, b.tpm, b.iak, b.idevid, bytes.Repeat([]byte{9}, 32))
		_, err := e.v.Activate(ctx, "station-1", mutate(ans, func(a *provisioning.ActivateRequest) { a.CertifyInfo, a.CertifySignature = attest, sig }))
		wantCode(t, err, provisioning.CodeAttestNonce)
	})
	t.Run("bad magic", func(t *testing.T) {
		e, _, ans := start(t)
		_, err := e.v.Activate(ctx, "station-1", mutate(ans, func(a *provisioning.ActivateRequest) {
			a.CertifyInfo = append([]byte(nil), a.CertifyInfo...)
			a.CertifyInfo[3] ^= 0xff
		}))
		wantCode(t, err, provisioning.CodeAttestInvalid)
	})
	t.Run("wrong attest type (a quote by the IAK)", func(t *testing.T) {
		e, ch, ans := start(t)
		rsp, err := (tpm2.Quote{
			SignHandle:     tpm2.AuthHandle{Handle: b.iak.Handle, Name: b.iak.Name, Auth: tpm2.PasswordAuth(nil)},
			QualifyingData: tpm2.TPM2BData{Buffer: ch.Nonce},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
			PCRSelect:      tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: []byte{1, 0, 0}}}},
		}).Execute(b.tpm)
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.v.Activate(ctx, "station-1", mutate(ans, func(a *provisioning.ActivateRequest) {
			a.CertifyInfo, a.CertifySignature = rsp.Quoted.Bytes(), tpm2.Marshal(rsp.Signature)
		}))
		wantCode(t, err, provisioning.CodeAttestInvalid)
	})
	t.Run("attested Name is not the IDevID's", func(t *testing.T) {
		e, ch, ans := start(t)
		attest, sig := rawCertify(t, b.tpm, b.iak, b.iak, ch.Nonce)
		_, err := e.v.Activate(ctx, "station-1", mutate(ans, func(a *provisioning.ActivateRequest) { a.CertifyInfo, a.CertifySignature = attest, sig }))
		wantCode(t, err, provisioning.CodeAttestName)
	})
	t.Run("LoadExternal key certified by the real IAK", func(t *testing.T) {
		e, ch, ans := start(t)
		var attest, sig []byte
		b.withoutEK(func() {
			ext := loadExternalKey(t, b)
			attest, sig = rawCertify(t, b.tpm, b.iak, ext, ch.Nonce)
			ext.Flush(b.tpm)
		})
		_, err := e.v.Activate(ctx, "station-1", mutate(ans, func(a *provisioning.ActivateRequest) { a.CertifyInfo, a.CertifySignature = attest, sig }))
		wantCode(t, err, provisioning.CodeAttestName)
	})
	t.Run("signature by another key", func(t *testing.T) {
		e, ch, ans := start(t)
		var attest, sig []byte
		b.withoutEK(func() {
			k2 := secondIAK(t, b.tpm, provisioning.KeyP256)
			attest, sig = rawCertify(t, b.tpm, k2, b.idevid, ch.Nonce)
			k2.Flush(b.tpm)
		})
		_, err := e.v.Activate(ctx, "station-1", mutate(ans, func(a *provisioning.ActivateRequest) { a.CertifyInfo, a.CertifySignature = attest, sig }))
		wantCode(t, err, provisioning.CodeAttestSignature)
	})
	t.Run("signature bit flipped", func(t *testing.T) {
		e, _, ans := start(t)
		_, err := e.v.Activate(ctx, "station-1", mutate(ans, func(a *provisioning.ActivateRequest) {
			a.CertifySignature = append([]byte(nil), a.CertifySignature...)
			a.CertifySignature[len(a.CertifySignature)-1] ^= 1
		}))
		wantCode(t, err, provisioning.CodeAttestSignature)
	})
	t.Run("attest byte flipped (signed data changed)", func(t *testing.T) {
		e, _, ans := start(t)
		_, err := e.v.Activate(ctx, "station-1", mutate(ans, func(a *provisioning.ActivateRequest) {
			a.CertifyInfo = append([]byte(nil), a.CertifyInfo...)
			at, err := tpm2.Unmarshal[tpm2.TPMSAttest](a.CertifyInfo)
			if err != nil {
				t.Fatal(err)
			}
			// The low byte of clockInfo.clock: magic, type, qualifiedSigner, extraData come first.
			off := 4 + 2 + 2 + len(at.QualifiedSigner.Buffer) + 2 + len(at.ExtraData.Buffer) + 7
			a.CertifyInfo[off] ^= 1
		}))
		wantCode(t, err, provisioning.CodeAttestSignature)
	})

	sizes := []struct {
		name string
		f    func(a *provisioning.ActivateRequest)
		code provisioning.ErrorCode
	}{
		{"session_id missing", func(a *provisioning.ActivateRequest) { a.SessionID = "" }, provisioning.CodeBadRequest},
		{"session_id not hex", func(a *provisioning.ActivateRequest) { a.SessionID = "../../etc" }, provisioning.CodeBadRequest},
		{"session_id oversized", func(a *provisioning.ActivateRequest) {
			a.SessionID = strings.Repeat("a", provisioning.MaxSessionIDLen+1)
		}, provisioning.CodeTooLarge},
		{"secret missing", func(a *provisioning.ActivateRequest) { a.Secret = nil }, provisioning.CodeBadRequest},
		{"secret oversized", func(a *provisioning.ActivateRequest) { a.Secret = make([]byte, provisioning.MaxSecretBytes+1) }, provisioning.CodeTooLarge},
		{"secret truncated", func(a *provisioning.ActivateRequest) { a.Secret = a.Secret[:31] }, provisioning.CodeActivationFailed},
		{"certify_info missing", func(a *provisioning.ActivateRequest) { a.CertifyInfo = nil }, provisioning.CodeBadRequest},
		{"certify_info oversized", func(a *provisioning.ActivateRequest) { a.CertifyInfo = make([]byte, provisioning.MaxAttestBytes+1) }, provisioning.CodeTooLarge},
		{"certify_info truncated", func(a *provisioning.ActivateRequest) { a.CertifyInfo = a.CertifyInfo[:len(a.CertifyInfo)-1] }, provisioning.CodeAttestInvalid},
		{"certify_info trailing byte", func(a *provisioning.ActivateRequest) {
			a.CertifyInfo = append(append([]byte(nil), a.CertifyInfo...), 0)
		}, provisioning.CodeAttestInvalid},
		{"certify_signature missing", func(a *provisioning.ActivateRequest) { a.CertifySignature = nil }, provisioning.CodeBadRequest},
		{"certify_signature oversized", func(a *provisioning.ActivateRequest) { a.CertifySignature = make([]byte, provisioning.MaxSigBytes+1) }, provisioning.CodeTooLarge},
		{"certify_signature truncated", func(a *provisioning.ActivateRequest) {
			a.CertifySignature = a.CertifySignature[:len(a.CertifySignature)-1]
		}, provisioning.CodeAttestSignature},
		{"certify_signature trailing byte", func(a *provisioning.ActivateRequest) {
			a.CertifySignature = append(append([]byte(nil), a.CertifySignature...), 0)
		}, provisioning.CodeAttestSignature},
	}
	e, _, ans := start(t)
	for _, tc := range sizes {
		t.Run(tc.name, func(t *testing.T) {
			code := tc.code
			ee, a := e, ans
			if code != provisioning.CodeBadRequest && code != provisioning.CodeTooLarge {
				// Checks after the claim burn the session: each needs its own.
				ee, _, a = start(t)
			}
			_, err := ee.v.Activate(ctx, "station-1", mutate(a, tc.f))
			wantCode(t, err, code)
		})
	}
	// Bound and syntax failures come before the claim: the session is still good.
	if _, err := e.v.Activate(ctx, "station-1", ans); err != nil {
		t.Fatalf("session burnt by a malformed request: %v", err)
	}
}

// TestNameSubstitution: the credential is bound to the Name the CA computed from the submitted IAK public.
// A device that submits another key's public cannot activate it with its own IAK.
func TestNameSubstitution(t *testing.T) {
	b := newBoard(t, "SN-NAME", provisioning.EKRSA2048, provisioning.KeyP256)
	ctx := context.Background()
	e := newEnv(t, "")
	var k2 *provisioning.Key
	b.withoutIDevID(func() {
		k2 = secondIAK(t, b.tpm, provisioning.KeyP256)
		req := b.request()
		req.IAKPublic = k2.PublicBytes
		ch, err := e.v.Enroll(ctx, "st", req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := provisioning.ActivateCredential(b.tpm, b.ek, b.iak, ch.CredentialBlob, ch.EncryptedSecret); err == nil {
			t.Fatal("a credential made for another IAK's Name activated with this IAK")
		}
		// The key whose public was submitted does recover it: the binding is to the Name, nothing else.
		if _, err := provisioning.ActivateCredential(b.tpm, b.ek, k2, ch.CredentialBlob, ch.EncryptedSecret); err != nil {
			t.Fatalf("the submitted IAK cannot activate its own credential: %v", err)
		}
		k2.Flush(b.tpm)
	})
}

// TestConcurrentAnswers: two goroutines answer the same challenge; exactly one gets certificates, on both
// engines.
func TestConcurrentAnswers(t *testing.T) {
	b := newBoard(t, "SN-RACE", provisioning.EKRSA2048, provisioning.KeyP256)
	bothEngines(t, func(t *testing.T, _, url string) {
		e := newEnv(t, url)
		// A second CA process on the same database.
		e2 := newEnv(t, e.url)
		ctx := context.Background()
		for round := 0; round < 5; round++ {
			req := b.request()
			req.Serial = "SN-RACE"
			req.Rework = round > 0
			ch, err := e.v.Enroll(ctx, "st", req)
			if err != nil {
				t.Fatal(err)
			}
			ans := b.answer(t, ch)
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i, v := range []*Verifier{e.v, e2.v} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = v.Activate(ctx, "st", ans)
				}()
			}
			wg.Wait()
			ok := 0
			for _, err := range errs {
				if err == nil {
					ok++
				} else {
					wantCode(t, err, provisioning.CodeChallengeUsed)
				}
			}
			if ok != 1 {
				t.Fatalf("round %d: %d answers succeeded: %v", round, ok, errs)
			}
		}
	})
}

// TestRestartBetweenRounds: a CA restart between round 1 and round 2 loses nothing.
func TestRestartBetweenRounds(t *testing.T) {
	b := newBoard(t, "SN-RESTART", provisioning.EKRSA2048, provisioning.KeyP256)
	bothEngines(t, func(t *testing.T, _, url string) {
		e := newEnv(t, url)
		ctx := context.Background()
		ch, err := e.v.Enroll(ctx, "st", b.request())
		if err != nil {
			t.Fatal(err)
		}
		e.reopen(t)
		certs, err := e.v.Activate(ctx, "st", b.answer(t, ch))
		if err != nil {
			t.Fatal(err)
		}
		checkIssued(t, e, certs, "SN-RESTART")
	})
}

// A refused answer is logged (answer_refused, with its code) before it is answered, on both engines: on
// PostgreSQL that commit is what makes the claim that burnt the session durable. An answer that is
// accepted logs no refusal.
func TestRefusedAnswerLogged(t *testing.T) {
	b := newBoard(t, "SN-REFUSED", provisioning.EKRSA2048, provisioning.KeyP256)
	ctx := context.Background()
	bothEngines(t, func(t *testing.T, _, url string) {
		e := newEnv(t, url)
		ch, err := e.v.Enroll(ctx, "station-1", b.request())
		if err != nil {
			t.Fatal(err)
		}
		ans := b.answer(t, ch)
		bad := *ans
		bad.CertifyInfo = bytes.Clone(ans.CertifyInfo)
		bad.CertifyInfo[len(bad.CertifyInfo)-1] ^= 1
		_, err = e.v.Activate(ctx, "station-1", &bad)
		wantCode(t, err, provisioning.CodeAttestSignature)
		evs, err := e.store.RecentEvents(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].Kind != "answer_refused" || evs[0].SessionID != ch.SessionID || evs[0].Serial != "SN-REFUSED" ||
			!strings.HasPrefix(evs[0].Detail, string(provisioning.CodeAttestSignature)+": ") {
			t.Fatalf("events after a refused answer: %+v", evs)
		}
		// The honest answer now finds the session burnt: refused and logged too.
		_, err = e.v.Activate(ctx, "station-1", ans)
		wantCode(t, err, provisioning.CodeChallengeUsed)

		e2 := newEnv(t, url)
		ch2, err := e2.v.Enroll(ctx, "station-1", b.request())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e2.v.Activate(ctx, "station-1", b.answer(t, ch2)); err != nil {
			t.Fatal(err)
		}
		evs, err = e2.store.RecentEvents(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, ev := range evs {
			if ev.SessionID == ch2.SessionID {
				kinds = append(kinds, ev.Kind)
			}
		}
		if len(kinds) != 1 || kinds[0] != "enrolled" {
			t.Fatalf("events of an accepted answer: %v", kinds)
		}
	})
}
