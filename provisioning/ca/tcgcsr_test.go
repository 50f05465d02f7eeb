package ca

import (
	"context"
	"os"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ekcert"
	"github.com/tpmline/tpmline/provisioning/tcgcsr"
)

// csrBoard is a simulator board that made its TCG-CSR-IDEVID.
type csrBoard struct {
	*board
	content *tcgcsr.Content // what the board built, to tamper with
	csr     []byte
}

func newCSRBoard(t *testing.T, serial string, keys provisioning.KeyAlg) *csrBoard {
	t.Helper()
	b := newBoard(t, serial, provisioning.EKRSA2048, keys)
	der, _, err := ekcert.Normalise(b.ekCert)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := tcgcsr.Build(b.tpm, tcgcsr.Board{Model: "widget-1", Serial: serial, EKCert: der}, b.iak, b.idevid)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := tcgcsr.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return &csrBoard{board: b, content: &parsed.Content, csr: raw}
}

func (b *csrBoard) request(csr []byte) *provisioning.TCGCSREnrollRequest {
	return &provisioning.TCGCSREnrollRequest{Version: provisioning.ProtocolVersion, CSR: csr, EKPublic: b.ek.PublicBytes, TPM: b.req.TPM}
}

// resign signs a tampered copy of the board's content with its IDevID, as a board that lies would.
func (b *csrBoard) resign(t *testing.T, f func(c *tcgcsr.Content)) []byte {
	t.Helper()
	c := *b.content
	f(&c)
	raw, err := tcgcsr.Sign(b.tpm, b.idevid, &c)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// answerCSR is round 2 for a CSR session: the credential activated, the CSR's certify evidence again.
func (b *csrBoard) answerCSR(t *testing.T, ch *provisioning.Challenge) *provisioning.ActivateRequest {
	t.Helper()
	secret, err := provisioning.ActivateCredential(b.tpm, b.ek, b.iak, ch.CredentialBlob, ch.EncryptedSecret)
	if err != nil {
		t.Fatal(err)
	}
	return &provisioning.ActivateRequest{Version: provisioning.ProtocolVersion, SessionID: ch.SessionID, Secret: secret,
		CertifyInfo: b.content.SgnCertifyInfo, CertifySignature: b.content.SgnCertifyInfoSignature}
}

// TestTCGCSRRoundTrip: a CSR the board built in its TPM is accepted by the CA, which issues only after the
// board activated the credential; over HTTPS with mutual TLS through the station's client too.
func TestTCGCSRRoundTrip(t *testing.T) {
	for _, keys := range []provisioning.KeyAlg{provisioning.KeyP256, provisioning.KeyRSA2048} {
		t.Run(string(keys), func(t *testing.T) {
			ctx := context.Background()
			b := newCSRBoard(t, "SN-CSR-1", keys)
			e := newEnv(t, "")
			ch, err := e.v.EnrollTCGCSR(ctx, "station-1", b.request(b.csr))
			if err != nil {
				t.Fatal(err)
			}
			if issued, err := e.store.CertificatesByBoard(ctx, "SN-CSR-1"); err != nil || len(issued) != 0 {
				t.Fatalf("certificates before activation: %d, %v", len(issued), err)
			}
			certs, err := e.v.Activate(ctx, "station-1", b.answerCSR(t, ch))
			if err != nil {
				t.Fatal(err)
			}
			checkIssued(t, e, certs, "SN-CSR-1")
		})
	}
	t.Run("https", func(t *testing.T) {
		b := newCSRBoard(t, "SN-CSR-HTTPS", provisioning.KeyP256)
		h := newHTTPSCA(t, "")
		var ch provisioning.Challenge
		if st, eb := h.post(t, h.client, provisioning.PathEnrollTCGCSR, mustJSON(t, b.request(b.csr)), &ch); eb != nil {
			t.Fatalf("enroll: %d %+v", st, eb)
		}
		var certs provisioning.Certificates
		if st, eb := h.post(t, h.client, provisioning.PathActivate, mustJSON(t, b.answerCSR(t, &ch)), &certs); eb != nil {
			t.Fatalf("activate: %d %+v", st, eb)
		}
		checkIssued(t, h.env, &certs, "SN-CSR-HTTPS")
		// A CSR session burns like any other: a replay is refused.
		if st, eb := h.post(t, h.client, provisioning.PathActivate, mustJSON(t, b.answerCSR(t, &ch)), nil); eb == nil || eb.Error.Code != provisioning.CodeChallengeUsed {
			t.Fatalf("replay: %d %+v", st, eb)
		}
	})
}

// TestTCGCSRRefused: every field of the CSR tampered, each refused by its own check.
func TestTCGCSRRefused(t *testing.T) {
	ctx := context.Background()
	b := newCSRBoard(t, "SN-CSR-BAD", provisioning.KeyP256)
	e := newEnv(t, "")
	st, err := os.ReadFile("../tcgcsr/testdata/st-csr_contents.bin")
	if err != nil {
		t.Fatal(err)
	}
	stEK := st[137 : 137+1033]
	// Another IDevID and another IAK in the same TPM. The simulator holds three objects: the EK is
	// unloaded meanwhile (a primary: made again, it is the same key) and each extra key flushed.
	if err := b.ek.Flush(b.tpm); err != nil {
		t.Fatal(err)
	}
	tmpl, err := provisioning.IDevIDTemplate(provisioning.KeyP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: []byte("ID2")}, Y: tpm2.TPM2BECCParameter{Buffer: []byte("ID2")}})
	other := createPrimary(t, b.tpm, tmpl)
	otherAttest, otherSig := rawCertify(t, b.tpm, b.iak, other, nil)
	if err := other.Flush(b.tpm); err != nil {
		t.Fatal(err)
	}
	iak2 := secondIAK(t, b.tpm, provisioning.KeyP256)
	_, iak2Sig := rawCertify(t, b.tpm, iak2, b.idevid, nil)
	if err := iak2.Flush(b.tpm); err != nil {
		t.Fatal(err)
	}
	if b.ek, err = provisioning.CreateEK(b.tpm, provisioning.EKRSA2048); err != nil {
		t.Fatal(err)
	}
	// The content as built, with the IDevID's signature replaced (the CA's hash checks come first).
	withSig := func(f func(c *tcgcsr.Content)) []byte {
		c := *b.content
		f(&c)
		raw, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := tcgcsr.Parse(b.csr)
		if err != nil {
			t.Fatal(err)
		}
		return tcgcsr.Envelope(raw, parsed.Signature)
	}
	flipSig := func() []byte {
		out := append([]byte(nil), b.csr...)
		out[len(out)-1] ^= 1
		return out
	}
	for _, tc := range []struct {
		name string
		req  func() *provisioning.TCGCSREnrollRequest
		want provisioning.ErrorCode
	}{
		{"version", func() *provisioning.TCGCSREnrollRequest { r := b.request(b.csr); r.Version = 2; return r }, provisioning.CodeUnsupportedVersion},
		{"no csr", func() *provisioning.TCGCSREnrollRequest { return b.request(nil) }, provisioning.CodeBadRequest},
		{"csr over bound", func() *provisioning.TCGCSREnrollRequest { return b.request(make([]byte, tcgcsr.MaxBytes+1)) }, provisioning.CodeTooLarge},
		{"csr truncated", func() *provisioning.TCGCSREnrollRequest { return b.request(b.csr[:len(b.csr)-1]) }, provisioning.CodeCSRInvalid},
		{"serial syntax", func() *provisioning.TCGCSREnrollRequest {
			return b.request(b.resign(t, func(c *tcgcsr.Content) { c.ProdSerial = "SN_CSR;BAD" }))
		}, provisioning.CodeBadRequest},
		{"model not printable", func() *provisioning.TCGCSREnrollRequest {
			return b.request(b.resign(t, func(c *tcgcsr.Content) { c.ProdModel = "widget\x01" }))
		}, provisioning.CodeBadRequest},
		{"EK certificate of another vendor", func() *provisioning.TCGCSREnrollRequest {
			return b.request(b.resign(t, func(c *tcgcsr.Content) { c.EKCert = stEK }))
		}, provisioning.CodeEKUntrusted},
		{"EK certificate not a certificate", func() *provisioning.TCGCSREnrollRequest {
			return b.request(b.resign(t, func(c *tcgcsr.Content) { c.EKCert = []byte{0x30, 0x03, 0x02, 0x01, 0x01} }))
		}, provisioning.CodeEKCertInvalid},
		{"ek_public of another key", func() *provisioning.TCGCSREnrollRequest {
			r := b.request(b.csr)
			r.EKPublic = tamperPublic(t, r.EKPublic, func(p *tpm2.TPMTPublic) {
				u, err := p.Unique.RSA()
				if err != nil {
					t.Fatal(err)
				}
				mod := append([]byte(nil), u.Buffer...)
				mod[len(mod)-1] ^= 2
				p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: mod})
			})
			return r
		}, provisioning.CodeEKMismatch},
		{"IAK not restricted", func() *provisioning.TCGCSREnrollRequest {
			return b.request(b.resign(t, func(c *tcgcsr.Content) {
				c.AttestPub = tamperPublic(t, c.AttestPub, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Restricted = false })
			}))
		}, provisioning.CodeIAKAttributes},
		{"IAK not fixedTPM", func() *provisioning.TCGCSREnrollRequest {
			return b.request(b.resign(t, func(c *tcgcsr.Content) {
				c.AttestPub = tamperPublic(t, c.AttestPub, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedTPM = false })
			}))
		}, provisioning.CodeIAKAttributes},
		{"IAK not fixedParent", func() *provisioning.TCGCSREnrollRequest {
			return b.request(b.resign(t, func(c *tcgcsr.Content) {
				c.AttestPub = tamperPublic(t, c.AttestPub, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedParent = false })
			}))
		}, provisioning.CodeIAKAttributes},
		{"IAK not a signing key", func() *provisioning.TCGCSREnrollRequest {
			return b.request(b.resign(t, func(c *tcgcsr.Content) {
				c.AttestPub = tamperPublic(t, c.AttestPub, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.SignEncrypt = false })
			}))
		}, provisioning.CodeIAKAttributes},
		{"IDevID restricted", func() *provisioning.TCGCSREnrollRequest {
			return b.request(b.resign(t, func(c *tcgcsr.Content) {
				c.SigningPub = tamperPublic(t, c.SigningPub, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Restricted = true })
			}))
		}, provisioning.CodeIDevIDAttributes},
		{"IDevID not fixedTPM", func() *provisioning.TCGCSREnrollRequest {
			return b.request(b.resign(t, func(c *tcgcsr.Content) {
				c.SigningPub = tamperPublic(t, c.SigningPub, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedTPM = false })
			}))
		}, provisioning.CodeIDevIDAttributes},
		{"sgnCertifyInfo without the magic", func() *provisioning.TCGCSREnrollRequest {
			return b.request(b.resign(t, func(c *tcgcsr.Content) {
				c.SgnCertifyInfo = append([]byte(nil), c.SgnCertifyInfo...)
				c.SgnCertifyInfo[0] ^= 1
			}))
		}, provisioning.CodeAttestInvalid},
		{"sgnCertifyInfo of another key", func() *provisioning.TCGCSREnrollRequest {
			return b.request(b.resign(t, func(c *tcgcsr.Content) { c.SgnCertifyInfo, c.SgnCertifyInfoSignature = otherAttest, otherSig }))
		}, provisioning.CodeAttestName},
		{"signingPub of another key", func() *provisioning.TCGCSREnrollRequest {
			// Signed by the IDevID the certify names, so only the name check can refuse it.
			return b.request(withSig(func(c *tcgcsr.Content) { c.SigningPub = other.PublicBytes }))
		}, provisioning.CodeAttestName},
		{"sgnCertifyInfoSignature by another IAK", func() *provisioning.TCGCSREnrollRequest {
			return b.request(b.resign(t, func(c *tcgcsr.Content) { c.SgnCertifyInfoSignature = iak2Sig }))
		}, provisioning.CodeAttestSignature},
		{"hashAlgoId SHA-512", func() *provisioning.TCGCSREnrollRequest {
			return b.request(withSig(func(c *tcgcsr.Content) { c.HashAlg = tpm2.TPMAlgSHA512 }))
		}, provisioning.CodeCSRSignature},
		{"hashAlgoId not the IDevID's", func() *provisioning.TCGCSREnrollRequest {
			return b.request(withSig(func(c *tcgcsr.Content) { c.HashAlg = tpm2.TPMAlgSHA384 }))
		}, provisioning.CodeCSRSignature},
		{"content changed after signing", func() *provisioning.TCGCSREnrollRequest {
			return b.request(withSig(func(c *tcgcsr.Content) { c.ProdCAData = []byte("x") }))
		}, provisioning.CodeCSRSignature},
		{"signature flipped", func() *provisioning.TCGCSREnrollRequest { return b.request(flipSig()) }, provisioning.CodeCSRSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.v.EnrollTCGCSR(ctx, "station-1", tc.req())
			wantCode(t, err, tc.want)
		})
	}

	// The EK/serial rule is the JSON flow's: once enrolled, the same EK under another serial is refused,
	// and a wrong secret burns a CSR session without issuing.
	ch, err := e.v.EnrollTCGCSR(ctx, "station-1", b.request(b.csr))
	if err != nil {
		t.Fatal(err)
	}
	bad := b.answerCSR(t, ch)
	bad.Secret = append([]byte(nil), bad.Secret...)
	bad.Secret[0] ^= 1
	_, err = e.v.Activate(ctx, "station-1", bad)
	wantCode(t, err, provisioning.CodeActivationFailed)
	if issued, err := e.store.CertificatesByBoard(ctx, "SN-CSR-BAD"); err != nil || len(issued) != 0 {
		t.Fatalf("certificates after a wrong secret: %d, %v", len(issued), err)
	}
	ch, err = e.v.EnrollTCGCSR(ctx, "station-1", b.request(b.csr))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.v.Activate(ctx, "station-1", b.answerCSR(t, ch)); err != nil {
		t.Fatal(err)
	}
	_, err = e.v.EnrollTCGCSR(ctx, "station-1", b.request(b.resign(t, func(c *tcgcsr.Content) { c.ProdSerial = "SN-CSR-CLONE" })))
	wantCode(t, err, provisioning.CodeEKSerialConflict)
}

// TestTCGCSRForBoard: the station-side export of a board that has no keys yet (the CSR is for the
// profile's deterministic primaries), accepted and issued by the CA; its request carries the EK public and
// the TPM description the CSR has no field for.
func TestTCGCSRForBoard(t *testing.T) {
	ctx := context.Background()
	tpmMu.Lock()
	defer tpmMu.Unlock()
	defer provisioning.FlushTransients(simTPM)
	if err := provisioning.FlushTransients(simTPM); err != nil {
		t.Fatal(err)
	}
	ex, err := tcgcsr.ForBoard(simTPM, tcgcsr.Export{Serial: "SN-CSR-EXPORT", Model: "widget-1", Keys: provisioning.KeyP256, Layout: provisioning.DefaultLayout()})
	if err != nil {
		t.Fatal(err)
	}
	if ex.Persisted {
		t.Fatal("the simulator has no persisted keys, yet the CSR says it used them")
	}
	e := newEnv(t, "")
	ch, err := e.v.EnrollTCGCSR(ctx, "station-1", ex.Request)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := tcgcsr.Parse(ex.CSR)
	if err != nil {
		t.Fatal(err)
	}
	ekAlg := provisioning.EKRSA2048
	if pub, err := provisioning.DecodePublic(ex.Request.EKPublic); err == nil && pub.Type == tpm2.TPMAlgECC {
		ekAlg = provisioning.EKP256
	}
	ek, err := provisioning.CreateEK(simTPM, ekAlg)
	if err != nil {
		t.Fatal(err)
	}
	iak, err := provisioning.CreateIAK(simTPM, provisioning.KeyP256)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := provisioning.ActivateCredential(simTPM, ek, iak, ch.CredentialBlob, ch.EncryptedSecret)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := e.v.Activate(ctx, "station-1", &provisioning.ActivateRequest{Version: provisioning.ProtocolVersion,
		SessionID: ch.SessionID, Secret: secret, CertifyInfo: parsed.SgnCertifyInfo, CertifySignature: parsed.SgnCertifyInfoSignature})
	if err != nil {
		t.Fatal(err)
	}
	checkIssued(t, e, certs, "SN-CSR-EXPORT")
}
