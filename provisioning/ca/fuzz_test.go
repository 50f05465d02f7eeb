package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/provisioning"
)

func FuzzDecodeEnroll(f *testing.F) {
	seed, _ := json.Marshal(&provisioning.EnrollRequest{Version: 1, Serial: "SN-1", Product: "p", EKCert: []byte{0x30, 0x82}, EKChain: [][]byte{{1}}, EKPublic: []byte{0, 1}, IAKPublic: []byte{2}, IDevIDPublic: []byte{3}, TPM: provisioning.TPMInfo{Manufacturer: "IFX"}})
	f.Add(seed)
	f.Add([]byte(`{"version":1}{}`))
	f.Add([]byte(`{"version":1,"x":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"ek_chain":[null,"AA=="]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeEnroll(body)
		if err != nil {
			if _, ok := err.(*provisioning.Error); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if err := checkEnrollFields(req); err == nil {
			// Whatever passed the field checks parses without panicking.
			for _, b := range [][]byte{req.EKPublic, req.IAKPublic, req.IDevIDPublic} {
				parsePublic("x", b)
			}
		}
	})
}

// FuzzRevokeBoard: a station's revoke body, decoded strictly and bounded: every refusal is a protocol
// error, and what passes names a serial the enrollment would accept and a reason a full CRL carries.
func FuzzRevokeBoard(f *testing.F) {
	f.Add([]byte(`{"serial":"SN-1","reason":5}`))
	f.Add([]byte(`{"serial":"SN-1","reason":8}`))
	f.Add([]byte(`{"serial":"SN\u0000","reason":0}`))
	f.Add([]byte(`{"serial":"SN-1","reason":1,"x":1}`))
	f.Add([]byte(`{"serial":"SN-1"}{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req provisioning.RevokeBoardRequest
		err := decodeJSON(bytes.NewReader(body), &req)
		if err == nil {
			err = checkRevokeFields(&req)
		}
		if err != nil {
			if _, ok := err.(*provisioning.Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if CheckSerial(req.Serial) != nil || len(req.Serial) > provisioning.MaxSerialLen || req.Reason < 0 || req.Reason > 10 ||
			req.Reason == 7 || req.Reason == 8 {
			t.Fatalf("accepted %+v", req)
		}
	})
}

func FuzzDecodeActivate(f *testing.F) {
	seed, _ := json.Marshal(&provisioning.ActivateRequest{Version: 1, SessionID: "00ff", Secret: make([]byte, 32), CertifyInfo: []byte{0xff, 0x54, 0x43, 0x47}, CertifySignature: []byte{0, 0x18}})
	f.Add(seed)
	f.Add([]byte(`{"version":1,"session_id":"` + "\u0000" + `"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeActivate(body)
		if err != nil {
			if _, ok := err.(*provisioning.Error); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if checkActivateFields(req) == nil {
			parseCertify(req.CertifyInfo)
			parseSignature(req.CertifySignature)
		}
	})
}

// fuzzIAK is a fixed software IAK and a valid attestation/signature pair made with it.
func fuzzIAK(t testing.TB) (*keyAlgorithm, []byte, []byte) {
	t.Helper()
	sk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	at := tpm2.TPMSAttest{
		Magic: tpm2.TPMGeneratedValue, Type: tpm2.TPMSTAttestCertify,
		QualifiedSigner: tpm2.TPM2BName{Buffer: make([]byte, 34)},
		ExtraData:       tpm2.TPM2BData{Buffer: make([]byte, 32)},
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{
			Name: tpm2.TPM2BName{Buffer: make([]byte, 34)}, QualifiedName: tpm2.TPM2BName{Buffer: make([]byte, 34)},
		}),
	}
	attest := tpm2.Marshal(at)
	d := sha256.Sum256(attest)
	r, s, err := ecdsa.Sign(rand.Reader, sk, d[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := tpm2.Marshal(tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
		Hash: tpm2.TPMAlgSHA256, SignatureR: tpm2.TPM2BECCParameter{Buffer: r.FillBytes(make([]byte, 32))}, SignatureS: tpm2.TPM2BECCParameter{Buffer: s.FillBytes(make([]byte, 32))},
	})})
	return &keyAlgorithm{Public: &sk.PublicKey, Scheme: tpm2.TPMAlgECDSA, Hash: tpm2.TPMAlgSHA256}, attest, sig
}

func TestFuzzSeedVerifies(t *testing.T) {
	key, attest, sig := fuzzIAK(t)
	ev, err := parseCertify(attest)
	if err != nil {
		t.Fatal(err)
	}
	s, err := parseSignature(sig)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifySignature(key, attest, s); err != nil {
		t.Fatal(err)
	}
	if len(ev.Name) != 34 {
		t.Fatal("name")
	}
}

func FuzzParseAttest(f *testing.F) {
	key, attest, sig := fuzzIAK(f)
	f.Add(attest, sig)
	f.Add(attest[:10], sig[:5])
	f.Add(append(attest, 0), append(sig, 0))
	f.Fuzz(func(t *testing.T, attest, sig []byte) {
		if _, err := parseCertify(attest); err != nil {
			return
		}
		s, err := parseSignature(sig)
		if err != nil {
			return
		}
		verifySignature(key, attest, s)
	})
}

func FuzzParsePublic(f *testing.F) {
	for _, alg := range []provisioning.KeyAlg{provisioning.KeyRSA2048, provisioning.KeyP256, provisioning.KeyP384} {
		for _, tmpl := range []func(provisioning.KeyAlg) (tpm2.TPMTPublic, error){provisioning.IAKTemplate, provisioning.IDevIDTemplate} {
			p, err := tmpl(alg)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(tpm2.Marshal(p))
		}
	}
	f.Add(tpm2.Marshal(tpm2.RSAEKTemplate))
	f.Add(tpm2.Marshal(tpm2.ECCEKTemplate))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePublic("x", b)
		if err != nil {
			return
		}
		checkIAK(p, b, p)
		checkIDevID(p, b)
		checkEKPublic(p)
		// The Name from the raw bytes is the Name go-tpm computes by marshalling again.
		if n, err := objectName(p, b); err == nil {
			want, err := tpm2.ObjectName(p)
			if err != nil || !bytes.Equal(n, want.Buffer) {
				t.Fatalf("Name %x, go-tpm %x (%v)", n, want.Buffer, err)
			}
		}
		publicKey(b)
	})
}

// decodeBody decodes a request body held in memory as the server does (the fuzz targets' entry).
func decodeBody[T any](body []byte) (*T, error) {
	if len(body) > provisioning.MaxRequestBytes {
		return nil, provisioning.Errorf(provisioning.CodeTooLarge, "request body is over the %d-byte bound", provisioning.MaxRequestBytes)
	}
	var req T
	if err := decodeJSON(bytes.NewReader(body), &req); err != nil {
		return nil, err
	}
	return &req, nil
}

func decodeEnroll(body []byte) (*provisioning.EnrollRequest, error) {
	return decodeBody[provisioning.EnrollRequest](body)
}

func decodeActivate(body []byte) (*provisioning.ActivateRequest, error) {
	return decodeBody[provisioning.ActivateRequest](body)
}
