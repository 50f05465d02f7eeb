package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/internal/hsm"
	"github.com/tpmline/tpmline/internal/hsm/hsmtest"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ca"
	"github.com/tpmline/tpmline/reports/signed"
)

// servedCA is upstream-ca serve running in the test on a free loopback port, with one station's client.
type servedCA struct {
	addr   string
	client *http.Client
	logs   *syncBuffer
	stop   func() int
}

func serveCA(t testing.TB, dir, stationDir, name string, extra ...string) *servedCA {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(stationDir, name+".crt"), filepath.Join(stationDir, name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	return serveCAWithCert(t, dir, stationDir, cert, extra...)
}

// serveCAWithCert is serveCA with the station's client certificate and key given.
func serveCAWithCert(t testing.TB, dir, stationDir string, cert tls.Certificate, extra ...string) *servedCA {
	t.Helper()
	roots := filepath.Join(t.TempDir(), "vendor.pem")
	if err := os.WriteFile(roots, append(vendor.RootPEM(), vendor.IntermediatePEM()...), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	logs := &syncBuffer{}
	go func() {
		done <- Main(sctx, append([]string{"serve", "--dir", dir, "--listen", addr, "--ek-roots", roots}, extra...), logs, logs)
	}()
	trustPEM, err := os.ReadFile(filepath.Join(stationDir, ca.TrustFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(trustPEM)
	s := &servedCA{addr: addr, logs: logs,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{Time: clock.Now, RootCAs: pool, Certificates: []tls.Certificate{cert}}}}}
	stopped := false
	code := 0
	s.stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			select {
			case code = <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("serve did not shut down")
			}
		}
		return code
	}
	t.Cleanup(func() { s.stop() })
	return s
}

// post sends v to path and decodes a 200 answer into out; it returns the status and the body.
func (s *servedCA) post(t testing.TB, path string, v, out any) (int, string) {
	t.Helper()
	var resp *http.Response
	var err error
	for i := 0; ; i++ { // the server may still be starting
		resp, err = s.client.Post("https://"+s.addr+path, "application/json", bytes.NewReader(mustJSON(t, v)))
		if err == nil || i > 200 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, s.logs.String())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 && out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, string(body)
}

// enroll runs both rounds for b and returns the IDevID certificate, or the failing status and body.
func (s *servedCA) enroll(t testing.TB, b *board) (*x509.Certificate, int, string) {
	t.Helper()
	certs, st, body := s.enrollCerts(t, b)
	if st != 200 {
		return nil, st, body
	}
	c, err := x509.ParseCertificate(certs.IDevIDCert)
	if err != nil {
		t.Fatal(err)
	}
	return c, 200, ""
}

// enrollCerts runs both rounds for b and returns the CA's answer, or the failing status and body.
func (s *servedCA) enrollCerts(t testing.TB, b *board) (*provisioning.Certificates, int, string) {
	t.Helper()
	var ch provisioning.Challenge
	if st, body := s.post(t, provisioning.PathEnroll, b.request(), &ch); st != 200 {
		return nil, st, body
	}
	var certs provisioning.Certificates
	if st, body := s.post(t, provisioning.PathActivate, b.answer(t, &ch), &certs); st != 200 {
		return nil, st, body
	}
	return &certs, 200, ""
}

func pkcs11Args(c hsm.Config) []string {
	return []string{"--pkcs11-module", c.Module, "--pkcs11-token", c.Token, "--pkcs11-pin-file", c.PINFile}
}

// TestPKCS11CA: upstream-ca init generates the root, issuing and station access CA keys on a SoftHSM2 token
// and writes none of them to disk; station add and serve sign with them; a board enrolls and its chain is
// the token's; the token pulled mid-run refuses enrollments with 503 and a clear line, and once it is back
// the CA enrolls again with everything it had.
func TestPKCS11CA(t *testing.T) {
	tk := hsmtest.New(t)
	dir := filepath.Join(t.TempDir(), "ca")
	ctx := context.Background()
	if code, out, errOut := runCLI(t, ctx, append([]string{"init", "--dir", dir, "--org", "Acme"}, pkcs11Args(tk.Config)...)...); code != ExitOK {
		t.Fatalf("init: %d %s %s", code, out, errOut)
	}
	for _, f := range []string{ca.RootKeyFile, ca.IssuingKeyFile, ca.AccessKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Fatalf("%s on disk with the keys on the token: %v", f, err)
		}
	}
	cfg, err := ca.LoadConfig(dir)
	if err != nil || cfg.PKCS11 == nil || cfg.PKCS11.IssuingKey != ca.DefaultKeyLabelPrefix+"issuing" {
		t.Fatalf("config: %+v %v", cfg, err)
	}
	if raw, _ := os.ReadFile(filepath.Join(dir, ca.ConfigFile)); bytes.Contains(raw, []byte(hsmtest.PIN)) {
		t.Fatal("config.json holds the PIN")
	}
	// A second CA on the same token under the same labels is refused: it would shadow the first's keys.
	if code, _, errOut := runCLI(t, ctx, append([]string{"init", "--dir", filepath.Join(t.TempDir(), "ca2")}, pkcs11Args(tk.Config)...)...); code != ExitFailure || !strings.Contains(errOut, "already on the token") {
		t.Fatalf("second init on the same labels: %d %s", code, errOut)
	}
	stationDir := filepath.Join(t.TempDir(), "station")
	if code, _, errOut := runCLI(t, ctx, "station", "add", "--dir", dir, "--name", "line-1", "--out", stationDir); code != ExitOK {
		t.Fatalf("station add: %d %s", code, errOut)
	}

	s := serveCA(t, dir, stationDir, "line-1")
	b := newBoard(t, "SN-HSM-1")
	idevid, st, body := s.enroll(t, b)
	if st != 200 {
		t.Fatalf("enroll: %d %s\n%s", st, body, s.logs.String())
	}
	issuing, err := ca.ReadCertificate(filepath.Join(dir, ca.IssuingCertFile))
	if err != nil {
		t.Fatal(err)
	}
	root, err := ca.ReadCertificate(filepath.Join(dir, ca.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := idevid.CheckSignatureFrom(issuing); err != nil {
		t.Fatalf("IDevID not signed by the token's issuing key: %v", err)
	}
	if err := issuing.CheckSignatureFrom(root); err != nil {
		t.Fatalf("issuing CA not signed by the token's root key: %v", err)
	}

	// The token goes away: enrollments are refused before a challenge is made, with a line that says why.
	restore := tk.Remove(t)
	// The simulator is one TPM: the second enrollment is the same board reworked (same EK, same serial).
	b2 := newBoard(t, "SN-HSM-1")
	b2.req.Rework = true
	var ch provisioning.Challenge
	st, body = s.post(t, provisioning.PathEnroll, b2.request(), &ch)
	if st != http.StatusServiceUnavailable || !strings.Contains(body, "issuing key is unavailable") {
		t.Fatalf("enroll with the token gone: %d %s", st, body)
	}
	if logs := s.logs.String(); !strings.Contains(logs, "issuing key unavailable") || !strings.Contains(logs, tk.Config.Token) {
		t.Fatalf("serve log does not name the token:\n%s", logs)
	}
	restore()
	if _, st, body := s.enroll(t, b2); st != 200 {
		t.Fatalf("enroll with the token back: %d %s\n%s", st, body, s.logs.String())
	}
	if code := s.stop(); code != ExitOK {
		t.Fatalf("serve exit %d\n%s", code, s.logs.String())
	}
	// Nothing was lost: both boards are in the store, and a new process serves from the same token.
	v, _, err := ca.Open(ctx, ca.OpenOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Store.Close()
	if issued, err := v.Store.CertificatesByBoard(ctx, "SN-HSM-1"); err != nil || len(issued) != 4 {
		t.Fatalf("SN-HSM-1: %d certificates recorded (want IAK and IDevID twice), %v", len(issued), err)
	}
	if err := ca.Ready(v.Issuer.Key); err != nil {
		t.Fatalf("a new process on the same token: %v", err)
	}
}

// TestPKCS11Refusals: a wrong PIN and a key missing from the token stop serve with a line naming the token.
func TestPKCS11Refusals(t *testing.T) {
	tk := hsmtest.New(t)
	dir := filepath.Join(t.TempDir(), "ca")
	ctx := context.Background()
	if code, _, errOut := runCLI(t, ctx, append([]string{"init", "--dir", dir}, pkcs11Args(tk.Config)...)...); code != ExitOK {
		t.Fatalf("init: %s", errOut)
	}
	roots := filepath.Join(t.TempDir(), "vendor.pem")
	os.WriteFile(roots, append(vendor.RootPEM(), vendor.IntermediatePEM()...), 0o644)
	serve := func() (int, string) {
		c, _, errOut := runCLI(t, ctx, "serve", "--dir", dir, "--listen", "127.0.0.1:0", "--ek-roots", roots)
		return c, errOut
	}
	pinFile := tk.Config.PINFile
	os.WriteFile(pinFile, []byte("9999\n"), 0o600)
	defer os.WriteFile(pinFile, []byte(hsmtest.PIN+"\n"), 0o600)
	if code, errOut := serve(); code != ExitFailure || !strings.Contains(errOut, "refused the PIN") || !strings.Contains(errOut, tk.Config.Token) {
		t.Fatalf("wrong PIN: %d %s", code, errOut)
	}
	os.WriteFile(pinFile, []byte(hsmtest.PIN+"\n"), 0o600)
	cfg, _ := ca.LoadConfig(dir)
	cfg.PKCS11.IssuingKey = "no-such-key"
	raw, _ := json.Marshal(cfg)
	os.WriteFile(filepath.Join(dir, ca.ConfigFile), raw, 0o600)
	if code, errOut := serve(); code != ExitFailure || !strings.Contains(errOut, `key "no-such-key": no such key on the token`) {
		t.Fatalf("missing key: %d %s", code, errOut)
	}
	// Usage: half a token configuration is refused before anything is made.
	if code, _, _ := runCLI(t, ctx, "init", "--dir", filepath.Join(t.TempDir(), "x"), "--pkcs11-module", hsmtest.Module); code != ExitUsage {
		t.Fatalf("init with a module and no token: exit %d", code)
	}
}

// TestPKCS11SignEKList: a station signing key on a token (its certificate under the station access CA)
// signs an EK list file, and the CA's import accepts the signature and refuses a changed byte.
func TestPKCS11SignEKList(t *testing.T) {
	tk := hsmtest.New(t)
	dir := filepath.Join(t.TempDir(), "ca")
	ctx := context.Background()
	if code, _, errOut := runCLI(t, ctx, "init", "--dir", dir); code != ExitOK {
		t.Fatalf("init: %s", errOut)
	}
	access, err := ca.ReadKeyPair(filepath.Join(dir, ca.AccessCertFile), filepath.Join(dir, ca.AccessKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := hsm.Open(tk.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	key, err := tok.Generate("station-line-7")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.NewCertificateFor(ca.CertSpec{Subject: pkix.Name{CommonName: "line-7"}, NotAfter: clock.Now().AddDate(1, 0, 0),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, key, access, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	b := newBoard(t, "SN-HSM-LIST")
	var list bytes.Buffer
	sent := false
	if err := signed.WriteEKList(&list, "csv", signed.EKListHeader{Batch: "B-HSM", Product: "gw", Station: "line-7", Created: clock.Now(), Entries: 1},
		func() (*signed.EKListEntry, error) {
			if sent {
				return nil, io.EOF
			}
			sent = true
			return &signed.EKListEntry{Serial: "SN-HSM-LIST", EKCert: b.ekCert, EKPublicSHA256: hexs(mustEKHash(t, b))}, nil
		}); err != nil {
		t.Fatal(err)
	}
	sig, err := signed.Signer{Key: key, Chain: []*x509.Certificate{kp.Cert}}.Sign(bytes.NewReader(list.Bytes()), clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "list.csv")
	os.WriteFile(file+".sig", sig, 0o644)
	for _, f := range []struct {
		content []byte
		code    int
	}{{bytes.Replace(list.Bytes(), []byte("B-HSM"), []byte("B-HSN"), 1), ExitFailure}, {list.Bytes(), ExitOK}} {
		os.WriteFile(file, f.content, 0o644)
		code, out, errOut := runCLI(t, ctx, "ek-list", "import", "--dir", dir, file)
		if code != f.code || (code == ExitOK && !strings.Contains(out, "signed by station line-7")) {
			t.Fatalf("ek-list import: %d %s %s", code, out, errOut)
		}
	}
}

// BenchmarkEnrollKeys measures whole enrollments (both rounds over HTTPS, the simulator answering) against
// two CAs served in the same run, one with its keys in files and one with them in SoftHSM2, alternating
// so both see the same machine; it reports each rate and their ratio, and the issuing signature alone.
func BenchmarkEnrollKeys(b *testing.B) {
	tk := hsmtest.New(b)
	ctx := context.Background()
	mk := func(name string, extra ...string) (*servedCA, string) {
		dir := filepath.Join(b.TempDir(), name)
		if code, _, errOut := runCLI(b, ctx, append([]string{"init", "--dir", dir}, extra...)...); code != ExitOK {
			b.Fatalf("init %s: %s", name, errOut)
		}
		out := filepath.Join(b.TempDir(), name+"-station")
		if code, _, errOut := runCLI(b, ctx, "station", "add", "--dir", dir, "--name", "bench", "--out", out); code != ExitOK {
			b.Fatalf("station add: %s", errOut)
		}
		return serveCA(b, dir, out, "bench"), dir
	}
	files, _ := mk("files")
	token, _ := mk("pkcs11", pkcs11Args(tk.Config)...)
	brd := newBoard(b, "SN-BENCH")
	brd.req.Rework = true
	var dFiles, dToken time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, c := range []struct {
			s *servedCA
			d *time.Duration
		}{{files, &dFiles}, {token, &dToken}} {
			start := time.Now()
			if _, st, body := c.s.enroll(b, brd); st != 200 {
				b.Fatalf("enroll: %d %s", st, body)
			}
			*c.d += time.Since(start)
		}
	}
	b.StopTimer()
	fr, tr := float64(b.N)/dFiles.Seconds(), float64(b.N)/dToken.Seconds()
	b.ReportMetric(fr, "files-enroll/s")
	b.ReportMetric(tr, "softhsm-enroll/s")
	b.ReportMetric(tr/fr, "softhsm/files")
}

// TestPKCS11StationKey: a station's client key generated on its own token is certified from a CSR
// (station add --csr, no key file written) and the station enrolls a board over mutual TLS with it.
func TestPKCS11StationKey(t *testing.T) {
	tk := hsmtest.New(t)
	dir := filepath.Join(t.TempDir(), "ca")
	ctx := context.Background()
	if code, _, errOut := runCLI(t, ctx, "init", "--dir", dir); code != ExitOK {
		t.Fatalf("init: %s", errOut)
	}
	tok, err := hsm.Open(tk.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	key, err := tok.Generate("station-line-9")
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "line-9"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csrFile := filepath.Join(t.TempDir(), "line-9.csr")
	os.WriteFile(csrFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644)
	out := filepath.Join(t.TempDir(), "st")
	if code, o, errOut := runCLI(t, ctx, "station", "add", "--dir", dir, "--name", "line-9", "--out", out, "--csr", csrFile); code != ExitOK {
		t.Fatalf("station add --csr: %d %s %s", code, o, errOut)
	}
	if _, err := os.Stat(filepath.Join(out, "line-9.key")); !os.IsNotExist(err) {
		t.Fatalf("a key file was written: %v", err)
	}
	cert, err := ca.ReadCertificate(filepath.Join(out, "line-9.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignatureFrom(mustCert(t, filepath.Join(dir, ca.AccessCertFile))); err != nil || !bytes.Equal(cert.RawSubjectPublicKeyInfo, mustSPKI(t, key.Public())) {
		t.Fatalf("station certificate: %v", err)
	}
	// A tampered CSR is refused.
	bad := append([]byte{}, der...)
	bad[len(bad)-5] ^= 1
	os.WriteFile(csrFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: bad}), 0o644)
	if code, _, _ := runCLI(t, ctx, "station", "add", "--dir", dir, "--name", "line-10", "--out", out, "--csr", csrFile); code != ExitFailure {
		t.Fatalf("tampered CSR: exit %d", code)
	}

	s := serveCAWithCert(t, dir, out, tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert})
	if _, st, body := s.enroll(t, newBoard(t, "SN-STATION-HSM")); st != 200 {
		t.Fatalf("enroll with the station key on a token: %d %s\n%s", st, body, s.logs.String())
	}
}

func mustCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := ca.ReadCertificate(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustSPKI(t *testing.T, pub any) []byte {
	t.Helper()
	b, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
