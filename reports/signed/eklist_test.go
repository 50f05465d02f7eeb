package signed

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// marshalEKPublic builds the TPMT_PUBLIC of an EK from the TCG default templates (EK Credential Profile
// 2.0, B.3.3 L-1 and B.3.4 L-2) around a given key.
func marshalEKPublic(t testing.TB, pub crypto.PublicKey) []byte {
	var b []byte
	u16 := func(v uint16) { b = binary.BigEndian.AppendUint16(b, v) }
	tpm2b := func(v []byte) { u16(uint16(len(v))); b = append(b, v...) }
	policy := bytes.Repeat([]byte{0x83}, 32)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		u16(tpmAlgRSA)
		u16(0x000B)
		b = binary.BigEndian.AppendUint32(b, 0x000300B2)
		tpm2b(policy)
		u16(0x0006)
		u16(128)
		u16(0x0043) // AES-128-CFB
		u16(tpmAlgNull)
		u16(uint16(k.N.BitLen()))
		b = binary.BigEndian.AppendUint32(b, 0)
		tpm2b(k.N.Bytes())
	case *ecdsa.PublicKey:
		u16(tpmAlgECC)
		u16(0x000B)
		b = binary.BigEndian.AppendUint32(b, 0x000300B2)
		tpm2b(policy)
		u16(0x0006)
		u16(128)
		u16(0x0043)
		u16(tpmAlgNull)
		u16(tpmECCP256)
		u16(tpmAlgNull)
		raw, _ := k.Bytes()
		tpm2b(raw[1:33])
		tpm2b(raw[33:])
	default:
		t.Fatalf("key %T", pub)
	}
	return b
}

type ekFixture struct {
	key  crypto.Signer
	cert []byte
}

var ekFixtures []ekFixture

// syntheticEKs makes n EK keys with certificates from a test manufacturer CA (alternating RSA and ECC).
func syntheticEKs(t testing.TB, n int) []ekFixture {
	for len(ekFixtures) < n {
		caKey := ecKey(t)
		ca := makeCert(t, "test TPM vendor CA", true, &caKey.PublicKey, nil, caKey, t0.AddDate(-1, 0, 0), t0.AddDate(20, 0, 0))
		var key crypto.Signer
		if len(ekFixtures)%2 == 0 {
			key = ecKey(t)
		} else {
			key = testRSAKey(t)
			if len(ekFixtures) > 2 { // one RSA key is enough; the rest ECC
				key = ecKey(t)
			}
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(len(ekFixtures) + 1)), Subject: pkix.Name{},
			NotBefore: t0, NotAfter: t0.AddDate(20, 0, 0), KeyUsage: x509.KeyUsageKeyEncipherment}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		ekFixtures = append(ekFixtures, ekFixture{key, der})
	}
	return ekFixtures[:n]
}

func entryFor(t testing.TB, serial string, fx ekFixture) EKListEntry {
	sum, err := EKPublicSHA256(fx.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return EKListEntry{Serial: serial, EKCert: fx.cert, EKPublic: marshalEKPublic(t, fx.key.Public()),
		EKPublicSHA256: hex.EncodeToString(sum[:]), TPMManufacturer: "IFX", TPMModel: "SLB9672", TPMFirmware: "16.10"}
}

func sliceNext(es []EKListEntry) func() (*EKListEntry, error) {
	i := 0
	return func() (*EKListEntry, error) {
		if i == len(es) {
			return nil, io.EOF
		}
		i++
		return &es[i-1], nil
	}
}

var ekHdr = EKListHeader{Batch: "B-2025-0304-A", Product: "gw-200", Station: "line2-st01", Created: signedAt}

func writeEK(t testing.TB, format string, es []EKListEntry) []byte {
	t.Helper()
	h := ekHdr
	h.Entries = len(es)
	var buf bytes.Buffer
	if err := WriteEKList(&buf, format, h, sliceNext(es)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sampleEKEntries(t testing.TB) []EKListEntry {
	fx := syntheticEKs(t, 4)
	es := []EKListEntry{entryFor(t, "SN-000001", fx[0]), entryFor(t, "SN-000002", fx[1]), entryFor(t, "-42 (reworked)", fx[2]), entryFor(t, "SN-000004", fx[3])}
	es[1].EKCert = nil      // public only
	es[3].EKPublic = nil    // certificate only
	es[2].TPMModel = "=cmd" // a formula in a TPM string
	return es
}

func TestEKListRoundTrip(t *testing.T) {
	es := sampleEKEntries(t)
	for _, format := range []string{"csv", "json"} {
		t.Run(format, func(t *testing.T) {
			out := writeEK(t, format, es)
			l, err := ReadEKList(bytes.NewReader(out), 10)
			if err != nil {
				t.Fatal(err)
			}
			want := ekHdr
			want.Entries = len(es)
			if l.Header != want || len(l.Entries) != len(es) {
				t.Fatalf("header %+v, %d entries", l.Header, len(l.Entries))
			}
			for i, e := range l.Entries {
				w := es[i]
				if format == "csv" {
					w.Serial, w.TPMModel = Neutralise(w.Serial), Neutralise(w.TPMModel) // the reader undoes nothing
				}
				if e.Serial != w.Serial || e.TPMModel != w.TPMModel || !bytes.Equal(e.EKCert, w.EKCert) || !bytes.Equal(e.EKPublic, w.EKPublic) ||
					e.EKPublicSHA256 != w.EKPublicSHA256 || e.TPMManufacturer != w.TPMManufacturer || e.TPMFirmware != w.TPMFirmware {
					t.Fatalf("entry %d: got %+v\nwant %+v", i, e, w)
				}
			}
			if format == "csv" && !bytes.Contains(out, []byte("'-42 (reworked),")) || !bytes.Contains(out, []byte("=cmd")) {
				t.Fatalf("formula cells not neutralised:\n%s", out)
			}
			if format == "csv" && bytes.Contains(out, []byte(",=cmd")) {
				t.Fatal("=cmd written raw")
			}
			// Signed like a report.
			p := newTestPKI(t)
			sig := mustSign(t, p.stationSigner(t, ecKey(t)), out)
			if _, err := Verify(out, sig, p.roots); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestEKListRealCertificates runs the vendors' EK certificates (shared test data) through the list:
// their quirks (negative or padded serials, multi-valued RDNs, critical SAN) must not get in the way.
func TestEKListRealCertificates(t *testing.T) {
	dir := "../../../shared/testdata/ekcerts/ek"
	names := []string{"infineon-rsa-1.der", "infineon-ecc-1.der", "nuvoton-rsa-1.der", "st-ecc-1.der", "intel-ecc-1.der", "google-rsa-1.pem"}
	var es []EKListEntry
	for i, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Skipf("shared EK certificates not available: %v", err)
		}
		if blk, _ := pem.Decode(b); blk != nil {
			b = blk.Bytes
		}
		pub, err := certPublicKey(b)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		sum, _ := EKPublicSHA256(pub)
		es = append(es, EKListEntry{Serial: fmt.Sprintf("REAL-%d", i), EKCert: b, EKPublic: marshalEKPublic(t, pub), EKPublicSHA256: hex.EncodeToString(sum[:])})
	}
	for _, f := range []string{"csv", "json"} {
		if _, err := ReadEKList(bytes.NewReader(writeEK(t, f, es)), 0); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	// Padding after the DER (as read from NV) is the station's to strip; the list refuses it.
	padded := es[0]
	padded.EKCert = append(append([]byte{}, padded.EKCert...), 0xff, 0xff)
	h := ekHdr
	h.Entries = 1
	if err := WriteEKList(io.Discard, "json", h, sliceNext([]EKListEntry{padded})); err == nil || !strings.Contains(err.Error(), "not one DER") {
		t.Fatalf("padded cert: %v", err)
	}
}

func TestWriteEKListRefuses(t *testing.T) {
	es := sampleEKEntries(t)
	other := syntheticEKs(t, 5)[4]
	mismatch := es[0]
	mismatch.EKCert = other.cert // the certificate of another key
	badHash := es[0]
	badHash.EKPublicSHA256 = strings.Repeat("0", 64)
	for _, tc := range []struct {
		name   string
		format string
		hdr    func(*EKListHeader)
		next   func() (*EKListEntry, error)
		want   string
	}{
		{"fewer than declared", "csv", func(h *EKListHeader) { h.Entries = 5 }, sliceNext(es), "header says 5 entries but the source gave 4"},
		{"more than declared", "json", func(h *EKListHeader) { h.Entries = 3 }, sliceNext(es), "source has more"},
		{"source error", "json", func(h *EKListHeader) { h.Entries = 1 }, func() (*EKListEntry, error) { return nil, errors.New("db gone") }, "db gone"},
		{"nil entry", "json", func(h *EKListHeader) { h.Entries = 1 }, func() (*EKListEntry, error) { return nil, nil }, "no entry"},
		{"bad format", "xml", func(h *EKListHeader) { h.Entries = 4 }, sliceNext(es), "not csv or json"},
		{"no batch", "csv", func(h *EKListHeader) { h.Entries = 4; h.Batch = "" }, sliceNext(es), "batch is missing"},
		{"no created", "csv", func(h *EKListHeader) { h.Entries = 4; h.Created = time.Time{} }, sliceNext(es), "created"},
		{"cert of another key", "csv", func(h *EKListHeader) { h.Entries = 1 }, sliceNext([]EKListEntry{mismatch}), "different keys"},
		{"wrong hash", "csv", func(h *EKListHeader) { h.Entries = 1 }, sliceNext([]EKListEntry{badHash}), "not the SHA-256"},
		{"serial with newline", "csv", func(h *EKListHeader) { h.Entries = 1 }, sliceNext([]EKListEntry{func() EKListEntry { e := es[0]; e.Serial = "A\nB"; return e }()}), "serial has character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := ekHdr
			tc.hdr(&h)
			err := WriteEKList(io.Discard, tc.format, h, tc.next)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestReadEKListRejects(t *testing.T) {
	es := sampleEKEntries(t)[:2]
	csvOut := string(writeEK(t, "csv", es))
	jsonOut := string(writeEK(t, "json", es))
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	pub0 := b64(es[0].EKPublic)
	for _, tc := range []struct {
		name, in, want string
		max            int
	}{
		{"empty", "", "empty", 0},
		{"csv count mismatch", strings.Replace(csvOut, ",2\r\n", ",3\r\n", 1), "declares 3 entries but the file has 2", 0},
		{"csv more than declared", strings.Replace(csvOut, ",2\r\n", ",1\r\n", 1), "more entries than the 1", 0},
		{"csv over the reader's bound", csvOut, "over the reader's bound of 1", 1},
		{"csv bad base64", strings.Replace(csvOut, pub0, pub0[:len(pub0)-4]+"!!!!", 1), "not standard base64", 0},
		{"csv bad hex", strings.Replace(csvOut, es[0].EKPublicSHA256, strings.ToUpper(es[0].EKPublicSHA256), 1), "lowercase hex", 0},
		{"csv oversized field", strings.Replace(csvOut, "SN-000001", strings.Repeat("S", 65), 1), "over the 64-byte bound", 0},
		{"csv oversized line", strings.Replace(csvOut, "SN-000001", strings.Repeat("S", 20000), 1), "line is over", 0},
		{"csv unknown column", strings.Replace(csvOut, "ek_cert\r\n", "ek_certificate\r\n", 1), `want "ek_cert"`, 0},
		{"csv extra column", strings.Replace(csvOut, "ek_cert\r\n", "ek_cert,notes\r\n", 1), "has 8 columns, want 7", 0},
		{"csv formula cell", strings.Replace(csvOut, "SN-000002", "=SN-000002", 1), "spreadsheet formula", 0},
		{"csv formula in a TPM string", strings.Replace(csvOut, ",SLB9672,", ",@SUM(1),", 1), "spreadsheet formula", 0},
		{"csv wrong format", strings.Replace(csvOut, EKListFormat, "tpmline-ek-list/2", 1), "format is", 0},
		{"csv bad created", strings.Replace(csvOut, "2025-03-04T15:31:00Z", "2025-03-04T15:31:00+01:00", 1), "RFC 3339 UTC", 0},
		{"csv count not a number", strings.Replace(csvOut, ",2\r\n", ",02\r\n", 1), "plain integer", 0},
		{"json count mismatch", strings.Replace(jsonOut, `"entry_count": 2`, `"entry_count": 3`, 1), "declares 3 entries but the file has 2", 0},
		{"json bad base64", strings.Replace(jsonOut, pub0, "%"+pub0[1:], 1), "not standard base64", 0},
		{"json bad hex", strings.Replace(jsonOut, es[1].EKPublicSHA256, "zz"+es[1].EKPublicSHA256[2:], 1), "lowercase hex", 0},
		{"json unknown field", strings.Replace(jsonOut, `"serial":`, `"notes":"x","serial":`, 1), `unknown field "notes"`, 0},
		{"json unknown top field", strings.Replace(jsonOut, `"format":`, `"signature":"x","format":`, 1), `unknown field "signature"`, 0},
		{"json duplicate field", strings.Replace(jsonOut, `"serial":"SN-000001",`, `"serial":"SN-000001","serial":"SN-000009",`, 1), "appears twice", 0},
		{"json missing field", strings.Replace(jsonOut, `"tpm_firmware":"16.10",`, ``, 1), `"tpm_firmware" is missing`, 0},
		{"json number for string", strings.Replace(jsonOut, `"tpm_firmware":"16.10"`, `"tpm_firmware":16.10`, 1), "not a string", 0},
		{"json oversized field", strings.Replace(jsonOut, `"SLB9672"`, `"`+strings.Repeat("M", 65)+`"`, 1), "over the 64-byte bound", 0},
		{"json trailing data", jsonOut + "{}", "data after", 0},
		{"json truncated", jsonOut[:len(jsonOut)/2], "", 0},
		{"json oversized input", `{"format":"` + strings.Repeat("x", 30000) + `"}`, "over its size bound", 1},
		{"json entries before header", strings.Replace(jsonOut, `"entry_count": 2,`, ``, 1), `"entry_count" is missing or comes after`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.in == csvOut || tc.in == jsonOut {
				if tc.max == 0 {
					t.Fatal("the replacement did not apply")
				}
			}
			_, err := ReadEKList(strings.NewReader(tc.in), tc.max)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestParseTPMTPublicRejects(t *testing.T) {
	good := marshalEKPublic(t, ecKey(t).Public())
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(append([]byte{}, good...), 0)},
		{"keyedhash", append([]byte{0x00, 0x08}, good[2:]...)},
		{"off curve", append(append([]byte{}, good[:len(good)-1]...), good[len(good)-1]^1)},
	} {
		if _, err := parseTPMTPublic(tc.b); err == nil {
			t.Errorf("%s: parsed", tc.name)
		}
	}
}

func BenchmarkEKList100000(b *testing.B) {
	fx := syntheticEKs(b, 4)
	es := []EKListEntry{entryFor(b, "x", fx[0]), entryFor(b, "x", fx[1]), entryFor(b, "x", fx[2])}
	for _, format := range []string{"csv", "json"} {
		b.Run(format, func(b *testing.B) {
			var n int64
			for b.Loop() {
				h := ekHdr
				h.Entries = 100_000
				i := 0
				var e EKListEntry
				cw := &countWriter{}
				err := WriteEKList(cw, format, h, func() (*EKListEntry, error) {
					if i == h.Entries {
						return nil, io.EOF
					}
					e = es[i%len(es)]
					e.Serial = fmt.Sprintf("SN-%07d", i)
					i++
					return &e, nil
				})
				if err != nil {
					b.Fatal(err)
				}
				n = cw.n
			}
			b.ReportMetric(float64(n), "bytes/file")
		})
	}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

var _ = elliptic.P256
