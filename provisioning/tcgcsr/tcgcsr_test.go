package tcgcsr_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/internal/tpmwire"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/tcgcsr"
)

func readST(t testing.TB) (content, sig []byte) {
	t.Helper()
	content, err := os.ReadFile("testdata/st-csr_contents.bin")
	if err != nil {
		t.Fatal(err)
	}
	sig, err = os.ReadFile("testdata/st-idevid_signature_csr.bin")
	if err != nil {
		t.Fatal(err)
	}
	return content, sig
}

// TestSTVector parses the content an ST33 TPM made (openconfig/attestz's test vector), checks its fields
// and, independently of the CA's code, that the IDevID's signature verifies over it and the IAK's over the
// certify information: the layout and the signed bytes are the ones a real TPM vendor's tool uses.
func TestSTVector(t *testing.T) {
	content, sig := readST(t)
	csr, err := tcgcsr.Parse(tcgcsr.Envelope(content, sig))
	if err != nil {
		t.Fatal(err)
	}
	c := csr.Content
	if c.HashAlg != tpm2.TPMAlgSHA384 || c.ProdModel != "DCS-7001-SUP-L" || len(c.ProdSerial) != 11 || len(c.Pad) != 9 {
		t.Fatalf("hash %#x, model %q, serial %q, pad %d", c.HashAlg, c.ProdModel, c.ProdSerial, len(c.Pad))
	}
	if len(c.AtCreateTkt)+len(c.AtCertifyInfo)+len(c.AtCertifyInfoSignature)+len(c.ProdCAData)+len(c.BootEventLog) != 0 {
		t.Fatal("optional fields are not empty")
	}
	ek, err := x509.ParseCertificate(c.EKCert)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ek.Issuer.String(), "STM") {
		t.Fatalf("EK issuer %s", ek.Issuer)
	}
	verifyECDSA384(t, "IDevID over the content", c.SigningPub, content, csr.Signature)
	verifyECDSA384(t, "IAK over sgnCertifyInfo", c.AttestPub, c.SgnCertifyInfo, c.SgnCertifyInfoSignature)
	// The certify names the IDevID.
	at, err := provisioning.ParseCertifyInfo(c.SgnCertifyInfo)
	if err != nil {
		t.Fatal(err)
	}
	name, err := provisioning.PublicName(c.SigningPub)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(at.Certify.Name.Buffer, name.Buffer) {
		t.Fatal("sgnCertifyInfo does not name signingPub")
	}
}

func verifyECDSA384(t *testing.T, what string, pubArea, msg, sigBytes []byte) {
	t.Helper()
	key, err := tpmwire.PublicKey(pubArea)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](sigBytes)
	if err != nil {
		t.Fatal(err)
	}
	e, err := sig.Signature.ECDSA()
	if err != nil {
		t.Fatal(err)
	}
	d := sha512.Sum384(msg)
	if !ecdsa.Verify(key.(*ecdsa.PublicKey), d[:], new(big.Int).SetBytes(e.SignatureR.Buffer), new(big.Int).SetBytes(e.SignatureS.Buffer)) {
		t.Fatalf("%s: signature does not verify", what)
	}
}

// TestBuildParse builds a CSR in the simulator for each key algorithm and parses it back.
func TestBuildParse(t *testing.T) {
	tpm, err := fixtures.Open("sim")
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()
	for _, alg := range []provisioning.KeyAlg{provisioning.KeyP256, provisioning.KeyRSA2048, provisioning.KeyP384} {
		t.Run(string(alg), func(t *testing.T) {
			if err := provisioning.FlushTransients(tpm); err != nil {
				t.Fatal(err)
			}
			iak, err := provisioning.CreateIAK(tpm, alg)
			if err != nil {
				t.Fatal(err)
			}
			idevid, err := provisioning.CreateIDevID(tpm, alg)
			if err != nil {
				t.Fatal(err)
			}
			content, _ := readST(t)
			ekDER := content[137 : 137+1033] // any DER certificate: the parser does not judge it
			raw, err := tcgcsr.Build(tpm, tcgcsr.Board{Model: "widget-1", Serial: "SN-CSR-1", EKCert: ekDER}, iak, idevid)
			if err != nil {
				t.Fatal(err)
			}
			csr, err := tcgcsr.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(csr.ContentBytes)%16 != 0 {
				t.Fatalf("content is %d bytes, not a multiple of 16", len(csr.ContentBytes))
			}
			if csr.ProdModel != "widget-1" || csr.ProdSerial != "SN-CSR-1" || !bytes.Equal(csr.EKCert, ekDER) ||
				!bytes.Equal(csr.AttestPub, iak.PublicBytes) || !bytes.Equal(csr.SigningPub, idevid.PublicBytes) {
				t.Fatal("fields differ from what was built")
			}
			want := tpm2.TPMAlgSHA256
			if alg == provisioning.KeyP384 {
				want = tpm2.TPMAlgSHA384
			}
			if csr.HashAlg != want {
				t.Fatalf("hashAlgoId %#x, want %#x", csr.HashAlg, want)
			}
			again, err := csr.Content.Marshal()
			if err != nil || !bytes.Equal(again, csr.ContentBytes) {
				t.Fatalf("content does not marshal back to itself: %v", err)
			}
		})
	}
}

// Offsets in the ST content: 3 words and the 48-byte hash, then the 13 size words.
const (
	stSizes = 12 + 48
	stPad   = stSizes + 12*4
)

func put32(b []byte, off int, v uint32) []byte {
	out := append([]byte(nil), b...)
	binary.BigEndian.PutUint32(out[off:], v)
	return out
}

// rehash recomputes the content hash so a test reaches the check after it.
func rehash(b []byte) []byte {
	out := append([]byte(nil), b...)
	d := sha512.Sum384(out[stSizes:])
	copy(out[12:stSizes], d[:])
	return out
}

// TestParseRefuses: one case per check of Parse and ParseContent, each on the ST vector with one thing
// changed, each refused with its own reason.
func TestParseRefuses(t *testing.T) {
	content, sig := readST(t)
	env := func(c []byte) []byte { return tcgcsr.Envelope(c, sig) }
	ok := env(content)
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "truncated at structVer"},
		{"too large", make([]byte, tcgcsr.MaxBytes+1), "over the"},
		{"envelope version", put32(ok, 0, 0x200), "structVer 0x00000200"},
		{"content size past the end", put32(ok, 4, uint32(len(content)+1)), "past the end"},
		{"zero signature size", put32(ok, 8, 0), "sigSz 0"},
		{"signature size over bound", put32(ok, 8, 5000), "sigSz 5000"},
		{"trailing bytes", append(append([]byte(nil), ok...), 0), "trailing bytes after the signature"},
		{"signature not a TPMT_SIGNATURE", tcgcsr.Envelope(content, []byte{0xff, 0xff, 0, 0}), "signature:"},
		{"content version", env(put32(content, 0, 0x101)), "content structVer"},
		{"hash algorithm", env(put32(content, 4, 0x0004)), "not SHA-256"},
		{"hashAlgoId over 16 bits", env(put32(content, 4, 0x1000c)), "not a TPM_ALG_ID"},
		{"hash size", env(put32(content, 8, 32)), "hashSz 32"},
		{"hash", env(func() []byte { c := append([]byte(nil), content...); c[13] ^= 1; return c }()), "hash does not match"},
		{"model over bound", env(rehash(put32(content, stSizes, 65))), "prodModel is 65 bytes"},
		{"empty model", env(rehash(put32(content, stSizes, 0))), "prodModel is empty"},
		{"EK cert over bound", env(rehash(put32(content, stSizes+4*4, 5000))), "ekCert is 5000 bytes"},
		{"field past the end", env(rehash(put32(content, stSizes+4*4, 4000))), "past the end"},
		{"pad over 15", env(rehash(put32(content, stPad, 16))), "padSz 16"},
		{"trailing after pad", env(rehash(put32(content, stPad, 8))), "trailing bytes after the pad"},
		{"partial IAK certification", env(rehash(func() []byte {
			c := put32(content, stSizes+6*4, 1)  // atCreateTkt 1 byte...
			return put32(c, stSizes+4*4, 1033-1) // ...taken from the EK certificate
		}())), "not all present"},
		{"attestPub not a TPMT_PUBLIC", env(rehash(func() []byte {
			c := append([]byte(nil), content...)
			c[137+1033] = 0xff // attestPub's type
			return c
		}())), "attestPub:"},
		{"sgnCertifyInfo not a TPMS_ATTEST", env(rehash(func() []byte {
			c := append([]byte(nil), content...)
			at := 137 + 1033 + 0xa8*2
			c[at+4], c[at+5] = 0xff, 0xff // its type: no TPMI_ST_ATTEST
			return c
		}())), "sgnCertifyInfo:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tcgcsr.Parse(tc.in)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, tcgcsr.ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrMalformed with %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	content, sig := readST(f)
	f.Add(tcgcsr.Envelope(content, sig))
	f.Add(tcgcsr.Envelope(content[:200], sig))
	f.Add([]byte{0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, err := tcgcsr.Parse(b)
		if err != nil {
			if !errors.Is(err, tcgcsr.ErrMalformed) && !errors.Is(err, provisioning.ErrStructSize) {
				t.Fatalf("error %v matches neither sentinel", err)
			}
			return
		}
		// What parses marshals back (with its own pad) and parses again to the same fields.
		again, err := csr.Content.Marshal()
		if err != nil {
			t.Fatalf("parsed content does not marshal: %v", err)
		}
		c2, err := tcgcsr.ParseContent(again)
		if err != nil || c2.ProdSerial != csr.ProdSerial || !bytes.Equal(c2.SigningPub, csr.SigningPub) {
			t.Fatalf("re-marshalled content does not parse back: %v", err)
		}
	})
}

// FuzzParseContent fuzzes what follows the content's hash, with the hash made right, so the fuzzer gets
// past the hash check to the size words, the fields and the TPM structures.
func FuzzParseContent(f *testing.F) {
	content, _ := readST(f)
	f.Add(uint16(tpm2.TPMAlgSHA384), content[stSizes:])
	f.Add(uint16(tpm2.TPMAlgSHA256), content[stSizes:stPad+4])
	f.Fuzz(func(t *testing.T, alg uint16, tail []byte) {
		var sum []byte
		switch tpm2.TPMAlgID(alg) {
		case tpm2.TPMAlgSHA256:
			d := sha256.Sum256(tail)
			sum = d[:]
		case tpm2.TPMAlgSHA384:
			d := sha512.Sum384(tail)
			sum = d[:]
		default:
			return
		}
		b := binary.BigEndian.AppendUint32(nil, tcgcsr.StructVer)
		b = binary.BigEndian.AppendUint32(b, uint32(alg))
		b = binary.BigEndian.AppendUint32(b, uint32(len(sum)))
		b = append(append(b, sum...), tail...)
		c, err := tcgcsr.ParseContent(b)
		if err != nil {
			if !errors.Is(err, tcgcsr.ErrMalformed) {
				t.Fatalf("error %v does not match ErrMalformed", err)
			}
			return
		}
		again, err := c.Marshal()
		if err != nil {
			t.Fatalf("parsed content does not marshal: %v", err)
		}
		if _, err := tcgcsr.ParseContent(again); err != nil {
			t.Fatalf("re-marshalled content does not parse: %v", err)
		}
	})
}
