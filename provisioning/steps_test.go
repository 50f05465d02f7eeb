package provisioning_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"regexp"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ekcert"
)

var allKeyAlgs = []provisioning.KeyAlg{provisioning.KeyRSA2048, provisioning.KeyP256, provisioning.KeyP384}

func TestFlushTransients(t *testing.T) {
	tpm := openTPM(t)
	// Leave what a crashed run leaves: all 3 object slots and a policy session.
	for _, create := range []func() (*provisioning.Key, error){
		func() (*provisioning.Key, error) { return provisioning.CreateEK(tpm, provisioning.EKP256) },
		func() (*provisioning.Key, error) { return provisioning.CreateIAK(tpm, provisioning.KeyP256) },
		func() (*provisioning.Key, error) { return provisioning.CreateIDevID(tpm, provisioning.KeyP256) },
	} {
		if _, err := create(); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := tpm2.PolicySession(tpm, tpm2.TPMAlgSHA256, 16); err != nil {
		t.Fatal(err)
	}
	// The slots are full: a fourth object does not fit.
	if k, err := provisioning.CreateIAK(tpm, provisioning.KeyRSA2048); !errors.Is(err, tpm2.TPMRCObjectMemory) {
		if err == nil {
			k.Flush(tpm)
		}
		t.Fatalf("4th object: got %v, want TPM_RC_OBJECT_MEMORY", err)
	}
	hs, _ := provisioning.ListHandles(tpm, 0x80000000, 0x80FFFFFF)
	if len(hs) != 3 {
		t.Fatalf("%d transient objects loaded, want 3", len(hs))
	}
	if err := provisioning.FlushTransients(tpm); err != nil {
		t.Fatal(err)
	}
	assertNoTransients(t, tpm)
	// Idempotent on an empty TPM.
	if err := provisioning.FlushTransients(tpm); err != nil {
		t.Fatal(err)
	}
}

func TestReadTPMInfo(t *testing.T) {
	tpm := openTPM(t)
	p, err := provisioning.ReadProperties(tpm)
	if err != nil {
		t.Fatal(err)
	}
	id, err := fixtures.ReadTPMIdentity(tpm) // the vendor's own reading, in hex
	if err != nil {
		t.Fatal(err)
	}
	var manu [4]byte
	for i := range 4 {
		manu[i] = byte(mustHex(t, id.Manufacturer[3:]) >> (24 - 8*i))
	}
	if want := string(bytes.TrimRight(manu[:], "\x00 ")); p.Info.Manufacturer != want {
		t.Errorf("manufacturer %q, want %q", p.Info.Manufacturer, want)
	}
	if p.Info.VendorString != id.Model {
		t.Errorf("vendor string %q, want %q", p.Info.VendorString, id.Model)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+$`).MatchString(p.Info.Firmware) {
		t.Errorf("firmware %q is not major.minor.build.patch", p.Info.Firmware)
	}
	if uint32(mustHex(t, id.Version[3:])) != p.FirmwareV1 {
		t.Errorf("firmware v1 %#x, vendor read %s", p.FirmwareV1, id.Version)
	}
	// tpm-facts.md: 1024 and 2048 on the simulator.
	if p.NVBufferMax != 1024 || p.NVIndexMax != 2048 {
		t.Errorf("NV buffer max %d, index max %d; want 1024, 2048", p.NVBufferMax, p.NVIndexMax)
	}
	info, err := provisioning.ReadTPMInfo(tpm)
	if err != nil || info != p.Info {
		t.Errorf("ReadTPMInfo = %+v, %v; want %+v", info, err, p.Info)
	}
	t.Logf("simulator: %+v, NV buffer %d, index %d", p.Info, p.NVBufferMax, p.NVIndexMax)
}

func mustHex(t *testing.T, s string) uint64 {
	t.Helper()
	var v uint64
	for _, c := range s {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= uint64(c - '0')
		case c >= 'A' && c <= 'F':
			v |= uint64(c-'A') + 10
		default:
			t.Fatalf("not hex: %q", s)
		}
	}
	return v
}

func TestReadEKCertificates(t *testing.T) {
	t.Run("low range", func(t *testing.T) {
		m, err := fixtures.DefaultManufacturer()
		if err != nil {
			t.Fatal(err)
		}
		// ST33-style padding and the TCG header: the bytes must come back untouched.
		opts := fixtures.ManufactureOptions{PadTo: 1600, TCGHeader: true}
		tpm := openTPM(t, fixtures.WithManufacturer(m), fixtures.WithManufactureOptions(opts))
		certs, err := provisioning.ReadEKCertificates(tpm)
		if err != nil {
			t.Fatal(err)
		}
		if len(certs) != 2 || certs[0].Index != provisioning.NVEKCertRSA2048 || certs[1].Index != provisioning.NVEKCertP256 {
			t.Fatalf("got %v, want RSA and P-256 certificates", indices(certs))
		}
		for _, c := range certs {
			if len(c.Data) != 1600 || c.Data[0] != 0x10 || c.Data[len(c.Data)-1] != 0xFF {
				t.Errorf("NV %#x: %d bytes starting %x, want the 1600 raw bytes", c.Index, len(c.Data), c.Data[:3])
			}
			if c.IsChain() {
				t.Errorf("NV %#x reported as chain", c.Index)
			}
		}
	})
	t.Run("absent skipped, chain enumerated", func(t *testing.T) {
		tpm := openTPM(t, fixtures.WithManufactureOptions(fixtures.ManufactureOptions{SkipRSA: true}))
		inter := bytes.Repeat([]byte{0x30}, 1500) // raw bytes: ReadEKCertificates does not parse
		writePlatformNV(t, tpm, provisioning.NVEKChainFirst, inter)
		writePlatformNV(t, tpm, provisioning.NVEKChainFirst+7, []byte("root"))
		certs, err := provisioning.ReadEKCertificates(tpm)
		if err != nil {
			t.Fatal(err)
		}
		got := indices(certs)
		want := []uint32{provisioning.NVEKCertP256, provisioning.NVEKChainFirst, provisioning.NVEKChainFirst + 7}
		if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Fatalf("got %x, want %x", got, want)
		}
		if !certs[1].IsChain() || !bytes.Equal(certs[1].Data, inter) || string(certs[2].Data) != "root" {
			t.Errorf("chain certificates read wrong")
		}
	})
	t.Run("none", func(t *testing.T) {
		tpm := openTPM(t, fixtures.WithManufactureOptions(fixtures.ManufactureOptions{NoCerts: true}))
		certs, err := provisioning.ReadEKCertificates(tpm)
		if err != nil || len(certs) != 0 {
			t.Fatalf("got %v, %v; want nothing", indices(certs), err)
		}
	})
}

func indices(cs []provisioning.NVCert) []uint32 {
	var out []uint32
	for _, c := range cs {
		out = append(out, c.Index)
	}
	return out
}

func TestCreateEKMatchesCert(t *testing.T) {
	tpm := openTPM(t, fixtures.WithManufactureOptions(fixtures.ManufactureOptions{PadTo: 1600, TCGHeader: true}))
	certs, err := provisioning.ReadEKCertificates(tpm)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[uint32]*provisioning.Key{}
	for _, c := range certs {
		alg, ok := provisioning.EKAlgForIndex(c.Index)
		if !ok {
			t.Fatalf("no EK algorithm for %#x", c.Index)
		}
		ek, err := provisioning.CreateEK(tpm, alg)
		if err != nil {
			t.Fatal(err)
		}
		pub := ek.Public
		keys[c.Index] = ek
		mustFlush(t, tpm, ek)
		if err := provisioning.CheckEKMatchesCert(c.Data, &pub); err != nil {
			t.Errorf("NV %#x: %v", c.Index, err)
		}
	}
	rsaEK, eccEK := keys[provisioning.NVEKCertRSA2048], keys[provisioning.NVEKCertP256]
	if err := provisioning.CheckEKMatchesCert(certs[0].Data, &eccEK.Public); !errors.Is(err, ekcert.ErrMismatch) {
		t.Errorf("RSA cert against P-256 EK: %v, want ErrMismatch", err)
	}
	if err := provisioning.CheckEKMatchesCert(certs[1].Data, &rsaEK.Public); !errors.Is(err, ekcert.ErrMismatch) {
		t.Errorf("P-256 cert against RSA EK: %v, want ErrMismatch", err)
	}
	if err := provisioning.CheckEKMatchesCert([]byte("garbage"), &rsaEK.Public); err == nil {
		t.Error("garbage certificate accepted")
	}
	// The low range EK matches the TCG default template exactly.
	if rsaEK.Public.ObjectAttributes != tpm2.RSAEKTemplate.ObjectAttributes || !bytes.Equal(rsaEK.Public.AuthPolicy.Buffer, tpm2.RSAEKTemplate.AuthPolicy.Buffer) {
		t.Errorf("RSA EK attributes/policy differ from the TCG template")
	}
}

func TestEKNonceFromNV(t *testing.T) {
	tpm := openTPM(t)
	def, err := provisioning.CreateEK(tpm, provisioning.EKP256)
	if err != nil {
		t.Fatal(err)
	}
	mustFlush(t, tpm, def)
	// EK Credential Profile 2.2.1.5.1: a vendor nonce goes into unique.x, zero padded, y zero.
	nonce := []byte("vendor-nonce-0123")
	writePlatformNV(t, tpm, 0x01C0000B, nonce)
	withNonce, err := provisioning.CreateEK(tpm, provisioning.EKP256)
	if err != nil {
		t.Fatal(err)
	}
	mustFlush(t, tpm, withNonce)
	if bytes.Equal(withNonce.Name.Buffer, def.Name.Buffer) {
		t.Fatal("the nonce in NV did not change the EK")
	}
	tmpl := tpm2.ECCEKTemplate
	x := make([]byte, 32)
	copy(x, nonce)
	tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: x}, Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
	})
	rsp, err := (tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tmpl),
	}).Execute(tpm)
	if err != nil {
		t.Fatal(err)
	}
	(tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}).Execute(tpm)
	if !bytes.Equal(rsp.Name.Buffer, withNonce.Name.Buffer) {
		t.Error("EK with NV nonce differs from the template filled by hand")
	}
}

func TestHighRangeP384EK(t *testing.T) {
	tpm := openTPM(t)
	ek, err := provisioning.CreateEK(tpm, provisioning.EKP384H)
	if err != nil {
		t.Fatal(err)
	}
	defer mustFlush(t, tpm, ek)
	ecc, err := ek.Public.Parameters.ECCDetail()
	if err != nil {
		t.Fatal(err)
	}
	a := ek.Public.ObjectAttributes
	if ek.Public.NameAlg != tpm2.TPMAlgSHA384 || ecc.CurveID != tpm2.TPMECCNistP384 || !a.UserWithAuth || !a.AdminWithPolicy || !a.Restricted || !a.Decrypt {
		t.Fatalf("H-3 EK: name alg %v, curve %v, attributes %+v", ek.Public.NameAlg, ecc.CurveID, a)
	}
	// H-3 pairs with the H-3 (SHA-384) IAK; the EK's userWithAuth makes activation a password session.
	iak, err := provisioning.CreateIAK(tpm, provisioning.KeyP384)
	if err != nil {
		t.Fatal(err)
	}
	defer mustFlush(t, tpm, iak)
	activateRoundTrip(t, tpm, ek, iak)
}

func activateRoundTrip(t *testing.T, tpm transport.TPM, ek, iak *provisioning.Key) {
	t.Helper()
	enc, err := tpm2.ImportEncapsulationKey(&ek.Public)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	blob, encSecret, err := tpm2.CreateCredential(rand.Reader, enc, iak.Name.Buffer, secret)
	if err != nil {
		t.Fatal(err)
	}
	got, err := provisioning.ActivateCredential(tpm, ek, iak, blob, encSecret)
	if err != nil {
		t.Fatalf("activating: %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatal("activated secret differs")
	}
}

func TestDeviceKeyTemplates(t *testing.T) {
	tpm := openTPM(t)
	for _, alg := range allKeyAlgs {
		t.Run(string(alg), func(t *testing.T) {
			nameAlg, _ := alg.NameAlg()
			for _, tc := range []struct {
				name       string
				create     func(transport.TPM, provisioning.KeyAlg) (*provisioning.Key, error)
				restricted bool
			}{
				{"IAK", provisioning.CreateIAK, true},
				{"IDevID", provisioning.CreateIDevID, false},
			} {
				k, err := tc.create(tpm, alg)
				if err != nil {
					t.Fatal(err)
				}
				again, err := tc.create(tpm, alg)
				if err != nil {
					mustFlush(t, tpm, k)
					t.Fatal(err)
				}
				mustFlush(t, tpm, again)
				mustFlush(t, tpm, k)
				a := k.Public.ObjectAttributes
				if !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || !a.UserWithAuth || !a.SignEncrypt ||
					a.Decrypt || a.AdminWithPolicy || a.NoDA || a.Restricted != tc.restricted {
					t.Errorf("%s attributes %+v", tc.name, a)
				}
				if k.Public.NameAlg != nameAlg {
					t.Errorf("%s name alg %v, want %v", tc.name, k.Public.NameAlg, nameAlg)
				}
				if !bytes.Equal(k.Name.Buffer, again.Name.Buffer) {
					t.Errorf("%s is not deterministic: a resumed run would get another key", tc.name)
				}
				name, err := provisioning.PublicName(k.PublicBytes)
				if err != nil || !bytes.Equal(name.Buffer, k.Name.Buffer) {
					t.Errorf("%s PublicName = %x, %v; TPM says %x", tc.name, name.Buffer, err, k.Name.Buffer)
				}
				checkScheme(t, tc.name, &k.Public, alg, tc.restricted)
			}
		})
	}
}

func checkScheme(t *testing.T, what string, pub *tpm2.TPMTPublic, alg provisioning.KeyAlg, restricted bool) {
	t.Helper()
	nameAlg, _ := alg.NameAlg()
	switch alg {
	case provisioning.KeyRSA2048:
		p, err := pub.Parameters.RSADetail()
		if err != nil || p.KeyBits != 2048 || p.Symmetric.Algorithm != tpm2.TPMAlgNull {
			t.Errorf("%s RSA parameters %+v, %v", what, p, err)
			return
		}
		if restricted {
			d, err := p.Scheme.Details.RSASSA()
			if p.Scheme.Scheme != tpm2.TPMAlgRSASSA || err != nil || d.HashAlg != nameAlg {
				t.Errorf("%s scheme %v", what, p.Scheme.Scheme)
			}
		} else if p.Scheme.Scheme != tpm2.TPMAlgNull {
			t.Errorf("%s scheme %v, want NULL", what, p.Scheme.Scheme)
		}
	default:
		p, err := pub.Parameters.ECCDetail()
		if err != nil || p.Symmetric.Algorithm != tpm2.TPMAlgNull || p.Scheme.Scheme != tpm2.TPMAlgECDSA {
			t.Errorf("%s ECC parameters %+v, %v", what, p, err)
			return
		}
		want := tpm2.TPMECCNistP256
		if alg == provisioning.KeyP384 {
			want = tpm2.TPMECCNistP384
		}
		d, err := p.Scheme.Details.ECDSA()
		if p.CurveID != want || err != nil || d.HashAlg != nameAlg {
			t.Errorf("%s curve %v / ECDSA hash", what, p.CurveID)
		}
	}
}

func TestActivateCredential(t *testing.T) {
	tpm := openTPM(t)
	for _, tc := range []struct {
		ek  provisioning.EKAlg
		iak provisioning.KeyAlg
	}{
		{provisioning.EKP256, provisioning.KeyP256},
		{provisioning.EKRSA2048, provisioning.KeyP256},
		{provisioning.EKRSA2048, provisioning.KeyRSA2048},
		{provisioning.EKP256H, provisioning.KeyP256},
	} {
		t.Run(string(tc.ek)+"/"+string(tc.iak), func(t *testing.T) {
			ek, err := provisioning.CreateEK(tpm, tc.ek)
			if err != nil {
				t.Fatal(err)
			}
			defer mustFlush(t, tpm, ek)
			iak, err := provisioning.CreateIAK(tpm, tc.iak)
			if err != nil {
				t.Fatal(err)
			}
			defer mustFlush(t, tpm, iak)
			activateRoundTrip(t, tpm, ek, iak)

			// A credential made for another Name (the IDevID's) must not open with the IAK loaded.
			idevidTmpl, _ := provisioning.IDevIDTemplate(tc.iak)
			other, err := provisioning.CreateIDevID(tpm, tc.iak)
			if err != nil {
				t.Fatal(err)
			}
			mustFlush(t, tpm, other)
			_ = idevidTmpl
			enc, _ := tpm2.ImportEncapsulationKey(&ek.Public)
			blob, encSecret, err := tpm2.CreateCredential(rand.Reader, enc, other.Name.Buffer, []byte("0123456789abcdef"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := provisioning.ActivateCredential(tpm, ek, iak, blob, encSecret); !errors.Is(err, tpm2.TPMRCIntegrity) {
				t.Fatalf("credential for another Name: got %v, want TPM_RC_INTEGRITY", err)
			}
			// Garbage in is an error, not a panic.
			if _, err := provisioning.ActivateCredential(tpm, ek, iak, []byte{1, 2, 3}, encSecret); err == nil {
				t.Fatal("garbage credential accepted")
			}
			if _, err := provisioning.ActivateCredential(tpm, ek, iak, make([]byte, 5000), encSecret); err == nil {
				t.Fatal("oversized credential accepted")
			}
		})
	}
}

func TestCertify(t *testing.T) {
	tpm := openTPM(t)
	for _, alg := range allKeyAlgs {
		t.Run(string(alg), func(t *testing.T) {
			iak, err := provisioning.CreateIAK(tpm, alg)
			if err != nil {
				t.Fatal(err)
			}
			defer mustFlush(t, tpm, iak)
			idevid, err := provisioning.CreateIDevID(tpm, alg)
			if err != nil {
				t.Fatal(err)
			}
			defer mustFlush(t, tpm, idevid)
			nonce := []byte("nonce-from-the-CA-32-bytes-long!")
			attest, sig, err := provisioning.Certify(tpm, iak, idevid, nonce)
			if err != nil {
				t.Fatal(err)
			}
			// Check the magic and type by hand as well: go-tpm v0.9.8 does not.
			if !bytes.Equal(attest[:4], []byte{0xff, 0x54, 0x43, 0x47}) || !bytes.Equal(attest[4:6], []byte{0x80, 0x17}) {
				t.Errorf("attestation starts %x, want TPM_GENERATED ff544347 and ATTEST_CERTIFY 8017", attest[:6])
			}
			info, err := provisioning.ParseCertifyInfo(attest)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(info.Attest.ExtraData.Buffer, nonce) || !bytes.Equal(info.Certify.Name.Buffer, idevid.Name.Buffer) {
				t.Error("attestation does not carry the nonce and the IDevID's Name")
			}
			if err := verifyTPMSignature(&iak.Public, attest, sig); err != nil {
				t.Errorf("signature: %v", err)
			}
			// The same signature must not verify over altered data or under the IDevID key.
			bad := append([]byte(nil), attest...)
			bad[len(bad)-1] ^= 1
			if verifyTPMSignature(&iak.Public, bad, sig) == nil {
				t.Error("signature verifies over altered attestation")
			}
			if verifyTPMSignature(&idevid.Public, attest, sig) == nil {
				t.Error("signature verifies under the IDevID key")
			}
			// Altered magic and type are refused.
			for _, i := range []int{0, 5} {
				bad := append([]byte(nil), attest...)
				bad[i] ^= 0x01
				if _, err := provisioning.ParseCertifyInfo(bad); err == nil {
					t.Errorf("byte %d altered: accepted", i)
				}
			}
			if _, err := provisioning.ParseCertifyInfo(append(attest, 0)); err == nil {
				t.Error("trailing byte accepted")
			}
		})
	}
}

func TestPersistAndCertNV(t *testing.T) {
	tpm := openTPM(t)
	l := provisioning.DefaultLayout()
	l.WriteLock = true

	st, err := provisioning.Inspect(tpm, l)
	if err != nil {
		t.Fatal(err)
	}
	if st.IAK != nil || st.IDevID != nil || st.IAKCert != nil || st.IDevIDCert != nil {
		t.Fatalf("fresh TPM not empty: %+v", st)
	}

	iak, err := provisioning.CreateIAK(tpm, provisioning.KeyP256)
	if err != nil {
		t.Fatal(err)
	}
	defer mustFlush(t, tpm, iak)
	idevid, err := provisioning.CreateIDevID(tpm, provisioning.KeyP256)
	if err != nil {
		t.Fatal(err)
	}
	defer mustFlush(t, tpm, idevid)
	if err := provisioning.Persist(tpm, iak, l.IAKHandle); err != nil {
		t.Fatal(err)
	}
	if err := provisioning.Persist(tpm, iak, l.IAKHandle); err != nil {
		t.Fatalf("persisting the same key again (resume): %v", err)
	}
	if err := provisioning.Persist(tpm, idevid, l.IAKHandle); !errors.Is(err, provisioning.ErrHandleOccupied) {
		t.Fatalf("persisting another key over the IAK: %v, want ErrHandleOccupied", err)
	}
	if err := provisioning.Persist(tpm, idevid, l.IDevIDHandle); err != nil {
		t.Fatal(err)
	}

	// 1500 bytes: two NV_Write chunks of at most 1024.
	cert := make([]byte, 1500)
	rand.Read(cert)
	if err := provisioning.WriteCertNV(tpm, l.IAKCertIndex, cert, true); err != nil {
		t.Fatal(err)
	}
	got, err := provisioning.ReadNV(tpm, l.IAKCertIndex, provisioning.MaxCertBytes)
	if err != nil || !bytes.Equal(got, cert) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
	if _, err := provisioning.ReadNV(tpm, l.IAKCertIndex, 1000); err == nil {
		t.Error("ReadNV read past its bound")
	}
	if err := provisioning.WriteCertNV(tpm, l.IAKCertIndex, cert, true); err != nil {
		t.Errorf("writing the same certificate again (resume): %v", err)
	}
	other := append([]byte(nil), cert...)
	other[0] ^= 0xFF
	if err := provisioning.WriteCertNV(tpm, l.IAKCertIndex, other, true); !errors.Is(err, provisioning.ErrNVLocked) {
		t.Errorf("overwriting a locked certificate: %v, want ErrNVLocked", err)
	}
	if err := provisioning.WriteCertNV(tpm, l.IAKCertIndex, make([]byte, 3000), false); err == nil {
		t.Error("certificate over NV_INDEX_MAX accepted")
	}
	// Unlocked index: rewritten with other contents and size.
	if err := provisioning.WriteCertNV(tpm, l.IDevIDCertIndex, cert[:900], false); err != nil {
		t.Fatal(err)
	}
	if err := provisioning.WriteCertNV(tpm, l.IDevIDCertIndex, other[:1100], false); err != nil {
		t.Fatalf("rewriting an unlocked index: %v", err)
	}

	st, err = provisioning.Inspect(tpm, l)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Provisioned() {
		t.Fatalf("not provisioned: %+v", st)
	}
	if !bytes.Equal(st.IAK.Name.Buffer, iak.Name.Buffer) || !bytes.Equal(st.IDevID.Name.Buffer, idevid.Name.Buffer) {
		t.Error("persisted keys are not ours")
	}
	if !bytes.Equal(st.IAKCert.Data, cert) || !st.IAKCert.Attributes.WriteLocked {
		t.Error("IAK certificate index wrong or not locked")
	}
	if !bytes.Equal(st.IDevIDCert.Data, other[:1100]) || st.IDevIDCert.Attributes.WriteLocked {
		t.Error("IDevID certificate index wrong")
	}

	// Rework: Clear removes everything, the write-locked index included.
	if err := provisioning.Clear(tpm, l); err != nil {
		t.Fatal(err)
	}
	st, err = provisioning.Inspect(tpm, l)
	if err != nil {
		t.Fatal(err)
	}
	if st.IAK != nil || st.IDevID != nil || st.IAKCert != nil || st.IDevIDCert != nil {
		t.Fatalf("after Clear: %+v", st)
	}
	if err := provisioning.Clear(tpm, l); err != nil {
		t.Fatalf("Clear on a clear board: %v", err)
	}
	// A vendor (platform) index is never ours to clear.
	writePlatformNV(t, tpm, l.IAKCertIndex, []byte("vendor"))
	if err := provisioning.Clear(tpm, l); err == nil {
		t.Error("Clear removed a platform-created index")
	}
	if err := provisioning.WriteCertNV(tpm, l.IAKCertIndex, cert, false); err == nil {
		t.Error("WriteCertNV overwrote a platform-created index")
	}
}

func TestPublicName(t *testing.T) {
	tpm := openTPM(t)
	k, err := provisioning.CreateIAK(tpm, provisioning.KeyP256)
	if err != nil {
		t.Fatal(err)
	}
	mustFlush(t, tpm, k)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": k.PublicBytes[:len(k.PublicBytes)-1],
		"trailing":  append(append([]byte(nil), k.PublicBytes...), 0),
		"oversized": make([]byte, provisioning.MaxPublicBytes+1),
		"bad type":  append([]byte{0x12, 0x34}, k.PublicBytes[2:]...),
	} {
		if _, err := provisioning.PublicName(b); err == nil {
			t.Errorf("%s public area accepted", name)
		}
	}
}

func FuzzPublicName(f *testing.F) {
	t, _ := provisioning.IAKTemplate(provisioning.KeyP256)
	f.Add(tpm2.Marshal(t))
	t, _ = provisioning.IDevIDTemplate(provisioning.KeyRSA2048)
	f.Add(tpm2.Marshal(t))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, err := provisioning.PublicName(b) // must not panic
		if err != nil {
			return
		}
		// The Name hashed from the accepted bytes is the one go-tpm computes from the decoded structure.
		p, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
		if err != nil {
			t.Fatalf("accepted bytes go-tpm cannot decode: %v", err)
		}
		want, err := tpm2.ObjectName(p)
		if err != nil || !bytes.Equal(want.Buffer, name.Buffer) {
			t.Fatalf("Name %x, go-tpm computes %x (%v)", name.Buffer, want, err)
		}
	})
}

func FuzzParseCertifyInfo(f *testing.F) {
	f.Add([]byte{0xff, 0x54, 0x43, 0x47, 0x80, 0x17, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		provisioning.ParseCertifyInfo(b) // must not panic
	})
}

func TestReadNVStates(t *testing.T) {
	tpm := openTPM(t)
	const idx = 0x01C90300
	if _, err := provisioning.ReadNV(tpm, idx, 100); !errors.Is(err, provisioning.ErrNVAbsent) {
		t.Errorf("absent index: %v, want ErrNVAbsent", err)
	}
	_, err := (tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex: idx, NameAlg: tpm2.TPMAlgSHA256, DataSize: 10,
			Attributes: tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, NoDA: true, NT: tpm2.TPMNTOrdinary},
		}),
	}).Execute(tpm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provisioning.ReadNV(tpm, idx, 100); !errors.Is(err, provisioning.ErrNVEmpty) {
		t.Errorf("unwritten index: %v, want ErrNVEmpty", err)
	}
	// A vendor EK template index defined but never written is as good as absent.
	writePlatformNV(t, tpm, 0x01C0000C, nil)
	ek, err := provisioning.CreateEK(tpm, provisioning.EKP256)
	if err != nil {
		t.Fatalf("EK with an empty template index: %v", err)
	}
	mustFlush(t, tpm, ek)
	st, err := provisioning.InspectNV(tpm, idx, 100)
	if err != nil || st == nil || st.Data != nil || st.DataSize != 10 {
		t.Errorf("InspectNV of an unwritten index: %+v, %v", st, err)
	}
}
