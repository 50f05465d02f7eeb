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
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
)

// vendorCAs loads every CA file of the shared set once per test: roots are the self-signed ones.
func vendorCAs(t *testing.T) (roots, inters []*x509.Certificate) {
	t.Helper()
	certs, _, err := LoadCertificates(filepath.Join(shared, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range certs {
		if c.CheckSignatureFrom(c) == nil && c.Subject.String() == c.Issuer.String() {
			roots = append(roots, c)
		} else {
			inters = append(inters, c)
		}
	}
	return roots, inters
}

func loadCA(t *testing.T, names ...string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, n := range names {
		certs, warn, err := LoadCertificates(filepath.Join(shared, "ca", n))
		if err != nil || len(warn) > 0 {
			t.Fatalf("%s: %v %v", n, err, warn)
		}
		out = append(out, certs...)
	}
	return out
}

func fixedNow(s string) func() time.Time { return func() time.Time { return date(s) } }

// The chains of MANIFEST.md's chain summary, for every TPM 2.0 EK that has its CAs.
var chainCases = []struct {
	ek    string
	chain []string // CA files, leaf-most first; the last is the root
}{
	{"google-rsa-1.pem", []string{"google-intermediate-1.der", "google-root-1.der"}},
	{"google-ecc-1.pem", []string{"google-intermediate-1.der", "google-root-1.der"}},
	{"infineon-rsa-1.der", []string{"infineon-intermediate-1.pem", "infineon-root-1.pem"}},
	{"infineon-ecc-1.der", []string{"infineon-intermediate-2.pem", "infineon-root-2.pem"}},
	{"infineon-rsa-2.der", []string{"infineon-intermediate-3.pem", "infineon-root-1.pem"}},
	{"intel-rsa-1.pem", []string{"intel-intermediate-1.pem", "intel-root-1.pem"}},
	{"nuvoton-rsa-1.der", []string{"nuvoton-root-1.pem"}},
	{"nuvoton-rsa-2.der", []string{"nuvoton-root-2.pem"}},
	{"st-rsa-1.der", []string{"st-intermediate-4.pem", "st-intermediate-1.pem", "globalsign-root-1.pem"}},
	{"st-ecc-1.der", []string{"st-intermediate-6.pem", "st-intermediate-7.pem", "globalsign-root-2.pem"}},
	{"st-rsa-6.der", []string{"st-intermediate-5.pem", "st-intermediate-1.pem", "globalsign-root-1.pem"}},
}

// Check 6, positive: every real EK with its CAs chains, with all vendor CAs configured at once.
func TestVerifyRealChains(t *testing.T) {
	roots, inters := vendorCAs(t)
	v := &Verifier{Roots: roots, Intermediates: inters, Now: fixedNow("2027-06-01")}
	for _, tc := range chainCases {
		t.Run(tc.ek, func(t *testing.T) {
			c, err := Parse(readEK(t, tc.ek))
			if err != nil {
				t.Fatal(err)
			}
			chain, err := v.Verify(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := loadCA(t, tc.chain...)
			if len(chain) != len(want)+1 || chain[0] != c.X509 {
				t.Fatalf("chain of %d certificates, want the EK then %d CAs", len(chain), len(want))
			}
			for i, w := range want {
				if !chain[i+1].Equal(w) {
					t.Errorf("chain[%d] = %s, want %s", i+1, chain[i+1].Subject, tc.chain[i])
				}
			}
		})
	}
}

// Intermediates read from the TPM (presented) complete the chain when the CA holds only the root.
func TestVerifyPresentedIntermediates(t *testing.T) {
	c, err := Parse(readEK(t, "st-rsa-1.der"))
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Roots: loadCA(t, "globalsign-root-1.pem"), Now: fixedNow("2027-06-01")}
	if _, err := v.Verify(c, nil); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("without intermediates: %v, want ErrUntrusted", err)
	}
	chain, err := v.Verify(c, loadCA(t, "st-intermediate-4.pem", "st-intermediate-1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 4 {
		t.Errorf("chain of %d, want 4", len(chain))
	}
	if _, err := v.Verify(c, make([]*x509.Certificate, 17)); !errors.Is(err, ErrInvalid) {
		t.Errorf("17 presented certificates: %v, want ErrInvalid", err)
	}
}

// Check 6, negative: the right kind of certificate, the wrong vendor.
func TestVerifyWrongVendor(t *testing.T) {
	v := &Verifier{
		Roots:         loadCA(t, "globalsign-root-1.pem", "globalsign-root-2.pem"),
		Intermediates: loadCA(t, "st-intermediate-1.pem", "st-intermediate-4.pem", "st-intermediate-6.pem", "st-intermediate-7.pem"),
		Now:           fixedNow("2027-06-01"),
	}
	for _, ek := range []string{"infineon-rsa-1.der", "nuvoton-rsa-1.der", "google-ecc-1.pem"} {
		c, err := Parse(readEK(t, ek))
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(c, nil)
		if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "no chain to a configured TPM vendor root") {
			t.Errorf("%s against ST roots: %v, want ErrUntrusted", ek, err)
		}
	}
	c, err := Parse(readEK(t, "st-rsa-1.der"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(c, nil); err != nil {
		t.Errorf("the ST EK against the same ST roots: %v", err)
	}
	if _, err := (&Verifier{Now: v.Now}).Verify(c, nil); !errors.Is(err, ErrUntrusted) {
		t.Errorf("no roots configured: %v, want ErrUntrusted", err)
	}
}

// Check 5: validity at Now, with Now defaulting to the clock.
func TestVerifyValidity(t *testing.T) {
	roots, inters := vendorCAs(t)
	c, err := Parse(readEK(t, "st-rsa-1.der")) // valid 2018-07-11 .. 2028-07-11
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		now  string
		want string
	}{
		{"2028-07-12", "expired 2028-07-11T00:00:00Z"},
		{"2018-07-10", "not valid before 2018-07-11T00:00:00Z"},
	} {
		v := &Verifier{Roots: roots, Intermediates: inters, Now: fixedNow(tc.now)}
		_, err := v.Verify(c, nil)
		if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("at %s: %v, want ErrUntrusted %q", tc.now, err, tc.want)
		}
	}
	// Now nil means the product clock (internal/clock): the same verdict as a verifier fixed at clock.Now,
	// whatever day it is and however the moved-clock check moved it.
	now := clock.Now()
	_, errDefault := (&Verifier{Roots: roots, Intermediates: inters}).Verify(c, nil)
	_, errFixed := (&Verifier{Roots: roots, Intermediates: inters, Now: func() time.Time { return now }}).Verify(c, nil)
	inside := !now.Before(c.X509.NotBefore) && !now.After(c.X509.NotAfter)
	if (errDefault == nil) != inside || (errDefault == nil) != (errFixed == nil) {
		t.Errorf("default clock at %s: %v; fixed at the same time: %v; inside validity: %v", now, errDefault, errFixed, inside)
	}
}

// Check 3 with a real CA certificate presented as the EK.
func TestVerifyIntermediateAsEK(t *testing.T) {
	roots, inters := vendorCAs(t)
	v := &Verifier{Roots: roots, Intermediates: inters, Now: fixedNow("2027-06-01")}
	for _, f := range []string{"infineon-intermediate-1.pem", "st-intermediate-4.pem", "google-intermediate-1.der"} {
		c, err := Parse(readFile(t, filepath.Join(shared, "ca", f)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(c, nil)
		if !errors.Is(err, ErrNotEK) || !strings.Contains(err.Error(), "CA") {
			t.Errorf("%s as an EK: %v, want ErrNotEK", f, err)
		}
	}
}

func TestVerifyNilCertificate(t *testing.T) {
	if _, err := (&Verifier{}).Verify(nil, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil: %v", err)
	}
}

// testCA is a vendor root made in the test, for EKs that no real vendor would issue.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	tmpl := caTemplate("tpmline test TPM vendor root", date("2020-01-01"), date("2040-01-01"))
	tmpl.SerialNumber = big.NewInt(1)
	return signCA(t, tmpl, nil)
}

// tpmSAN is the critical SAN of an EK: one directoryName with the TPM identity in 3 RDNs, as Infineon
// and ST write it.
func tpmSAN(t *testing.T, extraNames ...asn1.RawValue) pkix.Extension {
	t.Helper()
	name, err := asn1.Marshal(pkix.RDNSequence{
		{{Type: oidTPMManufacturer, Value: "id:49465800"}},
		{{Type: oidTPMModel, Value: "SLB 9670 TPM2.0"}},
		{{Type: oidTPMVersion, Value: "id:073f"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	names := append([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: name}}, extraNames...)
	val, err := asn1.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidSubjectAltName, Critical: true, Value: val}
}

// ekTemplate is a well-formed EK certificate template; tests break one thing each.
func ekTemplate(t *testing.T) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		NotBefore:             date("2021-01-01"),
		NotAfter:              date("2036-01-01"),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageKeyAgreement,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{oidEKCertificateEKU},
		ExtraExtensions:       []pkix.Extension{tpmSAN(t)},
	}
}

func (ca testCA) issue(t *testing.T, tmpl *x509.Certificate) *Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// One case per check, each on a certificate that passes every other check.
func TestVerifyChecks(t *testing.T) {
	ca := newTestCA(t)
	v := &Verifier{Roots: []*x509.Certificate{ca.cert}, Now: fixedNow("2026-06-01")}
	cases := []struct {
		name    string
		edit    func(*x509.Certificate)
		wantErr error
		wantMsg string
	}{
		{"well-formed EK", func(*x509.Certificate) {}, nil, ""},
		{"no EKU", func(c *x509.Certificate) { c.UnknownExtKeyUsage = nil }, ErrNotEK, "2.23.133.8.1"},
		{"other EKU only", func(c *x509.Certificate) {
			c.UnknownExtKeyUsage = nil
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}, ErrNotEK, "2.23.133.8.1"},
		{"CA basic constraints", func(c *x509.Certificate) { c.IsCA = true }, ErrNotEK, "cA=TRUE"},
		{"keyCertSign", func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }, ErrNotEK, "keyCertSign"},
		{"unknown critical extension", func(c *x509.Certificate) {
			c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{5, 0}})
		}, ErrUntrusted, "unhandled critical extension 1.3.6.1.4.1.99999.1"},
		{"SAN with two directoryNames", func(c *x509.Certificate) {
			san := tpmSAN(t)
			var names []asn1.RawValue
			if _, err := asn1.Unmarshal(san.Value, &names); err != nil {
				t.Fatal(err)
			}
			c.ExtraExtensions = []pkix.Extension{tpmSAN(t, names[0])}
		}, ErrInvalid, "tpmManufacturer twice"},
		{"SAN with a directoryName and a registeredID", func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{tpmSAN(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 8, Bytes: []byte{0x2a, 0x03}})}
		}, ErrUntrusted, "unhandled critical extension 2.5.29.17"},
		{"expired", func(c *x509.Certificate) { c.NotAfter = date("2026-05-31") }, ErrUntrusted, "expired 2026-05-31"},
		{"not yet valid", func(c *x509.Certificate) { c.NotBefore = date("2026-06-02") }, ErrUntrusted, "not valid before"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := ekTemplate(t)
			tc.edit(tmpl)
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(der)
			if err == nil {
				_, err = v.Verify(c, nil)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.Manufacturer != "Infineon" || c.Model != "SLB 9670 TPM2.0" {
					t.Errorf("identity %q %q", c.Manufacturer, c.Model)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("err = %v, want %v with %q", err, tc.wantErr, tc.wantMsg)
			}
		})
	}
}

// The copy Verify makes must not leak: the caller's certificate keeps its unhandled SAN.
func TestVerifyLeavesCertificateAlone(t *testing.T) {
	ca := newTestCA(t)
	c := ca.issue(t, ekTemplate(t))
	v := &Verifier{Roots: []*x509.Certificate{ca.cert}, Now: fixedNow("2026-06-01")}
	if _, err := v.Verify(c, nil); err != nil {
		t.Fatal(err)
	}
	if len(c.X509.UnhandledCriticalExtensions) != 1 {
		t.Errorf("Verify changed the caller's certificate: %v", c.X509.UnhandledCriticalExtensions)
	}
	// And another vendor's root does not accept it.
	other := newTestCA(t)
	if _, err := (&Verifier{Roots: []*x509.Certificate{other.cert}, Now: v.Now}).Verify(c, nil); !errors.Is(err, ErrUntrusted) {
		t.Errorf("other root: %v", err)
	}
}

// A board cannot bring its own trust anchor: presented certificates only ever serve as intermediates.
func TestVerifyPresentedRootNotTrusted(t *testing.T) {
	vendor, forger := newTestCA(t), newTestCA(t)
	forged := forger.issue(t, ekTemplate(t))
	v := &Verifier{Roots: []*x509.Certificate{vendor.cert}, Now: fixedNow("2026-06-01")}
	if _, err := v.Verify(forged, []*x509.Certificate{forger.cert}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("EK presented with its own root: %v, want ErrUntrusted", err)
	}
}

// The SAN in one multi-valued RDN with PrintableStrings (Nuvoton's form) reads the same as 3 RDNs.
func TestSANMultiValuedRDN(t *testing.T) {
	ca := newTestCA(t)
	name, err := asn1.Marshal(pkix.RDNSequence{{
		{Type: oidTPMManufacturer, Value: "id:4E544300"},
		{Type: oidTPMModel, Value: "NPCT75x"},
		{Type: oidTPMVersion, Value: "id:00070002"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	val, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: name}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := ekTemplate(t)
	tmpl.ExtraExtensions = []pkix.Extension{{Id: oidSubjectAltName, Critical: true, Value: val}}
	c := ca.issue(t, tmpl)
	if c.Manufacturer != "Nuvoton" || c.ManufacturerID != "4E544300" || c.Model != "NPCT75x" || c.Version != "id:00070002" {
		t.Errorf("identity %q %q %q %q", c.Manufacturer, c.ManufacturerID, c.Model, c.Version)
	}
}

// SAN values a person will read must be printable strings of sane length and tpmManufacturer well formed.
func TestSANHostileValues(t *testing.T) {
	ca := newTestCA(t)
	for _, tc := range []struct {
		name string
		rdns pkix.RDNSequence
		want string
	}{
		{"control characters", pkix.RDNSequence{{{Type: oidTPMModel, Value: "SLB\x1b[2J"}}}, "not printable"},
		{"long model", pkix.RDNSequence{{{Type: oidTPMModel, Value: strings.Repeat("A", 200)}}}, "over 128 bytes"},
		{"bad manufacturer", pkix.RDNSequence{{{Type: oidTPMManufacturer, Value: "Infineon"}}}, "id:<8 hex digits>"},
		{"short manufacturer", pkix.RDNSequence{{{Type: oidTPMManufacturer, Value: "id:4946"}}}, "id:<8 hex digits>"},
		{"non-string", pkix.RDNSequence{{{Type: oidTPMVersion, Value: 7}}}, "not a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, err := asn1.Marshal(tc.rdns)
			if err != nil {
				t.Fatal(err)
			}
			val, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: name}})
			if err != nil {
				t.Fatal(err)
			}
			tmpl := ekTemplate(t)
			tmpl.ExtraExtensions = []pkix.Extension{{Id: oidSubjectAltName, Critical: true, Value: val}}
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(der)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse = %v, want ErrInvalid %q", err, tc.want)
			}
		})
	}
}
