package ekcert

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// nvHeader builds the TCG PC Client stored-certificate header for a certificate of n bytes.
func nvHeader(size int) []byte {
	return []byte{0x10, 0x01, 0x00, byte(size >> 8), byte(size), 0x10, 0x02}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestNormaliseSynthetic(t *testing.T) {
	der := readEK(t, "infineon-rsa-1.der") // 1184 bytes: 30 82 04 9c ...
	n := len(der)
	pemText := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	crlf := bytes.ReplaceAll(pemText, []byte("\n"), []byte("\r\n"))
	octet := cat([]byte{0x04, 0x82, byte(n >> 8), byte(n)}, der)

	ok := []struct {
		name    string
		in      []byte
		applied []Normalisation
	}{
		{"plain DER", der, nil},
		{"0xFF padding", cat(der, bytes.Repeat([]byte{0xFF}, 431)), []Normalisation{NormPadding}},
		{"0x00 padding", cat(der, bytes.Repeat([]byte{0x00}, 300)), []Normalisation{NormPadding}},
		{"one padding byte", cat(der, []byte{0xFF}), []Normalisation{NormPadding}},
		{"octet string wrapper", octet, []Normalisation{NormOctetString}},
		{"octet string wrapper then padding", cat(octet, bytes.Repeat([]byte{0xFF}, 16)), []Normalisation{NormOctetString, NormPadding}},
		{"NV header", cat(nvHeader(n+2), der), []Normalisation{NormNVHeader}},
		{"NV header then zeros", cat(nvHeader(n+2), der, make([]byte, 300)), []Normalisation{NormNVHeader, NormPadding}},
		{"short NV header", cat(nvHeader(n)[:5], der), []Normalisation{NormNVHeader}},
		{"short NV header then 0xFF", cat(nvHeader(n)[:5], der, bytes.Repeat([]byte{0xFF}, 30)), []Normalisation{NormNVHeader, NormPadding}},
		{"PEM", pemText, []Normalisation{NormPEM}},
		{"PEM with CRLF", crlf, []Normalisation{NormPEM}},
		{"PEM after text", cat([]byte("Subject:\nIssuer: C=DE\n\n"), pemText, []byte("trailing notes\n")), []Normalisation{NormPEM}},
		{"PEM after text starting with 0", cat([]byte("0 warnings\n"), pemText), []Normalisation{NormPEM}},
		{"PEM after UTF-8 text", cat([]byte("Zertifikat für Prüfung\n"), pemText), []Normalisation{NormPEM}},
		{"PEM with a key block first", cat(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), pemText), []Normalisation{NormPEM}},
		{"PEM of an NV dump", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cat(nvHeader(n+2), der)}), []Normalisation{NormPEM, NormNVHeader}},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			got, applied, err := Normalise(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, der) {
				t.Errorf("DER differs from the certificate (%d bytes, want %d)", len(got), n)
			}
			if !slices.Equal(applied, tc.applied) {
				t.Errorf("applied = %v, want %v", applied, tc.applied)
			}
		})
	}

	bad := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"1 MiB", cat(der, bytes.Repeat([]byte{0xFF}, 1<<20)), "over the 16384-byte limit"},
		{"garbage after the DER", cat(der, []byte("hello")), "5 bytes of non-padding data"},
		{"padding then garbage", cat(der, []byte{0xFF, 0xFF, 0x01}), "not all 0xff padding"},
		{"mixed padding", cat(der, []byte{0xFF, 0x00}), "not all 0xff padding"},
		{"a second certificate after the first", cat(der, der), "non-padding data"},
		{"truncated DER", der[:n-1], "truncated"},
		{"DER then a PEM certificate", cat(der, pemText), "non-padding data"},
		{"header only", der[:4], "truncated"},
		{"one byte", []byte{0x30}, "truncated"},
		{"indefinite length", cat([]byte{0x30, 0x80}, der[4:], []byte{0, 0}), "indefinite length"},
		{"non-minimal length", cat([]byte{0x30, 0x83, 0x00, 0x04, 0x9c}, der[4:]), "superfluous leading zeros in length"},
		{"long-form length of a short value", []byte{0x30, 0x81, 0x05, 1, 2, 3, 4, 5}, "non-minimal length"},
		{"length of 4 octets", []byte{0x30, 0x84, 0x00, 0x00, 0x04, 0x9c}, "superfluous leading zeros in length"},
		{"NV header length too short", cat(nvHeader(n), der), "NV header declares a 1182-byte certificate but the certificate is 1184 bytes"},
		{"NV header length too long", cat(nvHeader(n+12), der, make([]byte, 10)), "NV header declares a 1194-byte certificate but the certificate is 1184 bytes"},
		{"NV header length past the end", cat(nvHeader(n+100), der), "declares 1284 bytes but 1186 follow"},
		{"short NV header size too short", cat(nvHeader(n - 1)[:5], der), "NV header declares a 1183-byte certificate but the certificate is 1184 bytes"},
		{"short NV header size past the end", cat(nvHeader(n + 1)[:5], der), "declares 1185 bytes but 1184 follow"},
		{"NV header with garbage after", cat(nvHeader(n+2), der, []byte{0x11, 0x11}), "non-padding data"},
		{"NV header with nothing", nvHeader(2), "no certificate bytes"},
		{"octet string with extra inside", cat([]byte{0x04, 0x82, byte((n + 1) >> 8), byte(n + 1)}, der, []byte{0}), "1 bytes after the certificate inside the OCTET STRING"},
		{"octet string of garbage", []byte{0x04, 0x02, 0x01, 0x02}, "does not hold a certificate SEQUENCE"},
		{"octet string truncated", octet[:100], "OCTET STRING wrapper"},
		{"not a certificate", []byte("just some text"), "neither DER, PEM nor a TCG NV blob"},
		{"bare base64", []byte(base64.StdEncoding.EncodeToString(der)), "neither DER, PEM nor a TCG NV blob"},
		{"PEM with broken base64", []byte("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"), "no valid PEM CERTIFICATE block"},
		{"PEM with two certificates", cat(pemText, pemText), "2 PEM CERTIFICATE blocks"},
		{"PEM of padding only", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0xFF, 0xFF}}), "does not start with a DER SEQUENCE"},
		{"empty PEM", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE"}), "PEM CERTIFICATE block is empty"},
		{"PEM with headers", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: der}), "headers"},
		{"PEM trailing garbage in the block", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cat(der, []byte{7})}), "non-padding"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := Normalise(tc.in)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if got != nil {
				t.Errorf("returned %d bytes with an error", len(got))
			}
			if _, perr := Parse(tc.in); !errors.Is(perr, ErrInvalid) {
				t.Errorf("Parse = %v, want ErrInvalid", perr)
			}
		})
	}
}

// Normalise must not hand back the caller's buffer: Certificate.Raw and DER are kept side by side.
func TestNormaliseCopies(t *testing.T) {
	der := readEK(t, "st-ecc-1.der")
	in := bytes.Clone(der)
	got, _, err := Normalise(in)
	if err != nil {
		t.Fatal(err)
	}
	in[10] ^= 0xFF
	if !bytes.Equal(got, der) {
		t.Error("output aliases the input")
	}
}

// A certificate that parses as DER framing but not as X.509 is ErrInvalid from Parse.
func TestParseNotX509(t *testing.T) {
	_, err := Parse([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "x509") {
		t.Fatalf("Parse = %v, want ErrInvalid from x509", err)
	}
	// The MANIFEST's CA with a non-minimal serial: Go refuses it and so must Parse.
	_, err = Parse(readFile(t, filepath.Join(shared, "ca/st-intermediate-3.pem")))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "serial") {
		t.Fatalf("Parse(st-intermediate-3) = %v, want ErrInvalid about the serial", err)
	}
}
