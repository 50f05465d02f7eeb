package ekcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
	"time"
)

// vendorPKI is a root and an intermediate made in the test, each a template the case may edit first.
type vendorPKI struct {
	root, inter testCA
}

func caTemplate(cn string, from, to time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             from,
		NotAfter:              to,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
}

func signCA(t *testing.T, tmpl *x509.Certificate, parent *testCA) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pc, pk := tmpl, key
	if parent != nil {
		pc, pk = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pc, &key.PublicKey, pk)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{cert, key}
}

func newVendorPKI(t *testing.T, editRoot, editInter func(*x509.Certificate)) vendorPKI {
	t.Helper()
	rt := caTemplate("cache test vendor root", date("2020-01-01"), date("2040-01-01"))
	if editRoot != nil {
		editRoot(rt)
	}
	root := signCA(t, rt, nil)
	it := caTemplate("cache test vendor intermediate", date("2020-01-01"), date("2038-01-01"))
	if editInter != nil {
		editInter(it)
	}
	return vendorPKI{root: root, inter: signCA(t, it, &root)}
}

// policyConstraintsExt is a policyConstraints extension (RFC 5280 4.2.1.11) with requireExplicitPolicy 0.
var policyConstraintsExt = pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 36}, Value: []byte{0x30, 0x03, 0x80, 0x01, 0x00}}

// The cache never accepts what the whole path refuses: one case per condition of cachedChain (and the
// checks before it), each on a verifier whose cache already holds the intermediate. Every case is also
// run on a fresh verifier (nothing cached) for the whole path's verdict, which the cached one must equal.
func TestVerifyCacheRefusesWhatThePathRefuses(t *testing.T) {
	at := date("2026-06-01")
	cases := []struct {
		name string
		// pki edits the vendor's root and intermediate before they are made.
		editRoot, editInter func(*x509.Certificate)
		// bad makes the certificate to verify after the cache is warm, and may change the verifier.
		bad func(t *testing.T, p vendorPKI, v *Verifier) (leaf *Certificate, presented []*x509.Certificate, at time.Time)
		// cacheable: the intermediate is remembered at all (the warm-up EK verified through it counts a hit).
		cacheable bool
		wantErr   error
	}{
		{name: "EK signed by another key under the intermediate's name", cacheable: true, wantErr: ErrUntrusted,
			bad: func(t *testing.T, p vendorPKI, v *Verifier) (*Certificate, []*x509.Certificate, time.Time) {
				forger := signCA(t, caTemplate("cache test vendor intermediate", date("2020-01-01"), date("2038-01-01")), nil)
				return forger.issue(t, ekTemplate(t)), nil, at
			}},
		{name: "the same name presented with another key", cacheable: true, wantErr: ErrUntrusted,
			bad: func(t *testing.T, p vendorPKI, v *Verifier) (*Certificate, []*x509.Certificate, time.Time) {
				forger := signCA(t, caTemplate("cache test vendor intermediate", date("2020-01-01"), date("2038-01-01")), nil)
				return forger.issue(t, ekTemplate(t)), []*x509.Certificate{forger.cert}, at
			}},
		{name: "EK expired", cacheable: true, wantErr: ErrUntrusted,
			bad: func(t *testing.T, p vendorPKI, v *Verifier) (*Certificate, []*x509.Certificate, time.Time) {
				return p.inter.issue(t, ekTemplate(t)), nil, date("2036-02-01")
			}},
		{name: "intermediate expired, EK still valid", cacheable: true, wantErr: ErrUntrusted,
			editInter: func(c *x509.Certificate) { c.NotAfter = date("2027-01-01") },
			bad: func(t *testing.T, p vendorPKI, v *Verifier) (*Certificate, []*x509.Certificate, time.Time) {
				return p.inter.issue(t, ekTemplate(t)), nil, date("2027-06-01")
			}},
		{name: "root expired, intermediate and EK still valid", cacheable: true, wantErr: ErrUntrusted,
			editRoot: func(c *x509.Certificate) { c.NotAfter = date("2027-01-01") },
			bad: func(t *testing.T, p vendorPKI, v *Verifier) (*Certificate, []*x509.Certificate, time.Time) {
				return p.inter.issue(t, ekTemplate(t)), nil, date("2027-06-01")
			}},
		{name: "root no longer configured", cacheable: true, wantErr: ErrUntrusted,
			bad: func(t *testing.T, p vendorPKI, v *Verifier) (*Certificate, []*x509.Certificate, time.Time) {
				v.Roots = []*x509.Certificate{newTestCA(t).cert}
				return p.inter.issue(t, ekTemplate(t)), nil, at
			}},
		{name: "intermediate no longer configured nor presented", cacheable: true, wantErr: ErrUntrusted,
			bad: func(t *testing.T, p vendorPKI, v *Verifier) (*Certificate, []*x509.Certificate, time.Time) {
				v.Intermediates = nil
				return p.inter.issue(t, ekTemplate(t)), nil, at
			}},
		{name: "EK requires an explicit policy the intermediate does not carry", cacheable: true, wantErr: ErrUntrusted,
			bad: func(t *testing.T, p vendorPKI, v *Verifier) (*Certificate, []*x509.Certificate, time.Time) {
				tmpl := ekTemplate(t)
				tmpl.Policies = []x509.OID{mustOID(t, "1.3.6.1.4.1.99999.7")}
				tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, policyConstraintsExt)
				return p.inter.issue(t, tmpl), nil, at
			}},
		{name: "root with name constraints is not remembered", wantErr: nil,
			editRoot: func(c *x509.Certificate) { c.PermittedDNSDomains = []string{"tpm.example"} },
			bad: func(t *testing.T, p vendorPKI, v *Verifier) (*Certificate, []*x509.Certificate, time.Time) {
				return p.inter.issue(t, ekTemplate(t)), nil, at
			}},
		{name: "root with policy constraints is not remembered", wantErr: nil,
			editRoot: func(c *x509.Certificate) { c.ExtraExtensions = []pkix.Extension{policyConstraintsExt} },
			bad: func(t *testing.T, p vendorPKI, v *Verifier) (*Certificate, []*x509.Certificate, time.Time) {
				tmpl := ekTemplate(t)
				return p.inter.issue(t, tmpl), nil, at
			}},
		{name: "intermediate with name constraints is not remembered", wantErr: nil,
			editInter: func(c *x509.Certificate) { c.ExcludedDNSDomains = []string{"evil.example"} },
			bad: func(t *testing.T, p vendorPKI, v *Verifier) (*Certificate, []*x509.Certificate, time.Time) {
				return p.inter.issue(t, ekTemplate(t)), nil, at
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newVendorPKI(t, tc.editRoot, tc.editInter)
			v := &Verifier{Roots: []*x509.Certificate{p.root.cert}, Intermediates: []*x509.Certificate{p.inter.cert}}
			for i := range 2 {
				if _, err := v.VerifyAt(p.inter.issue(t, ekTemplate(t)), nil, at); err != nil {
					t.Fatalf("warm-up EK %d: %v", i, err)
				}
			}
			if hits := v.cache.hits; tc.cacheable != (hits == 1) {
				t.Fatalf("cache hits after two EKs = %d; cacheable %v", hits, tc.cacheable)
			}
			fresh := &Verifier{Roots: v.Roots, Intermediates: v.Intermediates}
			leaf, presented, when := tc.bad(t, p, v)
			fresh.Roots, fresh.Intermediates = v.Roots, v.Intermediates
			_, wantErr := fresh.VerifyAt(leaf, presented, when)
			_, err := v.VerifyAt(leaf, presented, when)
			if tc.wantErr == nil {
				if err != nil || wantErr != nil {
					t.Fatalf("cached: %v, whole path: %v; want both to accept", err, wantErr)
				}
				return
			}
			if !errors.Is(wantErr, tc.wantErr) {
				t.Fatalf("whole path: %v, want %v (the case is not what it says)", wantErr, tc.wantErr)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("cached verifier: %v, want %v as the whole path (%v)", err, tc.wantErr, wantErr)
			}
		})
	}
}

// A cached intermediate gives the chain the whole path gives: leaf, intermediate, root.
func TestVerifyCacheChain(t *testing.T) {
	p := newVendorPKI(t, nil, nil)
	v := &Verifier{Roots: []*x509.Certificate{p.root.cert}, Now: fixedNow("2026-06-01")}
	for i := range 3 {
		ek := p.inter.issue(t, ekTemplate(t))
		chain, err := v.Verify(ek, []*x509.Certificate{p.inter.cert})
		if err != nil {
			t.Fatal(err)
		}
		if len(chain) != 3 || chain[0] != ek.X509 || !chain[1].Equal(p.inter.cert) || !chain[2].Equal(p.root.cert) {
			t.Fatalf("EK %d: chain %v", i, chain)
		}
	}
	if v.cache.hits != 2 {
		t.Errorf("cache hits = %d, want 2 (the presented intermediate remembered by its bytes)", v.cache.hits)
	}
}

func mustOID(t *testing.T, s string) x509.OID {
	t.Helper()
	o, err := x509.ParseOID(s)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
