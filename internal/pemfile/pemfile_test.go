package pemfile

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func certPEM(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) // a fixed date: nothing here checks validity
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: start, NotAfter: start.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func write(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.pem")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCertificates(t *testing.T) {
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})
	p := write(t, append(append(certPEM(t, "one"), key...), certPEM(t, "two")...))
	certs, err := Certificates(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || certs[0].Subject.CommonName != "one" || certs[1].Subject.CommonName != "two" {
		t.Fatalf("got %d certificates, want one and two in file order (the key block passed over)", len(certs))
	}
}

func TestCertificatesRefuses(t *testing.T) {
	bad := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	for _, c := range []struct {
		name, path, want string
	}{
		{"missing file", filepath.Join(t.TempDir(), "absent.pem"), "no such file"},
		{"no certificate", write(t, []byte("hello\n")), "holds no PEM certificate"},
		{"only a key", write(t, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})), "holds no PEM certificate"},
		{"unparseable certificate", write(t, append(certPEM(t, "one"), bad...)), "certificate 2"},
		{"over the bound", write(t, make([]byte, MaxSize+1)), "larger than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Certificates(c.path)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}
