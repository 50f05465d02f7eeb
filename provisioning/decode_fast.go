package provisioning

import (
	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/internal/tpmwire"
)

// Direct decoders for the three TPM structures every enrollment submits: TPMT_PUBLIC (RSA and ECC keys),
// TPMS_ATTEST of TPM2_Certify and TPMT_SIGNATURE (RSASSA, RSAPSS, ECDSA), the fast path of DecodePublic,
// DecodeAttest and DecodeSignature. go-tpm decodes by reflection and strictUnmarshal marshals the result
// again to prove the input canonical; together that was a fifth of the CA's CPU per enrollment (and the
// station's per TPM answer).
//
// Each decoder understands only the shapes tpmline's boards produce and reports ok=false for anything else,
// malformed input included; the caller then takes go-tpm's strict path, which stays the one authority on
// errors and on every other shape. A decoder succeeds only when it has consumed every byte into a field that
// marshals back to exactly that byte (fixed-width integers, sized buffers, attribute bits go-tpm names,
// TPMI_YES_NO as 0 or 1), so what it accepts is canonical by construction. The differential fuzz test
// (FuzzTPMDecodersMatchGoTPM) holds them to go-tpm: whatever they accept, go-tpm's strict path accepts
// too, with the same value.

// fastHash: the hash algorithms the fast paths accept in a hash field (TCG Algorithm Registry).
func fastHash(h tpm2.TPMAlgID) bool {
	switch h {
	case tpm2.TPMAlgSHA1, tpm2.TPMAlgSHA256, tpm2.TPMAlgSHA384, tpm2.TPMAlgSHA512:
		return true
	}
	return false
}

// objectAttributeBits are the TPMA_OBJECT bits go-tpm names (TPM 2.0 Part 2, 8.3.2); the others are
// reserved and left to go-tpm.
const objectAttributeBits = 1<<1 | 1<<2 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<10 | 1<<11 | 1<<16 | 1<<17 | 1<<18 | 1<<19

func objectAttributes(a uint32) tpm2.TPMAObject {
	bit := func(n uint) bool { return a&(1<<n) != 0 }
	return tpm2.TPMAObject{
		FixedTPM: bit(1), STClear: bit(2), FixedParent: bit(4), SensitiveDataOrigin: bit(5), UserWithAuth: bit(6),
		AdminWithPolicy: bit(7), FirmwareLimited: bit(8), NoDA: bit(10), EncryptedDuplication: bit(11),
		Restricted: bit(16), Decrypt: bit(17), SignEncrypt: bit(18), X509Sign: bit(19),
	}
}

// symDefObject reads a TPMT_SYM_DEF_OBJECT (Part 2, 11.1.7): TPM_ALG_NULL, or AES with a key size and a
// mode. The AES details union holds nothing on the wire (TPMS_EMPTY); it is left empty here.
func symDefObject(r *tpmwire.Reader) (tpm2.TPMTSymDefObject, bool) {
	switch alg := tpm2.TPMAlgID(r.U16()); alg {
	case tpm2.TPMAlgNull:
		return tpm2.TPMTSymDefObject{Algorithm: alg}, true
	case tpm2.TPMAlgAES:
		bits := tpm2.TPMKeyBits(r.U16())
		mode := tpm2.TPMAlgID(r.U16())
		return tpm2.TPMTSymDefObject{
			Algorithm: alg,
			KeyBits:   tpm2.NewTPMUSymKeyBits(alg, bits),
			Mode:      tpm2.NewTPMUSymMode(alg, mode),
		}, true
	}
	return tpm2.TPMTSymDefObject{}, false
}

// decodePublicFast decodes a TPMT_PUBLIC (Part 2, 12.2.4) of an RSA or ECC key with a NULL or AES
// symmetric definition, a NULL, RSASSA, RSAPSS or ECDSA scheme and a NULL KDF; ok=false otherwise.
func decodePublicFast(b []byte) (pub *tpm2.TPMTPublic, ok bool) {
	r := tpmwire.NewReader(b)
	typ := tpm2.TPMAlgID(r.U16())
	nameAlg := tpm2.TPMAlgID(r.U16())
	attrs := r.U32()
	if r.Err() != nil || !fastHash(nameAlg) || attrs&^uint32(objectAttributeBits) != 0 {
		return nil, false
	}
	pub = &tpm2.TPMTPublic{Type: typ, NameAlg: nameAlg, ObjectAttributes: objectAttributes(attrs), AuthPolicy: tpm2.TPM2BDigest{Buffer: r.TPM2B()}}
	sym, ok := symDefObject(r)
	if !ok {
		return nil, false
	}
	switch typ {
	case tpm2.TPMAlgRSA:
		scheme := tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgID(r.U16())}
		switch scheme.Scheme {
		case tpm2.TPMAlgNull:
		case tpm2.TPMAlgRSASSA:
			scheme.Details = tpm2.NewTPMUAsymScheme(scheme.Scheme, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgID(r.U16())})
		case tpm2.TPMAlgRSAPSS:
			scheme.Details = tpm2.NewTPMUAsymScheme(scheme.Scheme, &tpm2.TPMSSigSchemeRSAPSS{HashAlg: tpm2.TPMAlgID(r.U16())})
		default:
			return nil, false
		}
		parms := &tpm2.TPMSRSAParms{Symmetric: sym, Scheme: scheme, KeyBits: tpm2.TPMKeyBits(r.U16()), Exponent: r.U32()}
		pub.Parameters = tpm2.NewTPMUPublicParms(typ, parms)
		pub.Unique = tpm2.NewTPMUPublicID(typ, &tpm2.TPM2BPublicKeyRSA{Buffer: r.TPM2B()})
	case tpm2.TPMAlgECC:
		scheme := tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgID(r.U16())}
		switch scheme.Scheme {
		case tpm2.TPMAlgNull:
		case tpm2.TPMAlgECDSA:
			scheme.Details = tpm2.NewTPMUAsymScheme(scheme.Scheme, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgID(r.U16())})
		default:
			return nil, false
		}
		curve := tpm2.TPMECCCurve(r.U16())
		kdf := tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgID(r.U16())}
		if kdf.Scheme != tpm2.TPMAlgNull {
			return nil, false
		}
		pub.Parameters = tpm2.NewTPMUPublicParms(typ, &tpm2.TPMSECCParms{Symmetric: sym, Scheme: scheme, CurveID: curve, KDF: kdf})
		x := r.TPM2B()
		y := r.TPM2B()
		pub.Unique = tpm2.NewTPMUPublicID(typ, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: x}, Y: tpm2.TPM2BECCParameter{Buffer: y}})
	default:
		return nil, false
	}
	if !r.End() {
		return nil, false
	}
	return pub, true
}

// decodeCertifyFast decodes a TPMS_ATTEST (Part 2, 10.12.12) of type TPM_ST_ATTEST_CERTIFY with the
// TPM_GENERATED magic; ok=false otherwise (parseCertify's go-tpm path then names what is wrong).
func decodeCertifyFast(b []byte) (at *tpm2.TPMSAttest, ok bool) {
	r := tpmwire.NewReader(b)
	at = &tpm2.TPMSAttest{
		Magic:           tpm2.TPMGenerated(r.U32()),
		Type:            tpm2.TPMST(r.U16()),
		QualifiedSigner: tpm2.TPM2BName{Buffer: r.TPM2B()},
		ExtraData:       tpm2.TPM2BData{Buffer: r.TPM2B()},
	}
	at.ClockInfo = tpm2.TPMSClockInfo{Clock: r.U64(), ResetCount: r.U32(), RestartCount: r.U32()}
	switch r.U8() { // TPMI_YES_NO (Part 2, 9.2): 0 or 1, nothing else marshals back the same
	case 0:
	case 1:
		at.ClockInfo.Safe = true
	default:
		return nil, false
	}
	at.FirmwareVersion = r.U64()
	if r.Err() != nil || at.Magic != tpm2.TPMGeneratedValue || at.Type != tpm2.TPMSTAttestCertify {
		return nil, false
	}
	name := r.TPM2B()
	qualified := r.TPM2B()
	if !r.End() {
		return nil, false
	}
	at.Attested = tpm2.NewTPMUAttest(at.Type, &tpm2.TPMSCertifyInfo{Name: tpm2.TPM2BName{Buffer: name}, QualifiedName: tpm2.TPM2BName{Buffer: qualified}})
	return at, true
}

// decodeSignatureFast decodes a TPMT_SIGNATURE (Part 2, 11.3.4) of scheme RSASSA, RSAPSS or ECDSA;
// ok=false otherwise.
func decodeSignatureFast(b []byte) (sig *tpm2.TPMTSignature, ok bool) {
	r := tpmwire.NewReader(b)
	sig = &tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgID(r.U16())}
	switch sig.SigAlg {
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		s := &tpm2.TPMSSignatureRSA{Hash: tpm2.TPMAlgID(r.U16())}
		s.Sig = tpm2.TPM2BPublicKeyRSA{Buffer: r.TPM2B()}
		sig.Signature = tpm2.NewTPMUSignature(sig.SigAlg, s)
	case tpm2.TPMAlgECDSA:
		s := &tpm2.TPMSSignatureECC{Hash: tpm2.TPMAlgID(r.U16())}
		s.SignatureR = tpm2.TPM2BECCParameter{Buffer: r.TPM2B()}
		s.SignatureS = tpm2.TPM2BECCParameter{Buffer: r.TPM2B()}
		sig.Signature = tpm2.NewTPMUSignature(sig.SigAlg, s)
	default:
		return nil, false
	}
	if !r.End() {
		return nil, false
	}
	return sig, true
}
