package bench

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/provisioning"
)

// SoftBoard is the CA load generator's model of one board's TPM: an ECC P-256 EK (TCG EK Credential
// Profile template L-2) with a vendor EK certificate, an IAK and an IDevID from provisioning's H-2
// templates, all as P-256 keys held in software. Its public areas are the TPMT_PUBLIC structures a TPM
// returns for those templates (go-tpm's types, marshalled by go-tpm), and its two TPM operations are
// implemented exactly as TPM 2.0 Part 1 and Part 3 specify them:
//
//   - ActivateCredential (Part 3 12.5; Part 1 24 "Credential Protection", 11.4.9.3 KDFe): seed =
//     KDFe(nameAlg, ECDH(ekPriv, ephemeral), "IDENTITY", ephemeral.x, ek.x); the outer HMAC with
//     KDFa(seed, "INTEGRITY") over encIdentity || Name(IAK) is checked in constant time before
//     anything is decrypted; encIdentity is AES-128-CFB (zero IV) under KDFa(seed, "STORAGE", Name(IAK))
//     and holds a TPM2B_DIGEST.
//   - Certify (Part 3 18.2; Part 2 10.12 TPMS_ATTEST): magic TPM_GENERATED_VALUE, type
//     TPM_ST_ATTEST_CERTIFY, qualifiedSigner = QN(IAK), extraData = the CA's nonce, attested =
//     {Name(IDevID), QN(IDevID)}, signed ECDSA-SHA256 by the IAK and returned as a TPMT_SIGNATURE.
//
// It exists because a real TPM (or swtpm) per enrollment cannot reach the 500 enrollments per second the
// CA must sustain; the CA under load runs every one of its checks unchanged. Its tests check it against
// the real CA verifier and against the TPM-side failure modes (wrong Name, tampered blob).
type SoftBoard struct {
	Serial       string
	EKCert       []byte // DER, vendor-signed
	EKPublic     []byte // marshalled TPMT_PUBLIC
	IAKPublic    []byte
	IDevIDPublic []byte

	ek         *ecdh.PrivateKey
	ekX        []byte
	iak        *ecdsa.PrivateKey
	iakName    []byte
	iakQN      []byte
	idevidName []byte
	idevidQN   []byte
	clock      uint64
}

// Firmware identity the soft boards claim (TPM_PT_MANUFACTURER "SOFT" is not a real vendor ID).
var softIdentity = fixtures.TPMIdentity{Manufacturer: "id:534F4654", Model: "softtpm", Version: "id:00010002"}

// SoftTPMInfo is the TPMInfo a soft board reports in its enrollment request.
var SoftTPMInfo = provisioning.TPMInfo{Manufacturer: "SOFT", VendorString: "softtpm", Firmware: "1.2.0.0"}

// NewSoftBoard makes a board: three P-256 keys and an EK certificate issued by vendor.
func NewSoftBoard(vendor *fixtures.Manufacturer, serial string, rnd io.Reader) (*SoftBoard, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	b := &SoftBoard{Serial: serial}
	ekKey, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
	if err != nil {
		return nil, err
	}
	if b.ek, err = ekKey.ECDH(); err != nil {
		return nil, err
	}
	ekTmpl, err := provisioning.EKTemplate(provisioning.EKP256)
	if err != nil {
		return nil, err
	}
	var ekPub *tpm2.TPMTPublic
	if b.EKPublic, ekPub, err = publicWithKey(ekTmpl, &ekKey.PublicKey); err != nil {
		return nil, err
	}
	if pt, err := ekPub.Unique.ECC(); err == nil {
		b.ekX = pt.X.Buffer
	} else {
		return nil, err
	}
	cert, err := vendor.IssueEKCert(&ekKey.PublicKey, softIdentity, x509.KeyUsageKeyAgreement)
	if err != nil {
		return nil, err
	}
	b.EKCert = cert.Raw

	if b.iak, err = ecdsa.GenerateKey(elliptic.P256(), rnd); err != nil {
		return nil, err
	}
	iakTmpl, err := provisioning.IAKTemplate(provisioning.KeyP256)
	if err != nil {
		return nil, err
	}
	if b.IAKPublic, _, err = publicWithKey(iakTmpl, &b.iak.PublicKey); err != nil {
		return nil, err
	}
	idevid, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
	if err != nil {
		return nil, err
	}
	idTmpl, err := provisioning.IDevIDTemplate(provisioning.KeyP256)
	if err != nil {
		return nil, err
	}
	if b.IDevIDPublic, _, err = publicWithKey(idTmpl, &idevid.PublicKey); err != nil {
		return nil, err
	}
	// Both are primaries of the endorsement hierarchy: QN = H(QN(TPM_RH_ENDORSEMENT) || Name), where a
	// hierarchy's QN is its handle (TPM 2.0 Part 1, 16 "Names", 16.3 qualified names).
	for _, k := range []struct {
		pub      []byte
		name, qn *[]byte
	}{{b.IAKPublic, &b.iakName, &b.iakQN}, {b.IDevIDPublic, &b.idevidName, &b.idevidQN}} {
		n, err := provisioning.PublicName(k.pub)
		if err != nil {
			return nil, err
		}
		*k.name = n.Buffer
		h := sha256.New()
		_ = binary.Write(h, binary.BigEndian, uint32(tpm2.TPMRHEndorsement))
		h.Write(n.Buffer)
		*k.qn = append([]byte{0x00, 0x0b}, h.Sum(nil)...) // TPM_ALG_SHA256
	}
	return b, nil
}

// publicWithKey fills a template's unique field with a P-256 point, zero-padded to the curve size as a
// TPM returns it.
func publicWithKey(t tpm2.TPMTPublic, k *ecdsa.PublicKey) ([]byte, *tpm2.TPMTPublic, error) {
	raw, err := k.Bytes() // 04 || X || Y
	if err != nil {
		return nil, nil, err
	}
	t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: raw[1:33]},
		Y: tpm2.TPM2BECCParameter{Buffer: raw[33:]},
	})
	return tpm2.Marshal(t), &t, nil
}

var errIntegrity = errors.New("TPM_RC_INTEGRITY: credential blob HMAC does not verify")

// ActivateCredential recovers the secret of a TPM2_MakeCredential made to this board's EK over its IAK's
// Name, as the TPM does.
func (b *SoftBoard) ActivateCredential(credentialBlob, encryptedSecret []byte) ([]byte, error) {
	pt, err := tpm2.Unmarshal[tpm2.TPMSECCPoint](encryptedSecret)
	if err != nil {
		return nil, fmt.Errorf("encrypted secret: %w", err)
	}
	eph, err := ecdh.P256().NewPublicKey(append(append([]byte{4}, pad32(pt.X.Buffer)...), pad32(pt.Y.Buffer)...))
	if err != nil {
		return nil, fmt.Errorf("TPM_RC_ECC_POINT: %w", err)
	}
	z, err := b.ek.ECDH(eph)
	if err != nil {
		return nil, err
	}
	seed := tpm2.KDFe(crypto.SHA256, z, "IDENTITY", pad32(pt.X.Buffer), b.ekX, 256)
	// TPMS_ID_OBJECT: integrityHMAC (TPM2B_DIGEST) || encIdentity (the rest).
	if len(credentialBlob) < 2 {
		return nil, errIntegrity
	}
	n := int(binary.BigEndian.Uint16(credentialBlob))
	if len(credentialBlob) < 2+n {
		return nil, errIntegrity
	}
	mac, encIdentity := credentialBlob[2:2+n], credentialBlob[2+n:]
	h := hmac.New(sha256.New, tpm2.KDFa(crypto.SHA256, seed, "INTEGRITY", nil, nil, 256))
	h.Write(encIdentity)
	h.Write(b.iakName)
	if !hmac.Equal(h.Sum(nil), mac) {
		return nil, errIntegrity
	}
	blk, err := aes.NewCipher(tpm2.KDFa(crypto.SHA256, seed, "STORAGE", b.iakName, nil, 128))
	if err != nil {
		return nil, err
	}
	plain := make([]byte, len(encIdentity))
	//lint:ignore SA1019 TPM 2.0 Part 1 24.4 protects the credential with AES-128 CFB (zero IV); a soft TPM must do the same
	cipher.NewCFBDecrypter(blk, make([]byte, aes.BlockSize)).XORKeyStream(plain, encIdentity)
	d, err := tpm2.Unmarshal[tpm2.TPM2BDigest](plain)
	if err != nil || 2+len(d.Buffer) != len(plain) {
		return nil, errors.New("TPM_RC_SIZE: credential does not hold one TPM2B_DIGEST")
	}
	return d.Buffer, nil
}

func pad32(b []byte) []byte {
	if len(b) >= 32 {
		return b
	}
	return append(make([]byte, 32-len(b)), b...)
}

// Certify has the IAK sign a TPM2_Certify attestation of the IDevID with extraData = nonce. It returns the
// marshalled TPMS_ATTEST and TPMT_SIGNATURE, as provisioning.Certify does.
func (b *SoftBoard) Certify(nonce []byte, rnd io.Reader) (attest, sig []byte, err error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	b.clock += 1000
	a := tpm2.TPMSAttest{
		Magic:           tpm2.TPMGeneratedValue,
		Type:            tpm2.TPMSTAttestCertify,
		QualifiedSigner: tpm2.TPM2BName{Buffer: b.iakQN},
		ExtraData:       tpm2.TPM2BData{Buffer: nonce},
		ClockInfo:       tpm2.TPMSClockInfo{Clock: b.clock, Safe: true},
		FirmwareVersion: 0x0001000200000000,
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{
			Name:          tpm2.TPM2BName{Buffer: b.idevidName},
			QualifiedName: tpm2.TPM2BName{Buffer: b.idevidQN},
		}),
	}
	attest = tpm2.Marshal(a)
	digest := sha256.Sum256(attest)
	r, s, err := ecdsa.Sign(rnd, b.iak, digest[:])
	if err != nil {
		return nil, nil, err
	}
	sig = tpm2.Marshal(tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgECDSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       tpm2.TPMAlgSHA256,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: fixed32(r)},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: fixed32(s)},
		}),
	})
	return attest, sig, nil
}

func fixed32(v *big.Int) []byte { return v.FillBytes(make([]byte, 32)) }

// EnrollRequest is the board's round-1 request.
func (b *SoftBoard) EnrollRequest(product string) *provisioning.EnrollRequest {
	return &provisioning.EnrollRequest{Version: provisioning.ProtocolVersion, Serial: b.Serial, Product: product,
		EKCert: b.EKCert, EKPublic: b.EKPublic, IAKPublic: b.IAKPublic, IDevIDPublic: b.IDevIDPublic, TPM: SoftTPMInfo}
}

// Answer is the board's round-2 request for a challenge.
func (b *SoftBoard) Answer(ch *provisioning.Challenge) (*provisioning.ActivateRequest, error) {
	secret, err := b.ActivateCredential(ch.CredentialBlob, ch.EncryptedSecret)
	if err != nil {
		return nil, fmt.Errorf("activating credential: %w", err)
	}
	attest, sig, err := b.Certify(ch.Nonce, nil)
	if err != nil {
		return nil, err
	}
	return &provisioning.ActivateRequest{Version: provisioning.ProtocolVersion, SessionID: ch.SessionID, Secret: secret,
		CertifyInfo: attest, CertifySignature: sig}, nil
}
