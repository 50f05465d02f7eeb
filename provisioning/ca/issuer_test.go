package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/provisioning"
)

// testTPM is what swtpm 0.7.1 reports (tpm2_getcap properties-fixed on these machines).
var testTPM = provisioning.TPMInfo{Manufacturer: "IBM", ManufacturerID: 0x49424D00, VendorString: "SW TPM",
	Firmware: "8217.4131.22.13878"}

var (
	oidEKU      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidPolicies = asn1.ObjectIdentifier{2, 5, 29, 32}
)

func testIssuer(t *testing.T) (*Issuer, *KeyPair, *KeyPair, time.Time) {
	t.Helper()
	root, iss, _ := testPKI(t)
	// The issuer's clock agrees with the PKI it is checked against: a day into the test PKI's validity.
	now := root.Cert.NotBefore.Add(24 * time.Hour)
	is := &Issuer{CA: iss.Cert, Key: iss.Key, Root: root.Cert, Organization: "Acme Boards", Now: func() time.Time { return now }}
	return is, root, iss, now
}

// checkCommon checks what both profiles share: chain, serial, issuer, validity, keyUsage, CA false, AKI/SKI,
// the key, and policies.
func checkCommon(t *testing.T, c *x509.Certificate, root, iss *KeyPair, now time.Time, pub any, policies []asn1.ObjectIdentifier) {
	t.Helper()
	if c.Version != 3 {
		t.Fatalf("version %d", c.Version)
	}
	// Chain. An empty-subject certificate's critical SAN is one Go leaves to the relying party (it holds no
	// name Go knows); step-ca and WebAuthn verifiers clear exactly that OID before verifying, as here.
	cc := *c
	cc.UnhandledCriticalExtensions = nil
	for _, o := range c.UnhandledCriticalExtensions {
		if !o.Equal(oidSubjectAltName) {
			cc.UnhandledCriticalExtensions = append(cc.UnhandledCriticalExtensions, o)
		}
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root.Cert)
	inter.AddCert(iss.Cert)
	if _, err := cc.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now.Add(time.Hour), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckSignatureFrom(iss.Cert); err != nil {
		t.Fatal(err)
	}
	if c.SerialNumber.Sign() <= 0 || len(c.SerialNumber.Bytes()) != 16 {
		t.Fatalf("serial %x", c.SerialNumber)
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
	if k, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(c.PublicKey) {
		t.Fatal("certificate is not for the key")
	}
	var got []asn1.ObjectIdentifier
	for _, p := range c.Policies {
		o, err := asn1oid(p)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, o)
	}
	if !oidsEqual(got, policies) {
		t.Fatalf("policies %v, want %v", got, policies)
	}
	if len(c.DNSNames)+len(c.EmailAddresses)+len(c.IPAddresses)+len(c.URIs) != 0 {
		t.Fatal("unexpected SAN entries")
	}
	for _, ext := range c.Extensions {
		if ext.Id.Equal(oidPolicies) && ext.Critical {
			t.Fatal("certificatePolicies marked critical")
		}
	}
}

// sanExtension returns the certificate's single SAN extension.
func sanExtension(t *testing.T, c *x509.Certificate) pkix.Extension {
	t.Helper()
	var out []pkix.Extension
	for _, ext := range c.Extensions {
		if ext.Id.Equal(oidSubjectAltName) {
			out = append(out, ext)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%d SAN extensions", len(out))
	}
	return out[0]
}

// TestIAKProfile parses an issued IAK certificate field by field against the WebAuthn TPM attestation
// certificate requirements (what step-ca's validateAKCertificate checks) and DESIGN.md.
func TestIAKProfile(t *testing.T) {
	is, root, iss, now := testIssuer(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := Board{Serial: "SN-0001/A", Product: "widget-1", TPM: testTPM}
	der, err := is.IssueIAK(&key.PublicKey, b)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	checkCommon(t, c, root, iss, now, &key.PublicKey, []asn1.ObjectIdentifier{OIDVerifiedTPMRestricted})
	// Subject: empty, encoded as an empty SEQUENCE.
	if !bytes.Equal(c.RawSubject, []byte{0x30, 0x00}) || c.Subject.String() != "" {
		t.Fatalf("subject %q (% x)", c.Subject, c.RawSubject)
	}
	// EKU: exactly tcg-kp-AIKCertificate, nothing Go knows.
	if len(c.ExtKeyUsage) != 0 || !oidsEqual(c.UnknownExtKeyUsage, []asn1.ObjectIdentifier{OIDAIKCertificate}) {
		t.Fatalf("EKU %v %v", c.ExtKeyUsage, c.UnknownExtKeyUsage)
	}
	// SAN: critical (the subject is empty), Go's only unhandled critical extension.
	if !sanExtension(t, c).Critical {
		t.Fatal("SAN not critical with an empty subject")
	}
	if len(c.UnhandledCriticalExtensions) != 1 || !c.UnhandledCriticalExtensions[0].Equal(oidSubjectAltName) {
		t.Fatalf("unhandled critical extensions %v", c.UnhandledCriticalExtensions)
	}
	// SAN contents: the directoryName, then the permanentIdentifier, nothing else.
	names, err := sanNames(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 || names[0].Tag != 4 || names[1].Tag != 0 {
		t.Fatalf("SAN general names %+v", names)
	}
	attrs, err := ParseTCGAttributes(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := (TCGAttributes{Manufacturer: "id:49424D00", Model: "SW TPM", Version: "id:20191023"}); attrs != want {
		t.Fatalf("TCG attributes %+v, want %+v", attrs, want)
	}
	// The attribute values are UTF8Strings (TCG EK Credential Profile 3.1.2).
	var rdns pkix.RDNSequence
	if _, err := asn1.Unmarshal(names[0].Bytes, &rdns); err != nil || len(rdns) != 3 {
		t.Fatalf("directoryName: %v, %d RDNs", err, len(rdns))
	}
	if n := bytes.Count(names[0].Bytes, []byte{0x0C}); n < 3 { // UTF8String tag
		t.Fatalf("directoryName has %d UTF8String tags", n)
	}
	id, assigner, err := ParsePermanentIdentifier(c)
	if err != nil {
		t.Fatal(err)
	}
	if id != b.Serial || assigner != nil {
		t.Fatalf("permanentIdentifier %q %v", id, assigner)
	}
	if _, _, err := parseHardwareModuleName(c); err == nil {
		t.Fatal("hardwareModuleName in the IAK without the product asking for it")
	}

	t.Run("assigner and hardwareModuleName when asked", func(t *testing.T) {
		is2 := *is
		is2.PermanentIDAssigner = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}
		is2.IAKHardwareModuleName = true
		der, err := is2.IssueIAK(&key.PublicKey, b)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		id, assigner, err := ParsePermanentIdentifier(c)
		if err != nil || id != b.Serial || !assigner.Equal(is2.PermanentIDAssigner) {
			t.Fatalf("permanentIdentifier %q %v %v", id, assigner, err)
		}
		hwType, hwSerial, err := parseHardwareModuleName(c)
		if err != nil || !hwType.Equal(OIDTPM20HWType) || string(hwSerial) != b.Serial {
			t.Fatalf("hardwareModuleName %v %q %v", hwType, hwSerial, err)
		}
	})
	t.Run("a TPM it cannot name is refused", func(t *testing.T) {
		for _, info := range []provisioning.TPMInfo{
			{},
			{Manufacturer: "IBM", VendorString: "SW TPM", Firmware: "1.2"},
			{Manufacturer: "IBM", Firmware: "1.2.3.4"},
			{Manufacturer: "TOOLONG", VendorString: "x", Firmware: "1.2.3.4"},
		} {
			if _, err := is.IssueIAK(&key.PublicKey, Board{Serial: "S", TPM: info}); err == nil {
				t.Fatalf("issued for %+v", info)
			}
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

// TestIDevIDProfile parses an issued IDevID certificate field by field (IEEE 802.1AR DevID profile).
func TestIDevIDProfile(t *testing.T) {
	is, root, iss, now := testIssuer(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := Board{Serial: "SN-0001/A", Product: "widget-1", TPM: testTPM}
	der, err := is.IssueIDevID(&key.PublicKey, b)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	checkCommon(t, c, root, iss, now, &key.PublicKey, []asn1.ObjectIdentifier{OIDVerifiedTPMResidency, OIDVerifiedTPMFixed})
	if c.Subject.SerialNumber != b.Serial || c.Subject.CommonName != "widget-1" || len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != "Acme Boards" {
		t.Fatalf("subject %v", c.Subject)
	}
	for _, ext := range c.Extensions {
		if ext.Id.Equal(oidEKU) {
			t.Fatal("IDevID carries an EKU")
		}
	}
	if sanExtension(t, c).Critical {
		t.Fatal("SAN critical with a non-empty subject")
	}
	if len(c.UnhandledCriticalExtensions) != 0 {
		t.Fatalf("unhandled critical extensions %v", c.UnhandledCriticalExtensions)
	}
	names, err := sanNames(c)
	if err != nil || len(names) != 1 {
		t.Fatalf("SAN %d names, %v", len(names), err)
	}
	hwType, hwSerial, err := parseHardwareModuleName(c)
	if err != nil {
		t.Fatal(err)
	}
	if !hwType.Equal(OIDTPM20HWType) || string(hwSerial) != b.Serial {
		t.Fatalf("hardwareModuleName %v %q", hwType, hwSerial)
	}
	if _, _, err := ParsePermanentIdentifier(c); err == nil {
		t.Fatal("permanentIdentifier in the IDevID")
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
}

// TestProfilesOpenSSL has OpenSSL, a parser we did not write, print both certificates and check the
// fields a relying party reads; `openssl verify -purpose sslclient` refuses the IAK (its EKU is the TCG's
// only) and accepts the IDevID.
func TestProfilesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl not installed: install openssl (make test installs it)")
	}
	is, root, iss, now := testIssuer(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := Board{Serial: "SN-0001", Product: "widget-1", TPM: testTPM}
	iak, err := is.IssueIAK(&key.PublicKey, b)
	if err != nil {
		t.Fatal(err)
	}
	idevid, err := is.IssueIDevID(&key.PublicKey, b)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, ders ...[]byte) string {
		var buf bytes.Buffer
		for _, d := range ders {
			_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: d})
		}
		p := dir + "/" + name
		if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	iakPath, idevidPath := write("iak.pem", iak), write("idevid.pem", idevid)
	caPath := write("ca.pem", root.Cert.Raw)
	interPath := write("inter.pem", iss.Cert.Raw)
	text := func(p string) string {
		out, err := exec.Command("openssl", "x509", "-in", p, "-noout", "-text").CombinedOutput()
		if err != nil {
			t.Fatalf("openssl x509: %v\n%s", err, out)
		}
		return string(out)
	}
	iakText := text(iakPath)
	for _, want := range []string{
		"Version: 3 (0x2)", "Subject: \n", "X509v3 Subject Alternative Name: critical",
		"DirName:/2.23.133.2.1=id:49424D00/2.23.133.2.2=SW TPM/2.23.133.2.3=id:20191023",
		"othername: Permanent Identifier::", "X509v3 Extended Key Usage: \n                2.23.133.8.3\n",
		"CA:FALSE", "Policy: 2.23.133.11.1.3", "Digital Signature",
	} {
		if !strings.Contains(iakText, want) {
			t.Errorf("openssl's IAK text lacks %q:\n%s", want, iakText)
		}
	}
	idevidText := text(idevidPath)
	for _, want := range []string{"serialNumber = SN-0001", "othername: 1.3.6.1.5.5.7.8.4::", "Policy: 2.23.133.11.1.1", "Policy: 2.23.133.11.1.2", "CA:FALSE"} {
		if !strings.Contains(idevidText, want) {
			t.Errorf("openssl's IDevID text lacks %q:\n%s", want, idevidText)
		}
	}
	verify := func(p string) (string, error) {
		// At the issuer's time: the test PKI lives on the product clock, which make clockcheck moves.
		out, err := exec.Command("openssl", "verify", "-attime", fmt.Sprint(now.Add(time.Hour).Unix()), "-purpose", "sslclient", "-CAfile", caPath, "-untrusted", interPath, p).CombinedOutput()
		return string(out), err
	}
	if out, err := verify(idevidPath); err != nil {
		t.Errorf("openssl verify -purpose sslclient refused the IDevID: %v\n%s", err, out)
	}
	if out, err := verify(iakPath); err == nil || !strings.Contains(out, "unsuitable certificate purpose") {
		t.Errorf("openssl verify -purpose sslclient on the IAK: %v\n%s", err, out)
	}
}

func TestTCGDeviceAttributes(t *testing.T) {
	for _, tc := range []struct {
		name string
		info provisioning.TPMInfo
		want TCGAttributes
		bad  bool
	}{
		{"swtpm", testTPM, TCGAttributes{"id:49424D00", "SW TPM", "id:20191023"}, false},
		{"ST keeps its trailing space", provisioning.TPMInfo{Manufacturer: "STM", ManufacturerID: 0x53544D20, VendorString: "ST33HTPHAHB4", Firmware: "73.4.0.0"},
			TCGAttributes{"id:53544D20", "ST33HTPHAHB4", "id:00490004"}, false},
		{"model over vendor strings", provisioning.TPMInfo{Manufacturer: "IFX", ManufacturerID: 0x49465800, VendorString: "SLB9670", Model: "SLB 9670 TPM2.0", Firmware: "7.85.4555.0"},
			TCGAttributes{"id:49465800", "SLB 9670 TPM2.0", "id:00070055"}, false},
		{"text only: NUL-padded", provisioning.TPMInfo{Manufacturer: "IFX", VendorString: "SLB9670", Firmware: "7.85.4555.0"},
			TCGAttributes{"id:49465800", "SLB9670", "id:00070055"}, false},
		{"no manufacturer", provisioning.TPMInfo{VendorString: "x", Firmware: "1.2.3.4"}, TCGAttributes{}, true},
		{"no model", provisioning.TPMInfo{Manufacturer: "IFX", Firmware: "1.2.3.4"}, TCGAttributes{}, true},
		{"bad firmware", provisioning.TPMInfo{Manufacturer: "IFX", VendorString: "x", Firmware: "seven"}, TCGAttributes{}, true},
		{"firmware out of range", provisioning.TPMInfo{Manufacturer: "IFX", VendorString: "x", Firmware: "70000.1.2.3"}, TCGAttributes{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := TCGDeviceAttributes(tc.info)
			if (err != nil) != tc.bad || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v (error %v)", got, err, tc.want, tc.bad)
			}
		})
	}
}

// TestCheckTPMInfo has one case per check of CheckTPMInfo.
func TestCheckTPMInfo(t *testing.T) {
	swtpmEK := func() *x509.Certificate {
		der, err := os.ReadFile("../ekcert/testdata/swtpm/ek-rsa2048.nv")
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}()
	// An Infineon-style EK certificate: only its SAN matters here.
	_, iss, _ := testPKI(t)
	dn, err := directoryName(TCGAttributes{"id:49465800", "SLB 9670 TPM2.0", "id:073f"})
	if err != nil {
		t.Fatal(err)
	}
	san, _ := asn1.Marshal([]asn1.RawValue{dn})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: iss.Cert.NotBefore, NotAfter: iss.Cert.NotAfter,
		ExtraExtensions: []pkix.Extension{{Id: oidSubjectAltName, Critical: true, Value: san}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, iss.Cert, &key.PublicKey, iss.Key)
	if err != nil {
		t.Fatal(err)
	}
	ifxEK, _ := x509.ParseCertificate(der)
	ifx := provisioning.TPMInfo{Manufacturer: "IFX", ManufacturerID: 0x49465800, VendorString: "SLB9670", Firmware: "7.85.4555.0"}

	for _, tc := range []struct {
		name string
		info provisioning.TPMInfo
		ek   *x509.Certificate
		ok   bool
	}{
		{"no EK certificate to compare", ifx, nil, true},
		{"matches the EK certificate", ifx, ifxEK, true},
		{"another vendor than the EK certificate", testTPM, ifxEK, false},
		{"swtpm_setup's PCI vendor ID is the one tolerated quirk", testTPM, swtpmEK, true},
		{"the quirk is swtpm's only", ifx, swtpmEK, false},
		{"ID and text disagree", provisioning.TPMInfo{Manufacturer: "STM", ManufacturerID: 0x49465800, VendorString: "x", Firmware: "1.2.3.4"}, nil, false},
		{"underivable", provisioning.TPMInfo{Manufacturer: "IFX"}, nil, false},
		{"EK certificate without TPM attributes", ifx, iss.Cert, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckTPMInfo(tc.info, tc.ek); (err == nil) != tc.ok {
				t.Fatalf("CheckTPMInfo: %v, want ok=%v", err, tc.ok)
			}
		})
	}
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

// TestIDevIDNullSchemeAccepted: the CA's IDevID checks accept the profile option's NULL-scheme ECC IDevID.
func TestIDevIDNullSchemeAccepted(t *testing.T) {
	tmpl, err := provisioning.IDevIDTemplateFor(provisioning.KeyP256, provisioning.IDevIDSchemeNull)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	x, y := make([]byte, 32), make([]byte, 32)
	key.X.FillBytes(x)
	key.Y.FillBytes(y)
	tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: x}, Y: tpm2.TPM2BECCParameter{Buffer: y}})
	ka, err := checkIDevID(&tmpl, tpm2.Marshal(tmpl))
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(ka.Public) {
		t.Fatal("checked key differs")
	}
}

// FuzzTCGDeviceAttributes: the station's TPM description is untrusted input that ends up in the IAK
// certificate; whatever it holds, CheckTPMInfo and the issuer never panic, and what CheckTPMInfo accepts
// encodes.
func FuzzTCGDeviceAttributes(f *testing.F) {
	f.Add("IBM", uint32(0x49424D00), "SW TPM", "8217.4131.22.13878", "")
	f.Add("STM", uint32(0x53544D20), "", "73.4.0.0", "ST33HTPHAHB4")
	f.Add("", uint32(0), "", "", "")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root, iss, _ := testPKI(f)
	is := &Issuer{CA: iss.Cert, Key: iss.Key, Root: root.Cert}
	f.Fuzz(func(t *testing.T, mfr string, id uint32, vendor, firmware, model string) {
		info := provisioning.TPMInfo{Manufacturer: mfr, ManufacturerID: id, VendorString: vendor, Firmware: firmware, Model: model}
		if err := CheckTPMInfo(info, nil); err != nil {
			return
		}
		der, err := is.IssueIAK(&key.PublicKey, Board{Serial: "S", TPM: info})
		if err != nil {
			t.Fatalf("CheckTPMInfo accepted %+v, the issuer refused it: %v", info, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseTCGAttributes(c)
		want, _ := TCGDeviceAttributes(info)
		if err != nil || got != want {
			t.Fatalf("read back %+v, %v; want %+v", got, err, want)
		}
	})
}
