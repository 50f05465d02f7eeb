package provisioning

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/provisioning/ekcert"
)

// EK certificate NV indices, TCG EK Credential Profile for TPM Family 2.0 v2.5 section 2.2.1.4 (low range)
// and 2.2.1.5 (high range). In the high range every even index is a certificate; the odd ones are reserved
// for templates.
const (
	NVEKCertRSA2048   = 0x01C00002 // low range: RSA-2048 EK certificate (template L-1)
	nvEKNonceRSA2048  = 0x01C00003 // low range: RSA-2048 EK nonce
	nvEKTmplRSA2048   = 0x01C00004 // low range: RSA-2048 EK template
	NVEKCertP256      = 0x01C0000A // low range: ECC P-256 EK certificate (template L-2)
	nvEKNonceP256     = 0x01C0000B // low range: ECC P-256 EK nonce
	nvEKTmplP256      = 0x01C0000C // low range: ECC P-256 EK template
	NVEKCertRSA2048H  = 0x01C00012 // high range: RSA-2048 (template H-1)
	NVEKCertP256H     = 0x01C00014 // high range: ECC P-256 (H-2)
	NVEKCertP384H     = 0x01C00016 // high range: ECC P-384 (H-3)
	NVEKCertP521H     = 0x01C00018 // high range: ECC P-521 (H-4)
	NVEKCertSM2H      = 0x01C0001A // high range: ECC SM2 P-256 (H-5)
	NVEKCertRSA3072H  = 0x01C0001C // high range: RSA-3072 (H-6)
	NVEKCertRSA4096H  = 0x01C0001E // high range: RSA-4096 (H-7)
	NVEKChainFirst    = 0x01C00100 // EK certificate chain, section 2.2.1.6: intermediates, leaf-most first
	NVEKChainLast     = 0x01C001FF
	maxEKTemplateSize = MaxPublicBytes
	maxEKNonceSize    = 64 // the nonce fills at most an ECC x coordinate or the start of an RSA modulus
)

// EKCertIndices are the EK certificate indices ReadEKCertificates looks at, low range first.
var EKCertIndices = []uint32{
	NVEKCertRSA2048, NVEKCertP256,
	NVEKCertRSA2048H, NVEKCertP256H, NVEKCertP384H, NVEKCertP521H, NVEKCertSM2H, NVEKCertRSA3072H, NVEKCertRSA4096H,
}

// NVCert is a certificate as read from an NV index: raw bytes, padding and headers included. Normalising
// is the CA's (and ekcert's) job.
type NVCert struct {
	Index uint32
	Data  []byte
}

// IsChain reports whether the certificate came from the EK chain range.
func (c NVCert) IsChain() bool { return c.Index >= NVEKChainFirst && c.Index <= NVEKChainLast }

// ReadEKCertificates reads every EK certificate the TPM carries: the low and high range certificate indices,
// then the chain range 0x01C00100-0x01C001FF. The indices are enumerated with TPM_CAP_HANDLES rather than
// probed. Absent and never-written indices are skipped. Each certificate is bounded by its index's dataSize
// and by MaxCertBytes.
func ReadEKCertificates(tpm transport.TPM) ([]NVCert, error) {
	bufMax, _, err := nvLimits(tpm)
	if err != nil {
		return nil, fmt.Errorf("reading EK certificates: %w", err)
	}
	present, chain, err := listEKIndices(tpm)
	if err != nil {
		return nil, err
	}
	return readEKCerts(tpm, append(present, chain...), bufMax)
}

// ReadChosenEKCert reads only what enrollment needs: the certificate ChooseEKCert picks among the ones the
// TPM carries (the one at index if index is not 0, else ECC before RSA, low range before high, of those
// whose EK has nameAlg) and the chain. The choice goes by index alone, so the certificates not chosen are
// never read: on a discrete chip each read is a few milliseconds.
func ReadChosenEKCert(tpm transport.TPM, nameAlg tpm2.TPMAlgID, index uint32) (ek NVCert, alg EKAlg, chain []NVCert, err error) {
	bufMax, _, err := nvLimits(tpm)
	if err != nil {
		return NVCert{}, "", nil, fmt.Errorf("reading EK certificates: %w", err)
	}
	present, chainIdx, err := listEKIndices(tpm)
	if err != nil {
		return NVCert{}, "", nil, err
	}
	cands := make([]NVCert, len(present))
	for i, idx := range present {
		cands[i] = NVCert{Index: idx}
	}
	for {
		c, a, err := ChooseEKCert(cands, nameAlg, index)
		if err != nil {
			return NVCert{}, "", nil, err
		}
		got, ok, err := readEKCert(tpm, c.Index, bufMax)
		if err != nil {
			return NVCert{}, "", nil, err
		}
		if ok {
			ek, alg = got, a
			break
		}
		// Defined but never written: as good as absent; the next candidate.
		cands = slices.DeleteFunc(cands, func(x NVCert) bool { return x.Index == c.Index })
	}
	if chain, err = readEKCerts(tpm, chainIdx, bufMax); err != nil {
		return NVCert{}, "", nil, err
	}
	return ek, alg, chain, nil
}

// readEKCerts reads the certificates at indices, skipping absent and never-written ones.
func readEKCerts(tpm transport.TPM, indices []uint32, bufMax int) ([]NVCert, error) {
	var out []NVCert
	for _, idx := range indices {
		c, ok, err := readEKCert(tpm, idx, bufMax)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, c)
		}
	}
	return out, nil
}

// listEKIndices lists the EK certificate indices (in EKCertIndices order) and the chain indices the TPM
// has defined.
func listEKIndices(tpm transport.TPM) (certs, chain []uint32, err error) {
	hs, err := listNV(tpm, nvEKRangeFirst, nvEKRangeLast)
	if err != nil {
		return nil, nil, fmt.Errorf("listing EK certificate indices: %w", err)
	}
	defined := make(map[uint32]bool, len(hs))
	for _, h := range hs {
		defined[uint32(h)] = true
		if uint32(h) >= NVEKChainFirst && uint32(h) <= NVEKChainLast {
			chain = append(chain, uint32(h))
		}
	}
	if len(chain) > MaxChainCerts {
		return nil, nil, fmt.Errorf("TPM lists %d EK chain certificates, more than the %d allowed", len(chain), MaxChainCerts)
	}
	for _, idx := range EKCertIndices {
		if defined[idx] {
			certs = append(certs, idx)
		}
	}
	return certs, chain, nil
}

// readEKCert reads the certificate at idx; ok is false when the index is absent or was never written.
func readEKCert(tpm transport.TPM, idx uint32, bufMax int) (c NVCert, ok bool, err error) {
	pub, name, err := nvPublic(tpm, idx)
	if errors.Is(err, ErrNVAbsent) {
		return NVCert{}, false, nil
	}
	if err != nil {
		return NVCert{}, false, fmt.Errorf("reading EK cert at NV %#x: %w", idx, err)
	}
	if !pub.Attributes.Written {
		return NVCert{}, false, nil
	}
	data, err := readNV(tpm, idx, pub, name, MaxCertBytes, bufMax)
	if err != nil {
		return NVCert{}, false, fmt.Errorf("reading EK cert at NV %#x: %w", idx, err)
	}
	return NVCert{Index: idx, Data: data}, true, nil
}

// EKAlg names an EK template of the TCG EK Credential Profile.
type EKAlg string

// EK templates this package can create.
const (
	EKRSA2048  EKAlg = "rsa2048"   // L-1, certificate at 0x01C00002
	EKP256     EKAlg = "p256"      // L-2, certificate at 0x01C0000A
	EKRSA2048H EKAlg = "rsa2048-h" // H-1, certificate at 0x01C00012
	EKP256H    EKAlg = "p256-h"    // H-2, certificate at 0x01C00014
	EKP384H    EKAlg = "p384-h"    // H-3, certificate at 0x01C00016
)

// EKAlgForIndex tells which EK a certificate index certifies; false for chain indices and for templates this
// package does not create (P-521, SM2, RSA-3072/4096).
func EKAlgForIndex(index uint32) (EKAlg, bool) {
	switch index {
	case NVEKCertRSA2048:
		return EKRSA2048, true
	case NVEKCertP256:
		return EKP256, true
	case NVEKCertRSA2048H:
		return EKRSA2048H, true
	case NVEKCertP256H:
		return EKP256H, true
	case NVEKCertP384H:
		return EKP384H, true
	}
	return "", false
}

// Auth policies of the high-range EK templates, TCG EK Credential Profile v2.5 section B.6:
// PolicyB = PolicyOR(PolicyA, PolicyC), PolicyA being TPM2_PolicySecret(TPM_RH_ENDORSEMENT). The low-range
// templates (and their PolicyA digest) come from go-tpm's RSAEKTemplate and ECCEKTemplate.
var (
	policyBSHA256 = []byte{
		0xCA, 0x3D, 0x0A, 0x99, 0xA2, 0xB9, 0x39, 0x06, 0xF7, 0xA3, 0x34, 0x24, 0x14, 0xEF, 0xCF, 0xB3,
		0xA3, 0x85, 0xD4, 0x4C, 0xD1, 0xFD, 0x45, 0x90, 0x89, 0xD1, 0x9B, 0x50, 0x71, 0xC0, 0xB7, 0xA0,
	}
	policyBSHA384 = []byte{
		0xB2, 0x6E, 0x7D, 0x28, 0xD1, 0x1A, 0x50, 0xBC, 0x53, 0xD8, 0x82, 0xBC, 0xF5, 0xFD, 0x3A, 0x1A,
		0x07, 0x41, 0x48, 0xBB, 0x35, 0xD3, 0xB4, 0xE4, 0xCB, 0x1C, 0x0A, 0xD9, 0xBD, 0xE4, 0x19, 0xCA,
		0xCB, 0x47, 0xBA, 0x09, 0x69, 0x96, 0x46, 0x15, 0x0F, 0x9F, 0xC0, 0x00, 0xF3, 0xF8, 0x0E, 0x12,
	}
)

// EKTemplate returns the default TCG template for alg (EK Credential Profile v2.5 Annex B.3 for the low
// range, B.4 for the high range). High range templates set userWithAuth with the PolicyB authPolicy and
// an empty unique field.
func EKTemplate(alg EKAlg) (tpm2.TPMTPublic, error) {
	switch alg {
	case EKRSA2048:
		return tpm2.RSAEKTemplate, nil
	case EKP256:
		return tpm2.ECCEKTemplate, nil
	}
	highAttrs := tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
		AdminWithPolicy: true, Restricted: true, Decrypt: true,
	}
	aes := func(bits tpm2.TPMKeyBits) tpm2.TPMTSymDefObject {
		return tpm2.TPMTSymDefObject{
			Algorithm: tpm2.TPMAlgAES,
			KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, bits),
			Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
		}
	}
	eccHigh := func(nameAlg tpm2.TPMAlgID, policy []byte, sym tpm2.TPMKeyBits, curve tpm2.TPMECCCurve) tpm2.TPMTPublic {
		return tpm2.TPMTPublic{
			Type: tpm2.TPMAlgECC, NameAlg: nameAlg, ObjectAttributes: highAttrs,
			AuthPolicy: tpm2.TPM2BDigest{Buffer: policy},
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Symmetric: aes(sym),
				Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
				CurveID:   curve,
				KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
		}
	}
	switch alg {
	case EKRSA2048H: // B.4.4.1 template H-1
		return tpm2.TPMTPublic{
			Type: tpm2.TPMAlgRSA, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: highAttrs,
			AuthPolicy: tpm2.TPM2BDigest{Buffer: policyBSHA256},
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Symmetric: aes(128),
				Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
				KeyBits:   2048,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
		}, nil
	case EKP256H: // B.4.5.1 template H-2
		return eccHigh(tpm2.TPMAlgSHA256, policyBSHA256, 128, tpm2.TPMECCNistP256), nil
	case EKP384H: // B.4.5.2 template H-3
		return eccHigh(tpm2.TPMAlgSHA384, policyBSHA384, 256, tpm2.TPMECCNistP384), nil
	}
	return tpm2.TPMTPublic{}, fmt.Errorf("unknown EK algorithm %q", alg)
}

// lowRangeNV gives the template and nonce indices a vendor may populate for a low range EK.
func lowRangeNV(alg EKAlg) (tmpl, nonce uint32, ok bool) {
	switch alg {
	case EKRSA2048:
		return nvEKTmplRSA2048, nvEKNonceRSA2048, true
	case EKP256:
		return nvEKTmplP256, nvEKNonceP256, true
	}
	return 0, 0, false
}

// ekTemplateFromNV builds the EK template the way EK Credential Profile v2.5 section 2.2.1.5.1 says: a
// template in NV replaces the default one; a nonce in NV goes at the start of the unique field (RSA: the
// modulus buffer, zero-padded to 256 bytes; ECC: x, zero-padded to 32 bytes, with a 32-byte zero y).
func ekTemplateFromNV(tpm transport.TPM, alg EKAlg) (tpm2.TPMTPublic, error) {
	t, err := EKTemplate(alg)
	if err != nil {
		return t, err
	}
	tmplIdx, nonceIdx, ok := lowRangeNV(alg)
	if !ok {
		return t, nil
	}
	raw, err := ReadNV(tpm, tmplIdx, maxEKTemplateSize)
	switch {
	case errors.Is(err, ErrNVAbsent), errors.Is(err, ErrNVEmpty):
	case err != nil:
		return t, fmt.Errorf("reading EK template at NV %#x: %w", tmplIdx, err)
	default:
		custom, err := DecodePublic(raw)
		if err != nil {
			return t, fmt.Errorf("parsing EK template at NV %#x: %w", tmplIdx, err)
		}
		if custom.Type != t.Type {
			return t, fmt.Errorf("EK template at NV %#x has key type %v, want %v", tmplIdx, custom.Type, t.Type)
		}
		t = *custom
	}
	nonce, err := ReadNV(tpm, nonceIdx, maxEKNonceSize)
	switch {
	case errors.Is(err, ErrNVAbsent), errors.Is(err, ErrNVEmpty):
		return t, nil
	case err != nil:
		return t, fmt.Errorf("reading EK nonce at NV %#x: %w", nonceIdx, err)
	}
	switch t.Type {
	case tpm2.TPMAlgRSA:
		buf := make([]byte, 256)
		if len(nonce) > len(buf) {
			return t, fmt.Errorf("EK nonce at NV %#x is %d bytes", nonceIdx, len(nonce))
		}
		copy(buf, nonce)
		t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: buf})
	case tpm2.TPMAlgECC:
		x := make([]byte, 32)
		if len(nonce) > len(x) {
			return t, fmt.Errorf("EK nonce at NV %#x is %d bytes", nonceIdx, len(nonce))
		}
		copy(x, nonce)
		t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: x},
			Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		})
	}
	return t, nil
}

// CreateEK creates the EK for alg as a primary of the endorsement hierarchy, from the template (and nonce)
// in NV where the vendor stored one, else from the TCG default template. The caller flushes the key.
func CreateEK(tpm transport.TPM, alg EKAlg) (*Key, error) {
	t, err := ekTemplateFromNV(tpm, alg)
	if err != nil {
		return nil, fmt.Errorf("creating EK (%s): %w", alg, err)
	}
	k, err := createPrimary(tpm, tpm2.TPMRHEndorsement, t)
	if err != nil {
		return nil, fmt.Errorf("creating EK (%s): %w", alg, err)
	}
	return k, nil
}

// CheckEKMatchesCert checks that the certificate read from NV certifies the TPM's EK: RSA modulus and
// exponent, or ECC curve and point, must be equal (ekcert.MatchPublic; a difference matches
// ekcert.ErrMismatch). The station runs it early so a swapped or mis-programmed TPM stops at the line, not
// at the CA, which checks again and owns the verdict on the certificate itself. The key is read with
// ekcert.PublicKey: the CA's normaliser (NV header, padding, OCTET STRING wrapper, and nothing else), so the
// station refuses exactly the encodings the CA refuses, while leaving x509 quirks of the certificate body
// to the CA.
func CheckEKMatchesCert(cert []byte, ek *tpm2.TPMTPublic) error {
	if ek == nil {
		return errors.New("checking EK against its certificate: no EK public area")
	}
	key, _, err := ekcert.PublicKey(cert)
	if err != nil {
		return fmt.Errorf("EK certificate: %w", err)
	}
	if err := ekcert.MatchPublic(&x509.Certificate{PublicKey: key}, ek); err != nil {
		return fmt.Errorf("the TPM's EK is not the key in its EK certificate: %w", err)
	}
	return nil
}

// ErrNoEKCert matches the error of ChooseEKCert and ReadChosenEKCert when the TPM carries no certificate
// the station can enroll with (as opposed to a TPM that failed to answer).
var ErrNoEKCert = errors.New("no usable EK certificate")

type noEKCert string

func (e noEKCert) Error() string        { return string(e) }
func (e noEKCert) Is(target error) bool { return target == ErrNoEKCert }

// ChooseEKCert picks the EK certificate to enroll with: the one at index if index is not 0, else the first
// certificate whose EK template has the name algorithm nameAlg, ECC before RSA, low range before high.
func ChooseEKCert(certs []NVCert, nameAlg tpm2.TPMAlgID, index uint32) (NVCert, EKAlg, error) {
	type cand struct {
		c    NVCert
		alg  EKAlg
		rank int
	}
	var cands []cand
	for _, c := range certs {
		alg, ok := EKAlgForIndex(c.Index)
		if !ok || (index != 0 && c.Index != index) {
			continue
		}
		t, err := EKTemplate(alg)
		if err != nil || t.NameAlg != nameAlg {
			continue
		}
		rank := 0
		if t.Type == tpm2.TPMAlgRSA {
			rank = 1
		}
		cands = append(cands, cand{c, alg, rank})
	}
	if len(cands) == 0 {
		if index != 0 {
			return NVCert{}, "", noEKCert(fmt.Sprintf("no usable EK certificate at NV %#x with name algorithm %v", index, nameAlg))
		}
		return NVCert{}, "", noEKCert(fmt.Sprintf("no EK certificate whose EK has name algorithm %v (found %d certificates); the IAK needs the EK's name algorithm", nameAlg, len(certs)))
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].rank < cands[j].rank })
	return cands[0].c, cands[0].alg, nil
}
