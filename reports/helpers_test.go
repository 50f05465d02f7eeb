package reports

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 4, 6, 0, 0, 0, time.UTC)

func sampleBatch() BatchInfo {
	return BatchInfo{
		ID: "B-2025-0304-A", Product: "gw-200 gateway", WorkOrder: "WO-77812",
		Stations: []string{"line2-st01", "line2-st02"}, Operators: []string{"A. Novák", "J. Smith"},
		Opened: t0, Closed: t0.Add(9*time.Hour + 30*time.Minute), Quantity: 160, Refused: 2,
	}
}

func sampleAudit() AuditInfo {
	sum := sha256.Sum256([]byte("chain head"))
	return AuditInfo{EventCount: 1234, ChainHead: hex.EncodeToString(sum[:]), ChainVerified: true}
}

var failReasons = []struct{ code, text string }{
	{"ek_cert_chain", "EK certificate does not chain to a configured TPM vendor root"},
	{"ek_cert_chain", "EK certificate does not chain to a configured TPM vendor root"},
	{"ek_cert_chain", "EK certificate does not chain to a configured TPM vendor root"},
	{"tpm_timeout", "TPM did not answer within 30 s (board seated?)"},
	{"tpm_timeout", "TPM did not answer within 30 s (board seated?)"},
	{"ca_unreachable", "CA did not answer; retried 3 times"},
	{"nv_write", "NV write of the IDevID certificate failed: TPM_RC_NV_LOCKED"},
	{"ek_swapped", "EK already bound to serial SN-000012 (cloned or swapped part)"},
}

// sampleRows makes n deterministic boards: mostly provisioned, some failed and stopped, the last one in
// progress when inProgress is set. mode "pass" makes every board pass, "fail" every board fail.
func sampleRows(n int, mode string, inProgress bool) []BoardRow {
	rng := mrand.New(mrand.NewPCG(1, 2))
	rows := make([]BoardRow, 0, n)
	at := t0.Add(10 * time.Minute)
	for i := 0; i < n; i++ {
		ek := sha256.Sum256([]byte(fmt.Sprint("ek", i)))
		cycle := time.Duration(38000+rng.IntN(30000)) * time.Millisecond
		if rng.IntN(40) == 0 {
			cycle += 90 * time.Second // a slow board now and then
		}
		r := BoardRow{
			Serial: fmt.Sprintf("SN-%06d", i), EKPublicSHA256: hex.EncodeToString(ek[:]),
			TPMVendor: []string{"IFX", "STM", "NTC"}[i%3], TPMFirmware: []string{"15.23", "1.769", "7.2.3.1"}[i%3],
			Started: at, Finished: at.Add(cycle), CycleTime: cycle, Result: ResultProvisioned,
			IAKCertSerial: fmt.Sprintf("%032x", uint64(i)*7919+1), IDevIDCertSerial: fmt.Sprintf("%032x", uint64(i)*104729+3),
		}
		fail := mode == "fail" || (mode == "" && rng.IntN(9) == 0)
		if fail {
			fr := failReasons[rng.IntN(len(failReasons))]
			r.Result, r.ReasonCode, r.ReasonText = ResultFailed, fr.code, fr.text
			if fr.code == "ek_swapped" {
				r.Result = ResultStopped
			}
			r.IAKCertSerial, r.IDevIDCertSerial = "", ""
		}
		rows = append(rows, r)
		at = at.Add(cycle / 2) // two slots in parallel
	}
	if n > 3 && mode == "" {
		rows[2].Serial = "SN-Ærø-κ-002" // non-ASCII: cp1252 has Æ and ø, not κ
		rows[3].Serial = "=HYPERLINK(\"http://x\")"
	}
	if inProgress && n > 0 {
		last := &rows[n-1]
		last.Result, last.Finished, last.CycleTime, last.ReasonCode, last.ReasonText = ResultInProgress, time.Time{}, 0, "", ""
		last.IAKCertSerial, last.IDevIDCertSerial = "", ""
	}
	return rows
}

func sliceSource(rows []BoardRow) BoardSource {
	return func(yield func(BoardRow) error) error {
		for _, r := range rows {
			if err := yield(r); err != nil {
				return err
			}
		}
		return nil
	}
}

// testPKI is a root CA, a station CA under it, and station leaf keys (ECDSA P-256 and RSA-2048).
type testPKI struct {
	root, stationCA *x509.Certificate
	rootKey, caKey  *ecdsa.PrivateKey
	roots           *x509.CertPool
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{}
	p.rootKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.root = makeCert(t, "test upstream root", true, &p.rootKey.PublicKey, nil, p.rootKey, t0.AddDate(-1, 0, 0), t0.AddDate(5, 0, 0))
	p.stationCA = makeCert(t, "test station CA", true, &p.caKey.PublicKey, p.root, p.rootKey, t0.AddDate(-1, 0, 0), t0.AddDate(5, 0, 0))
	p.roots = x509.NewCertPool()
	p.roots.AddCert(p.root)
	return p
}

func makeCert(t testing.TB, cn string, isCA bool, pub any, parent *x509.Certificate, parentKey crypto.Signer, from, to time.Time) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, NotBefore: from, NotAfter: to,
		BasicConstraintsValid: true, IsCA: isCA,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// stationSigner issues a station certificate for key under the station CA.
func (p *testPKI) stationSigner(t testing.TB, key crypto.Signer) Signer {
	leaf := makeCert(t, "line2-st01", false, key.Public(), p.stationCA, p.caKey, t0.AddDate(0, -1, 0), t0.AddDate(1, 0, 0))
	return Signer{Key: key, Chain: []*x509.Certificate{leaf, p.stationCA}}
}

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
