package ekcert

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadCertificatesDir(t *testing.T) {
	certs, warnings, err := LoadCertificates(filepath.Join(shared, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(shared, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	// One certificate per file; st-intermediate-3 (non-minimal serial) is the one Go refuses.
	if len(certs) != len(entries)-1 {
		t.Errorf("loaded %d certificates from %d files, want %d", len(certs), len(entries), len(entries)-1)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "st-intermediate-3.pem") || !strings.Contains(warnings[0], "serial") {
		t.Errorf("warnings = %q, want one about st-intermediate-3.pem's serial", warnings)
	}
}

func TestLoadCertificatesFiles(t *testing.T) {
	// DER file.
	certs, warnings, err := LoadCertificates(filepath.Join(shared, "ca/google-root-1.der"))
	if err != nil || len(certs) != 1 || len(warnings) != 0 {
		t.Fatalf("DER file: %d certs, %q, %v", len(certs), warnings, err)
	}
	// A bundle of several PEM blocks, one bad, with text around them.
	dir := t.TempDir()
	var bundle bytes.Buffer
	bundle.WriteString("# TPM vendor bundle\n")
	for _, f := range []string{"infineon-root-1.pem", "st-intermediate-3.pem", "nuvoton-root-1.pem"} {
		bundle.Write(readFile(t, filepath.Join(shared, "ca", f)))
		bundle.WriteString("\n")
	}
	path := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(path, bundle.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	certs, warnings, err = LoadCertificates(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || len(warnings) != 1 || !strings.Contains(warnings[0], "certificate 2 skipped") {
		t.Errorf("bundle: %d certs, warnings %q; want 2 and one about certificate 2", len(certs), warnings)
	}
}

func TestLoadCertificatesFailures(t *testing.T) {
	if _, _, err := LoadCertificates(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing path loaded")
	}
	dir := t.TempDir()
	for name, body := range map[string][]byte{
		"notes.txt":   []byte("not a certificate"),
		"empty.pem":   nil,
		"key.pem":     []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
		".hidden.pem": readFile(t, filepath.Join(shared, "ca/nuvoton-root-1.pem")),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	certs, warnings, err := LoadCertificates(dir)
	if err == nil || len(certs) != 0 {
		t.Fatalf("directory of no certificates: %d certs, err %v", len(certs), err)
	}
	if len(warnings) != 3 {
		t.Errorf("warnings = %q, want one per non-hidden file", warnings)
	}
	// Over the size bound.
	big := filepath.Join(t.TempDir(), "big.pem")
	if err := os.WriteFile(big, bytes.Repeat([]byte{'A'}, maxCAFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	_, warnings, err = LoadCertificates(big)
	if err == nil || len(warnings) != 1 || !strings.Contains(warnings[0], "larger than") {
		t.Errorf("oversized file: %q %v", warnings, err)
	}
}

func TestDescribe(t *testing.T) {
	roots, inters := vendorCAs(t)
	v := &Verifier{Roots: roots, Intermediates: inters, Now: fixedNow("2027-06-01")}

	r := Describe(readEK(t, "st-rsa-1.der"), v)
	if !r.Verified || r.Err != nil {
		t.Fatalf("st-rsa-1: %+v", r)
	}
	if r.Manufacturer != "STMicroelectronics" || r.Model != "ST33HTPHAHB4" || r.Version != "id:00490004" || r.Key != "RSA-2048" {
		t.Errorf("identity: %+v", r)
	}
	if len(r.Chain) != 4 || r.Chain[0] != "(EK)" || !strings.Contains(r.Chain[3], "GlobalSign Trusted Platform Module Root CA") {
		t.Errorf("chain = %q", r.Chain)
	}
	if r.Serial != "4CBD0FE61EE762EDB28D50B268FC3586FF3D5E82" || !r.NotAfter.Equal(time.Date(2028, 7, 11, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("serial %s, notAfter %s (MANIFEST: 4CBD...5E82, 2028-07-11)", r.Serial, r.NotAfter)
	}
	s := r.String()
	for _, want := range []string{
		"vendor:     STMicroelectronics (id:53544D20)\n",
		"model:      ST33HTPHAHB4\n",
		"firmware:   id:00490004\n",
		"normalised: padding\n",
		"chain:      (EK) -> CN=STM TPM EK Intermediate CA 05",
		"verdict:    OK\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}
	for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if !strings.Contains(l, ": ") {
			t.Errorf("line %q is not field: value", l)
		}
	}

	// TPM 1.2 behind an NV header: the normalisation is still reported, the verdict says why.
	r = Describe(readEK(t, "st-rsa-2.der"), v)
	if r.Verified || !errors.Is(r.Err, ErrTPM12) {
		t.Fatalf("st-rsa-2: %+v", r)
	}
	if s := r.String(); !strings.Contains(s, "normalised: nv-header\n") || !strings.Contains(s, "verdict:    REJECTED: invalid EK certificate: TPM 1.2 EK certificate, not TPM 2.0") {
		t.Errorf("st-rsa-2 report:\n%s", s)
	}

	// Wrong vendor: parsed fields shown, verdict untrusted.
	r = Describe(readEK(t, "infineon-rsa-1.der"), &Verifier{Roots: loadCA(t, "nuvoton-root-1.pem"), Now: v.Now})
	if r.Verified || !errors.Is(r.Err, ErrUntrusted) || r.Model != "SLB 9670 TPM2.0" || len(r.Chain) != 0 {
		t.Errorf("infineon against Nuvoton: %+v", r)
	}

	// No verifier: parsed only.
	r = Describe(readEK(t, "intel-ecc-1.der"), nil)
	if r.Verified || r.Err != nil || !strings.Contains(r.String(), "verdict:    parsed, not verified") {
		t.Errorf("no verifier: %+v", r)
	}

	// Garbage: one verdict line, nothing else invented.
	r = Describe([]byte("hello"), v)
	if s := r.String(); !errors.Is(r.Err, ErrInvalid) || strings.Count(s, "\n") != 2 {
		t.Errorf("garbage report:\n%s", s)
	}
}

func TestReportPrintable(t *testing.T) {
	r := Report{ManufacturerID: "49465800", Model: "x", Key: "RSA-2048", Issuer: "CN=evil\x1b[2J\n"}
	s := r.String()
	if strings.Contains(s, "\x1b") || !strings.Contains(s, `CN=evil\x1b[2J\n`) {
		t.Errorf("control characters reach the terminal:\n%q", s)
	}
}
