package provisioning

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// decoderSeeds are the structures boards submit: every EK, IAK and IDevID template tpmline uses, with a
// unique field of full length, and a certify attestation and signature.
func decoderSeeds(t testing.TB) (publics, attests, sigs [][]byte) {
	t.Helper()
	fill := func(pub tpm2.TPMTPublic) []byte {
		switch pub.Type {
		case tpm2.TPMAlgRSA:
			pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: bytes.Repeat([]byte{0xa5}, 256)})
		case tpm2.TPMAlgECC:
			pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)}, Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)}})
		}
		return tpm2.Marshal(pub)
	}
	for _, alg := range []EKAlg{EKRSA2048, EKP256} {
		tmpl, err := EKTemplate(alg)
		if err != nil {
			t.Fatal(err)
		}
		publics = append(publics, tpm2.Marshal(tmpl), fill(tmpl))
	}
	for _, alg := range []KeyAlg{KeyRSA2048, KeyP256, KeyP384} {
		for _, mk := range []func(KeyAlg) (tpm2.TPMTPublic, error){IAKTemplate, IDevIDTemplate} {
			tmpl, err := mk(alg)
			if err != nil {
				t.Fatal(err)
			}
			publics = append(publics, tpm2.Marshal(tmpl), fill(tmpl))
		}
	}
	attest, sig := certifySeed()
	rsaSig := tpm2.Marshal(tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgRSASSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA,
		&tpm2.TPMSSignatureRSA{Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: make([]byte, 256)}})})
	return publics, [][]byte{attest}, [][]byte{sig, rsaSig}
}

// certifySeed is a TPM2_Certify attestation and an ECDSA P-256 signature shaped as a TPM produces them:
// SHA-256 Names, a 32-byte nonce, coordinates of full length.
func certifySeed() (attest, sig []byte) {
	name := func(b byte) tpm2.TPM2BName {
		return tpm2.TPM2BName{Buffer: append([]byte{0x00, 0x0b}, bytes.Repeat([]byte{b}, 32)...)}
	}
	attest = tpm2.Marshal(tpm2.TPMSAttest{
		Magic: tpm2.TPMGeneratedValue, Type: tpm2.TPMSTAttestCertify,
		QualifiedSigner: name(1), ExtraData: tpm2.TPM2BData{Buffer: bytes.Repeat([]byte{2}, 32)},
		ClockInfo:       tpm2.TPMSClockInfo{Clock: 123456, ResetCount: 1, RestartCount: 2, Safe: true},
		FirmwareVersion: 0x2019_0815_0000_0001,
		Attested:        tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{Name: name(3), QualifiedName: name(4)}),
	})
	sig = tpm2.Marshal(tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA,
		&tpm2.TPMSSignatureECC{Hash: tpm2.TPMAlgSHA256, SignatureR: tpm2.TPM2BECCParameter{Buffer: bytes.Repeat([]byte{5}, 32)},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: bytes.Repeat([]byte{6}, 32)}})})
	return attest, sig
}

// clearSymDetails empties the details union of an AES symmetric definition: TPMS_EMPTY on the wire, which
// go-tpm's public API cannot build (NewTPMUSymDetails returns another type) and nothing reads.
func clearSymDetails(p *tpm2.TPMTPublic) {
	if d, err := p.Parameters.RSADetail(); err == nil && p.Type == tpm2.TPMAlgRSA {
		d.Symmetric.Details = tpm2.TPMUSymDetails{}
	}
	if d, err := p.Parameters.ECCDetail(); err == nil && p.Type == tpm2.TPMAlgECC {
		d.Symmetric.Details = tpm2.TPMUSymDetails{}
	}
}

// checkDecoders holds the direct decoders to go-tpm's strict path on b: what a direct decoder accepts,
// go-tpm accepts with an equal value, and that value marshals back to b.
func checkDecoders(t *testing.T, b []byte) {
	if pub, ok := decodePublicFast(b); ok {
		slow, err := strictUnmarshal[tpm2.TPMTPublic](b)
		if err != nil {
			t.Fatalf("TPMT_PUBLIC %x: direct decoder accepts, go-tpm refuses: %v", b, err)
		}
		if !bytes.Equal(tpm2.Marshal(*pub), b) {
			t.Fatalf("TPMT_PUBLIC %x: direct decoding marshals to %x", b, tpm2.Marshal(*pub))
		}
		clearSymDetails(pub)
		clearSymDetails(slow)
		if !reflect.DeepEqual(pub, slow) {
			t.Fatalf("TPMT_PUBLIC %x: direct %+v, go-tpm %+v", b, pub, slow)
		}
	}
	if at, ok := decodeCertifyFast(b); ok {
		slow, err := strictUnmarshal[tpm2.TPMSAttest](b)
		if err != nil {
			t.Fatalf("TPMS_ATTEST %x: direct decoder accepts, go-tpm refuses: %v", b, err)
		}
		if !reflect.DeepEqual(at, slow) {
			t.Fatalf("TPMS_ATTEST %x: direct %+v, go-tpm %+v", b, at, slow)
		}
	}
	if sig, ok := decodeSignatureFast(b); ok {
		slow, err := strictUnmarshal[tpm2.TPMTSignature](b)
		if err != nil {
			t.Fatalf("TPMT_SIGNATURE %x: direct decoder accepts, go-tpm refuses: %v", b, err)
		}
		if !reflect.DeepEqual(sig, slow) {
			t.Fatalf("TPMT_SIGNATURE %x: direct %+v, go-tpm %+v", b, sig, slow)
		}
	}
}

// FuzzTPMDecodersMatchGoTPM is the differential fuzz test of the direct decoders against go-tpm.
func FuzzTPMDecodersMatchGoTPM(f *testing.F) {
	publics, attests, sigs := decoderSeeds(f)
	for _, set := range [][][]byte{publics, attests, sigs} {
		for _, b := range set {
			f.Add(b)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0x23})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > MaxPublicBytes+MaxAttestBytes {
			return
		}
		checkDecoders(t, b)
	})
}

// TestDecodersTakeBoardShapes: what boards submit takes the direct path, and each seed agrees with go-tpm.
// Every truncation and every trailing byte is refused by the direct path (go-tpm then names the error).
func TestDecodersTakeBoardShapes(t *testing.T) {
	publics, attests, sigs := decoderSeeds(t)
	for _, c := range []struct {
		name   string
		inputs [][]byte
		decode func([]byte) bool
	}{
		{"TPMT_PUBLIC", publics, func(b []byte) bool { _, ok := decodePublicFast(b); return ok }},
		{"TPMS_ATTEST", attests, func(b []byte) bool { _, ok := decodeCertifyFast(b); return ok }},
		{"TPMT_SIGNATURE", sigs, func(b []byte) bool { _, ok := decodeSignatureFast(b); return ok }},
	} {
		for i, b := range c.inputs {
			if !c.decode(b) {
				t.Errorf("%s seed %d (%x) does not take the direct path", c.name, i, b)
			}
			checkDecoders(t, b)
			for n := range len(b) {
				if c.decode(b[:n]) {
					t.Errorf("%s seed %d accepted truncated to %d bytes", c.name, i, n)
				}
			}
			if c.decode(append(bytes.Clone(b), 0)) {
				t.Errorf("%s seed %d accepted with a trailing byte", c.name, i)
			}
		}
	}
	// A reserved TPMA_OBJECT bit and an out-of-range TPMI_YES_NO are left to go-tpm's path.
	reserved := bytes.Clone(publics[0])
	reserved[7] |= 1 // bit 0 of objectAttributes: reserved
	if _, ok := decodePublicFast(reserved); ok {
		t.Error("reserved attribute bit decoded directly")
	}
	unsafe := bytes.Clone(attests[0])
	unsafe[4+2+2+34+2+32+8+4+4] = 2 // clockInfo.safe
	if _, ok := decodeCertifyFast(unsafe); ok {
		t.Error("TPMI_YES_NO 2 decoded directly")
	}
	checkDecoders(t, unsafe)
}
