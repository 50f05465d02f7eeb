package ekcert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// shared is the project's real EK certificate set; MANIFEST.md there describes every file.
const shared = "../../../shared/testdata/ekcerts"

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readEK(t testing.TB, name string) []byte { return readFile(t, filepath.Join(shared, "ek", name)) }

func date(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

// ekCase is one real EK certificate with what MANIFEST.md says about it.
type ekCase struct {
	file    string
	tpm12   bool            // RSAES-OAEP key: Parse must refuse it as TPM 1.2
	invalid string          // Parse must fail with ErrInvalid and this text (non-padding trailing bytes)
	applied []Normalisation // what Normalise must report
	derLen  int             // length of the clean DER
	vendor  string
	mfrID   string
	model   string
	version string
	key     string // "RSA-2048", "ECC P-256"
}

var ekCases = []ekCase{
	{file: "google-rsa-1.pem", applied: []Normalisation{NormPEM}, vendor: "Google", mfrID: "474F4F47", model: "vTPM", version: "id:20160511", key: "RSA-2048"},
	{file: "google-ecc-1.pem", applied: []Normalisation{NormPEM}, vendor: "Google", mfrID: "474F4F47", model: "vTPM", version: "id:20160511", key: "ECC P-256"},
	{file: "infineon-rsa-1.der", derLen: 1184, vendor: "Infineon", mfrID: "49465800", model: "SLB 9670 TPM2.0", version: "id:073f", key: "RSA-2048"},
	{file: "infineon-ecc-1.der", derLen: 788, vendor: "Infineon", mfrID: "49465800", model: "SLB 9670 TPM2.0", version: "id:073f", key: "ECC P-256"},
	{file: "infineon-rsa-2.der", derLen: 1184, vendor: "Infineon", mfrID: "49465800", model: "SLB 9670 TPM2.0", version: "id:0728", key: "RSA-2048"},
	{file: "infineon-rsa-3.der", tpm12: true, applied: []Normalisation{NormNVHeader, NormPadding}, derLen: 1397},
	{file: "intel-rsa-1.pem", applied: []Normalisation{NormPEM}, vendor: "Intel", mfrID: "494E5443", model: "SPT", version: "id:00020000", key: "RSA-2048"},
	{file: "intel-ecc-1.der", derLen: 1026, vendor: "Intel", mfrID: "494E5443", model: "GLK", version: "id:00020000", key: "ECC P-256"},
	{file: "nuvoton-rsa-1.der", derLen: 854, vendor: "Nuvoton", mfrID: "4E544300", model: "NPCT75x", version: "id:00070002", key: "RSA-2048"},
	{file: "nuvoton-rsa-2.der", derLen: 992, vendor: "Nuvoton", mfrID: "4E544300", model: "NPCT6xx", version: "id:13", key: "RSA-2048"},
	// 192 bytes of 0x11 after the DER: not padding, so refused before its TPM 1.2 key is even seen.
	{file: "nuvoton-rsa-3.der", invalid: "192 bytes of non-padding data after the certificate"},
	{file: "st-rsa-1.der", applied: []Normalisation{NormPadding}, derLen: 1169, vendor: "STMicroelectronics", mfrID: "53544D20", model: "ST33HTPHAHB4", version: "id:00490004", key: "RSA-2048"},
	{file: "st-ecc-1.der", derLen: 775, vendor: "STMicroelectronics", mfrID: "53544D20", model: "ST33HTPHAHB4", version: "id:00490004", key: "ECC P-256"},
	{file: "st-rsa-2.der", tpm12: true, applied: []Normalisation{NormNVHeader}, derLen: 1122},
	{file: "st-rsa-3.der", tpm12: true, derLen: 1122},
	{file: "st-rsa-4.pem", tpm12: true, applied: []Normalisation{NormPEM}},
	{file: "st-rsa-5.pem", tpm12: true, applied: []Normalisation{NormPEM}},
	{file: "st-rsa-6.der", derLen: 1033, vendor: "STMicroelectronics", mfrID: "53544D20", model: "ST33HTPHAHD8", version: "id:00010102", key: "RSA-2048"},
}

func TestEveryEKFileHasACase(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join(shared, "ek"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !slices.ContainsFunc(ekCases, func(c ekCase) bool { return c.file == e.Name() }) {
			t.Errorf("%s has no case in ekCases: add what MANIFEST.md says about it", e.Name())
		}
	}
}

func TestNormaliseRealEKs(t *testing.T) {
	for _, tc := range ekCases {
		t.Run(tc.file, func(t *testing.T) {
			raw := readEK(t, tc.file)
			der, applied, err := Normalise(raw)
			if tc.invalid != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.invalid) {
					t.Fatalf("Normalise error = %v, want ErrInvalid with %q", err, tc.invalid)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(applied, tc.applied) {
				t.Errorf("applied = %v, want %v", applied, tc.applied)
			}
			if tc.derLen != 0 && len(der) != tc.derLen {
				t.Errorf("DER is %d bytes, want %d", len(der), tc.derLen)
			}
			if len(tc.applied) == 0 && !bytes.Equal(der, raw) {
				t.Errorf("plain DER changed by Normalise")
			}
		})
	}
}

func TestParseRealEKs(t *testing.T) {
	for _, tc := range ekCases {
		t.Run(tc.file, func(t *testing.T) {
			raw := readEK(t, tc.file)
			c, err := Parse(raw)
			switch {
			case tc.invalid != "":
				if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrTPM12) {
					t.Fatalf("Parse error = %v, want ErrInvalid (not TPM 1.2)", err)
				}
				return
			case tc.tpm12:
				if !errors.Is(err, ErrInvalid) || !errors.Is(err, ErrTPM12) || !strings.Contains(err.Error(), "TPM 1.2") {
					t.Fatalf("Parse error = %v, want ErrInvalid and ErrTPM12", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Manufacturer != tc.vendor || c.ManufacturerID != tc.mfrID || c.Model != tc.model || c.Version != tc.version {
				t.Errorf("identity = %q %q %q %q, want %q %q %q %q", c.Manufacturer, c.ManufacturerID, c.Model, c.Version,
					tc.vendor, tc.mfrID, tc.model, tc.version)
			}
			if got := keyName(c.X509); got != tc.key {
				t.Errorf("key = %s, want %s", got, tc.key)
			}
			if !bytes.Equal(c.Raw, raw) || !bytes.Equal(c.DER, c.X509.Raw) || !slices.Equal(c.Applied, tc.applied) {
				t.Errorf("Raw/DER/Applied not filled in as documented")
			}
			if !c.sanOnlyDirName {
				t.Errorf("SAN of a real EK not recognised as holding only a directoryName")
			}
			if len(c.X509.UnhandledCriticalExtensions) != 1 || !c.X509.UnhandledCriticalExtensions[0].Equal(oidSubjectAltName) {
				t.Errorf("UnhandledCriticalExtensions = %v, MANIFEST says [2.5.29.17]", c.X509.UnhandledCriticalExtensions)
			}
		})
	}
}

// nuvoton-rsa-3 without its 0x11 filler is a clean TPM 1.2 EK: the OAEP key must be named as such.
func TestParseTPM12WithoutFiller(t *testing.T) {
	raw := readEK(t, "nuvoton-rsa-3.der")[:908]
	_, err := Parse(raw)
	if !errors.Is(err, ErrTPM12) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("Parse = %v, want ErrTPM12", err)
	}
}

func TestParseSwtpmEKs(t *testing.T) {
	for _, f := range []string{"ek-rsa2048.nv", "ek-secp384r1.nv"} {
		c, err := Parse(readFile(t, filepath.Join("testdata/swtpm", f)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if c.ManufacturerID != "00001014" || c.Manufacturer != "IBM (swtpm)" || c.Model != "swtpm" || c.Version != "id:20191023" {
			t.Errorf("%s: identity = %q %q %q %q", f, c.ManufacturerID, c.Manufacturer, c.Model, c.Version)
		}
		if len(c.Applied) != 0 {
			t.Errorf("%s: applied %v to plain DER", f, c.Applied)
		}
	}
}

func TestManufacturerCode(t *testing.T) {
	c, err := Parse(readEK(t, "st-ecc-1.der"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ManufacturerCode(); got != 0x53544D20 { // "STM "
		t.Errorf("ManufacturerCode = %#x", got)
	}
	if VendorName(0x49465800) != "Infineon" || VendorName(0x12345678) != "" {
		t.Errorf("VendorName lookup wrong")
	}
}

func TestParseKeyTypes(t *testing.T) {
	c, err := Parse(readEK(t, "infineon-ecc-1.der"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.X509.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("ECC EK parsed as %T", c.X509.PublicKey)
	}
	c, err = Parse(readEK(t, "infineon-rsa-1.der"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.X509.PublicKey.(*rsa.PublicKey); !ok {
		t.Errorf("RSA EK parsed as %T", c.X509.PublicKey)
	}
}

// A CA certificate parses (it is not an EK, which is the Verifier's call) and has no TPM identity.
func TestParseCACertificate(t *testing.T) {
	c, err := Parse(readFile(t, filepath.Join(shared, "ca/infineon-intermediate-1.pem")))
	if err != nil {
		t.Fatal(err)
	}
	if c.ManufacturerID != "" || c.Model != "" || c.sanOnlyDirName {
		t.Errorf("CA certificate given a TPM identity: %+v", c)
	}
}
