package signed

import (
	"bytes"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var signedAt = time.Date(2025, 3, 4, 15, 31, 0, 0, time.UTC)

func mustSign(t testing.TB, s Signer, content []byte) []byte {
	t.Helper()
	sig, err := s.Sign(bytes.NewReader(content), signedAt)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func TestSignVerifyAlgorithms(t *testing.T) {
	p := newTestPKI(t)
	rk := testRSAKey(t)
	for _, tc := range []struct {
		name string
		s    Signer
		alg  string
	}{
		{"ecdsa", p.stationSigner(t, ecKey(t)), AlgECDSASHA256},
		{"rsa-pss", p.stationSigner(t, rk), AlgRSAPSSSHA256},
		{"rsa-pkcs1", func() Signer { s := p.stationSigner(t, rk); s.PKCS1v15 = true; return s }(), AlgRSAPKCS1SHA256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			content := []byte("serial,result\r\nSN-1,provisioned\r\n")
			sig := mustSign(t, tc.s, content)
			v, err := Verify(content, sig, p.roots)
			if err != nil {
				t.Fatal(err)
			}
			if v.Algorithm != tc.alg || !v.ChainVerified || !v.SignedAt.Equal(signedAt) || v.ContentLength != int64(len(content)) ||
				v.Signer().Subject.CommonName != "line2-st01" || len(v.Chain) != 2 {
				t.Fatalf("verified = %+v", v)
			}
			// Without roots: signature checked, chain not.
			v, err = Verify(content, sig, nil)
			if err != nil || v.ChainVerified {
				t.Fatalf("no roots: %v %+v", err, v)
			}
			if _, err := VerifyReader(bytes.NewReader(content), sig, p.roots); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// testRSAKey is one RSA key per test binary: generating them is slow.
var cachedRSA *rsa.PrivateKey

func testRSAKey(t testing.TB) *rsa.PrivateKey {
	if cachedRSA == nil {
		k, err := rsa.GenerateKey(crand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		cachedRSA = k
	}
	return cachedRSA
}

func TestSignRefusesBadSigner(t *testing.T) {
	p := newTestPKI(t)
	good := p.stationSigner(t, ecKey(t))
	other := good
	other.Key = ecKey(t)
	long := good
	long.Chain = make([]*x509.Certificate, MaxSigCerts+1)
	for i := range long.Chain {
		long.Chain[i] = good.Chain[0]
	}
	for _, tc := range []struct {
		name string
		s    Signer
		want string
	}{
		{"no key", Signer{Chain: good.Chain}, "no signing key"},
		{"no chain", Signer{Key: good.Key}, "no signer certificate"},
		{"key not the leaf's", other, "does not belong"},
		{"chain too long", long, "over the bound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.s.Sign(strings.NewReader("x"), signedAt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// sigFields decodes a .sig file for tests that forge one.
func sigFields(t *testing.T, sig []byte) *sigFile {
	var f sigFile
	if err := json.Unmarshal(sig, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}

func TestVerifyTamper(t *testing.T) {
	p := newTestPKI(t)
	s := p.stationSigner(t, ecKey(t))
	content := []byte(`{"format":"x","boards":[]}` + "\n")
	sig := mustSign(t, s, content)

	// A chain from a CA that is not the trust anchor.
	q := newTestPKI(t)
	foreign := q.stationSigner(t, ecKey(t))
	foreignSig := mustSign(t, foreign, content)

	// A valid certificate of another station substituted for the signer's: canonical, but the signature
	// was not made with its key.
	swapped := sigFields(t, sig)
	swapped.Certificates = sigFields(t, mustSign(t, p.stationSigner(t, ecKey(t)), content)).Certificates

	// Expired at the signing time.
	expired := s
	expired.Chain = []*x509.Certificate{makeCert(t, "old", false, s.Key.Public(), p.stationCA, p.caKey, t0.AddDate(-3, 0, 0), t0.AddDate(-2, 0, 0)), p.stationCA}
	expiredSig := mustSign(t, expired, content)

	unknown := bytes.Replace(sig, []byte(`"format"`), []byte(`"extra": "x",`+"\n  "+`"format"`), 1)
	reformatted := bytes.ReplaceAll(sig, []byte("\n  "), []byte("\n    "))
	dup := bytes.Replace(sig, []byte(`"format": "tpmline-sig/1",`), []byte(`"format": "tpmline-sig/1",`+"\n  "+`"format": "tpmline-sig/1",`), 1)
	oversized := append(bytes.Repeat([]byte(" "), MaxSigFileBytes), sig...)
	badAlg := sigFields(t, sig)
	badAlg.Algorithm = "ED25519"
	noCerts := sigFields(t, sig)
	noCerts.Certificates = nil
	wrongAlg := sigFields(t, sig)
	wrongAlg.Algorithm = AlgRSAPSSSHA256
	badB64 := sigFields(t, sig)
	badB64.Signature = "!!!!"
	badHex := sigFields(t, sig)
	badHex.ContentSHA256 = strings.ToUpper(badHex.ContentSHA256)
	badTime := sigFields(t, sig)
	badTime.SignedAt = "2025-03-04 15:31:00"
	laterTime := sigFields(t, sig)
	laterTime.SignedAt = "2025-03-04T15:31:01Z"

	for _, tc := range []struct {
		name    string
		content []byte
		sig     []byte
		roots   *x509.CertPool
		want    string
	}{
		{"content byte", append([]byte{'['}, content[1:]...), sig, p.roots, "content SHA-256 differs"},
		{"content truncated", content[:len(content)-1], sig, p.roots, "was signed at"},
		{"content appended", append(append([]byte{}, content...), ' '), sig, p.roots, "was signed at"},
		{"signature byte", content, bytes.Replace(sig, []byte(`"signature": "M`), []byte(`"signature": "N`), 1), p.roots, "does not verify"},
		{"other station's certificate", content, encodeSigFile(swapped), p.roots, "does not verify"},
		{"not from the trust anchor", content, foreignSig, p.roots, "not trusted"},
		{"expired at signing time", content, expiredSig, p.roots, "not trusted"},
		{"signed time changed", content, encodeSigFile(laterTime), p.roots, "does not verify"},
		{"truncated sig file", content, sig[:len(sig)/2], p.roots, "not valid"},
		{"empty sig file", content, nil, p.roots, "empty"},
		{"oversized sig file", content, oversized, p.roots, "over the"},
		{"unknown field", content, unknown, p.roots, "unknown field"},
		{"reformatted", content, reformatted, p.roots, "canonical"},
		{"duplicate field", content, dup, p.roots, "canonical"},
		{"trailing data", content, append(append([]byte{}, sig...), []byte("{}")...), p.roots, "after its JSON"},
		{"unsupported algorithm", content, encodeSigFile(badAlg), p.roots, "not supported"},
		{"algorithm does not match key", content, encodeSigFile(wrongAlg), p.roots, "signer key is"},
		{"no certificates", content, encodeSigFile(noCerts), p.roots, "no signer certificate"},
		{"bad base64", content, encodeSigFile(badB64), p.roots, "not base64"},
		{"uppercase hex", content, encodeSigFile(badHex), p.roots, "lowercase hex"},
		{"bad time", content, encodeSigFile(badTime), p.roots, "RFC 3339"},
		{"not JSON", content, []byte("MEUCIQ"), p.roots, "not valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.content, tc.sig, tc.roots)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
	// The foreign signature is fine against its own anchor: the failure above is the anchor's.
	if _, err := Verify(content, foreignSig, q.roots); err != nil {
		t.Fatal(err)
	}
}

// TestVerifySingleByteChanges flips every byte of a small file's content and of its .sig file (and a
// sample of positions of a large file) and expects every change to be caught.
func TestVerifySingleByteChanges(t *testing.T) {
	p := newTestPKI(t)
	for _, tc := range []struct {
		name string
		s    Signer
	}{{"ecdsa", p.stationSigner(t, ecKey(t))}, {"rsa", p.stationSigner(t, testRSAKey(t))}} {
		t.Run(tc.name, func(t *testing.T) {
			content := []byte("serial,result\r\nSN-000001,provisioned\r\nSN-000002,failed\r\n")
			sig := mustSign(t, tc.s, content)
			rng := rand.New(rand.NewPCG(5, 6))
			flip := func(b []byte, i int) []byte {
				c := append([]byte(nil), b...)
				c[i] ^= byte(1 + rng.IntN(255))
				return c
			}
			for i := range content {
				if _, err := Verify(flip(content, i), sig, p.roots); err == nil {
					t.Fatalf("content byte %d changed, verification passed", i)
				}
			}
			for i := range sig {
				if _, err := Verify(content, flip(sig, i), p.roots); err == nil {
					t.Fatalf("sig byte %d (%q) changed, verification passed", i, sig[i])
				}
				// Without roots every byte still matters: the statement covers every certificate.
				if _, err := Verify(content, flip(sig, i), nil); err == nil {
					t.Fatalf("sig byte %d (%q) changed, verification without roots passed", i, sig[i])
				}
			}
			big := bytes.Repeat([]byte("SN-0000,provisioned,0123456789abcdef\r\n"), 30000)
			bigSig := mustSign(t, tc.s, big)
			for range 200 {
				if _, err := Verify(flip(big, rng.IntN(len(big))), bigSig, p.roots); err == nil {
					t.Fatal("a byte of the large content changed, verification passed")
				}
			}
		})
	}
}
