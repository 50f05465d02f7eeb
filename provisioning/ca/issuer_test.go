package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"testing"
	"time"
)

// TestIssuedProfiles parses issued certificates and checks every field and extension of the IAK and IDevID
// profiles.
func TestIssuedProfiles(t *testing.T) {
	root, iss, _ := testPKI(t)
	// The issuer's clock agrees with the PKI it is checked against: a day into the test PKI's validity.
	now := root.Cert.NotBefore.Add(24 * time.Hour)
	is := &Issuer{CA: iss.Cert, Key: iss.Key, Root: root.Cert, Organization: "Acme Boards", Now: func() time.Time { return now }}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := Board{Serial: "SN-0001/A", Product: "widget-1"}
	iakDER, err := is.IssueIAK(&key.PublicKey, b)
	if err != nil {
		t.Fatal(err)
	}
	idevidDER, err := is.IssueIDevID(&key.PublicKey, b)
	if err != nil {
		t.Fatal(err)
	}
	oidEKU := asn1.ObjectIdentifier{2, 5, 29, 37}
	oidPolicies := asn1.ObjectIdentifier{2, 5, 29, 32}
	for _, tc := range []struct {
		name     string
		der      []byte
		eku      []asn1.ObjectIdentifier
		policies []asn1.ObjectIdentifier
	}{
		{"iak", iakDER, []asn1.ObjectIdentifier{OIDAIKCertificate}, []asn1.ObjectIdentifier{OIDVerifiedTPMRestricted}},
		{"idevid", idevidDER, nil, []asn1.ObjectIdentifier{OIDVerifiedTPMResidency, OIDVerifiedTPMFixed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := x509.ParseCertificate(tc.der)
			if err != nil {
				t.Fatal(err)
			}
			// Chain.
			roots, inter := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(root.Cert)
			inter.AddCert(iss.Cert)
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now.Add(time.Hour), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Fatal(err)
			}
			if err := c.CheckSignatureFrom(iss.Cert); err != nil {
				t.Fatal(err)
			}
			// Serial: 16 bytes, positive.
			if c.SerialNumber.Sign() <= 0 || len(c.SerialNumber.Bytes()) != 16 {
				t.Fatalf("serial %x", c.SerialNumber)
			}
			// Subject.
			if c.Subject.SerialNumber != b.Serial || c.Subject.CommonName != "widget-1" || len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != "Acme Boards" {
				t.Fatalf("subject %v", c.Subject)
			}
			if !bytes.Equal(c.RawIssuer, iss.Cert.RawSubject) {
				t.Fatal("issuer is not the issuing CA")
			}
			// Validity: notAfter 99991231235959Z as GeneralizedTime (tag 0x18).
			if !c.NotBefore.Equal(now) || !c.NotAfter.Equal(UnboundedNotAfter) {
				t.Fatalf("validity %s .. %s", c.NotBefore, c.NotAfter)
			}
			if !bytes.Contains(c.RawTBSCertificate, append([]byte{0x18, 15}, "99991231235959Z"...)) {
				t.Fatal("notAfter is not the GeneralizedTime 99991231235959Z")
			}
			// Key usage, basic constraints, key identifiers.
			if c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Fatalf("keyUsage %b", c.KeyUsage)
			}
			if !c.BasicConstraintsValid || c.IsCA {
				t.Fatal("basicConstraints must say CA:FALSE")
			}
			if len(c.AuthorityKeyId) == 0 || !bytes.Equal(c.AuthorityKeyId, iss.Cert.SubjectKeyId) {
				t.Fatal("AKI is not the issuing CA's SKI")
			}
			if len(c.SubjectKeyId) != 20 {
				t.Fatal("no SKI")
			}
			// EKU.
			if len(c.ExtKeyUsage) != 0 {
				t.Fatalf("standard EKUs %v", c.ExtKeyUsage)
			}
			if !oidsEqual(c.UnknownExtKeyUsage, tc.eku) {
				t.Fatalf("EKU %v, want %v", c.UnknownExtKeyUsage, tc.eku)
			}
			hasEKU := false
			for _, ext := range c.Extensions {
				if ext.Id.Equal(oidEKU) {
					hasEKU = true
				}
				if ext.Id.Equal(oidPolicies) && ext.Critical {
					t.Fatal("certificatePolicies marked critical")
				}
			}
			if hasEKU != (tc.eku != nil) {
				t.Fatalf("EKU extension present=%v", hasEKU)
			}
			// Policies.
			var got []asn1.ObjectIdentifier
			for _, p := range c.Policies {
				o, err := asn1oid(p)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, o)
			}
			if !oidsEqual(got, tc.policies) {
				t.Fatalf("policies %v, want %v", got, tc.policies)
			}
			// SAN: exactly one otherName hardwareModuleName {tcg-sv-tpm20, serial}, not critical (subject
			// is not empty), and nothing else Go would understand.
			if len(c.DNSNames)+len(c.EmailAddresses)+len(c.IPAddresses)+len(c.URIs) != 0 {
				t.Fatal("unexpected SAN entries")
			}
			var sanCount int
			for _, ext := range c.Extensions {
				if ext.Id.Equal(oidSubjectAltName) {
					sanCount++
					if ext.Critical {
						t.Fatal("SAN critical with a non-empty subject")
					}
				}
			}
			if sanCount != 1 {
				t.Fatalf("%d SAN extensions", sanCount)
			}
			hwType, hwSerial, err := parseHardwareModuleName(c)
			if err != nil {
				t.Fatal(err)
			}
			if !hwType.Equal(OIDTPM20HWType) || string(hwSerial) != b.Serial {
				t.Fatalf("hardwareModuleName %v %q", hwType, hwSerial)
			}
			if len(c.UnhandledCriticalExtensions) != 0 {
				t.Fatalf("unhandled critical extensions %v", c.UnhandledCriticalExtensions)
			}
			if !key.PublicKey.Equal(c.PublicKey) {
				t.Fatal("certificate is not for the key")
			}
		})
	}

	t.Run("configured notAfter and common name", func(t *testing.T) {
		is2 := *is
		is2.IDevIDNotAfter = now.AddDate(20, 0, 0)
		is2.CommonName = "Acme Widget"
		der, err := is2.IssueIDevID(&key.PublicKey, b)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		if !c.NotAfter.Equal(now.AddDate(20, 0, 0)) || c.Subject.CommonName != "Acme Widget" {
			t.Fatalf("%s %q", c.NotAfter, c.Subject.CommonName)
		}
	})
	t.Run("serials differ", func(t *testing.T) {
		seen := map[string]bool{}
		for range 50 {
			der, err := is.IssueIAK(&key.PublicKey, b)
			if err != nil {
				t.Fatal(err)
			}
			c, _ := x509.ParseCertificate(der)
			if seen[c.SerialNumber.String()] || len(c.SerialNumber.Bytes()) != 16 {
				t.Fatal("serial repeated or not 16 bytes")
			}
			seen[c.SerialNumber.String()] = true
		}
	})
}

func oidsEqual(a, b []asn1.ObjectIdentifier) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

func asn1oid(o x509.OID) (asn1.ObjectIdentifier, error) {
	der, err := o.MarshalBinary()
	if err != nil {
		return nil, err
	}
	var out asn1.ObjectIdentifier
	_, err = asn1.Unmarshal(append([]byte{0x06, byte(len(der))}, der...), &out)
	return out, err
}
