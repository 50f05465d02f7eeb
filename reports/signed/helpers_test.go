package signed

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 4, 6, 0, 0, 0, time.UTC)

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
