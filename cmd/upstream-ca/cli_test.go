package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ca"
	"github.com/tpmline/tpmline/reports/signed"
)

func runCLI(t testing.TB, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

const sharedEKCerts = "../../../shared/testdata/ekcerts"

func TestCLIEKCertVerify(t *testing.T) {
	roots := filepath.Join(sharedEKCerts, "ca")
	good := []string{"infineon-rsa-1.der", "infineon-ecc-1.der", "nuvoton-rsa-1.der", "st-rsa-1.der", "st-ecc-1.der", "google-rsa-1.pem", "intel-rsa-1.pem"}
	// Real vendor certificates carry fixed dates (2018..2033 and the like): check them at a fixed time inside
	// every one's validity, not on today's clock.
	args := []string{"ek-cert", "verify", "--ek-roots", roots, "--at", "2025-06-01T00:00:00Z"}
	for _, g := range good {
		args = append(args, filepath.Join(sharedEKCerts, "ek", g))
	}
	code, out, errOut := runCLI(t, context.Background(), args...)
	if code != ExitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if strings.Count(out, "verdict:    OK") != len(good) {
		t.Fatalf("not every verdict OK:\n%s", out)
	}
	// One TPM 1.2 EK and one with no CA available among good ones: exit 1, the others still reported.
	code, out, _ = runCLI(t, context.Background(), append(args, filepath.Join(sharedEKCerts, "ek", "st-rsa-2.der"), filepath.Join(sharedEKCerts, "ek", "intel-ecc-1.der"))...)
	if code != ExitFailure || strings.Count(out, "verdict:    OK") != len(good) || !strings.Contains(out, "REJECTED") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	// Missing file: failure; missing flags: usage.
	if code, _, _ := runCLI(t, context.Background(), "ek-cert", "verify", "--ek-roots", roots, "/nonexistent"); code != ExitFailure {
		t.Fatalf("missing file: exit %d", code)
	}
	if code, _, _ := runCLI(t, context.Background(), "ek-cert", "verify", filepath.Join(sharedEKCerts, "ek", good[0])); code != ExitUsage {
		t.Fatalf("no --ek-roots: exit %d", code)
	}
	for _, bad := range [][]string{{}, {"bogus"}, {"init", "--nope"}, {"station"}, {"ek-list", "export"}} {
		if code, _, _ := runCLI(t, context.Background(), bad...); code != ExitUsage {
			t.Fatalf("%v: exit %d", bad, code)
		}
	}
}

func TestCLIInitStationServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ctx := context.Background()
	if code, out, errOut := runCLI(t, ctx, "init", "--dir", dir, "--org", "Acme"); code != ExitOK {
		t.Fatalf("init: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, ctx, "init", "--dir", dir); code != ExitFailure || !strings.Contains(errOut, "refusing to overwrite") {
		t.Fatalf("second init: %d %s", code, errOut)
	}
	out := filepath.Join(t.TempDir(), "station")
	if code, _, errOut := runCLI(t, ctx, "station", "add", "--dir", dir, "--name", "line-1", "--out", out); code != ExitOK {
		t.Fatalf("station add: %d %s", code, errOut)
	}
	if code, _, _ := runCLI(t, ctx, "station", "add", "--dir", dir, "--name", "../evil", "--out", out); code != ExitUsage {
		t.Fatalf("bad station name: exit %d", code)
	}
	st, err := os.Stat(filepath.Join(out, "line-1.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	for _, f := range []string{ca.RootKeyFile, ca.IssuingKeyFile, ca.AccessKeyFile, ca.ServerKeyFile} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st, err)
		}
	}

	// Serve, with the test vendor as the only EK root, on a free loopback port.
	b := newBoard(t, "SN-CLI")
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
	sctx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	var serveErr syncBuffer
	go func() {
		done <- Main(sctx, []string{"serve", "--dir", dir, "--listen", addr, "--ek-roots", roots, "--require-ek-list"}, &serveErr, &serveErr)
	}()

	cert, err := tls.LoadX509KeyPair(filepath.Join(out, "line-1.crt"), filepath.Join(out, "line-1.key"))
	if err != nil {
		t.Fatal(err)
	}
	trustPEM, err := os.ReadFile(filepath.Join(out, ca.TrustFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(trustPEM)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{Time: clock.Now, RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	post := func(path string, v, out any) int {
		t.Helper()
		var resp *http.Response
		for i := 0; ; i++ { // the server may still be starting
			resp, err = client.Post("https://"+addr+path, "application/json", bytes.NewReader(mustJSON(t, v)))
			if err == nil || i > 100 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("%v\n%s", err, serveErr.String())
		}
		defer resp.Body.Close()
		if resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode
	}
	var ch provisioning.Challenge
	if st := post(provisioning.PathEnroll, b.request(), &ch); st != 403 {
		t.Fatalf("unlisted EK: HTTP %d", st)
	}
	// Import the EK list from a file with the CLI, while the server runs (SQLite, WAL).
	// The list is the station-signed file of docs/ek-list.md, signed with the station's client key.
	listFile := filepath.Join(t.TempDir(), "list.json")
	var listBuf bytes.Buffer
	entry := &signed.EKListEntry{Serial: "SN-CLI", EKCert: b.ekCert, EKPublicSHA256: hexs(mustEKHash(t, b))}
	sent := false
	if err := signed.WriteEKList(&listBuf, "json", signed.EKListHeader{Batch: "B-CLI", Product: "gw", Station: "line-1",
		Created: clock.Now(), Entries: 1}, func() (*signed.EKListEntry, error) {
		if sent {
			return nil, io.EOF
		}
		sent = true
		return entry, nil
	}); err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signed.Signer{Key: cert.PrivateKey.(crypto.Signer), Chain: []*x509.Certificate{leaf}}.Sign(bytes.NewReader(listBuf.Bytes()), clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(listBuf.Bytes(), []byte("SN-CLI"), []byte("SN-CLJ"), 1)
	for _, f := range []struct {
		content []byte
		code    int
	}{{tampered, ExitFailure}, {listBuf.Bytes(), ExitOK}} {
		if err := os.WriteFile(listFile, f.content, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(listFile+".sig", sig, 0o644); err != nil {
			t.Fatal(err)
		}
		code, o, errOut := runCLI(t, ctx, "ek-list", "import", "--dir", dir, listFile)
		if code != f.code || (code == ExitOK && !strings.Contains(o, "1 new")) || (code != ExitOK && !strings.Contains(errOut, "signature")) {
			t.Fatalf("ek-list import: %d %s %s", code, o, errOut)
		}
	}
	if st := post(provisioning.PathEnroll, b.request(), &ch); st != 200 {
		t.Fatalf("enroll: HTTP %d\n%s", st, serveErr.String())
	}
	var certs provisioning.Certificates
	if st := post(provisioning.PathActivate, b.answer(t, &ch), &certs); st != 200 {
		t.Fatalf("activate: HTTP %d\n%s", st, serveErr.String())
	}
	c, err := x509.ParseCertificate(certs.IDevIDCert)
	if err != nil || c.Subject.SerialNumber != "SN-CLI" || c.Subject.Organization[0] != "Acme" {
		t.Fatalf("IDevID %v %v", c.Subject, err)
	}
	stop()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("serve exit %d\n%s", code, serveErr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not shut down")
	}
	logs := serveErr.String()
	for _, want := range []string{"station=line-1", "serial=SN-CLI", "outcome=ek_not_listed", "outcome=ok", "upstream CA stopped"} {
		if !strings.Contains(logs, want) {
			t.Fatalf("serve log lacks %q:\n%s", want, logs)
		}
	}
}

// TestTuneGC: serve's GC settings apply only when the operator set neither GOGC nor GOMEMLIMIT.
func TestTuneGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	beforeLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(before); debug.SetMemoryLimit(beforeLimit) })
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	if gc, limit := tuneGC(env("GOGC", "100")); gc != 100 || limit != math.MaxInt64 {
		t.Errorf("with GOGC set: GC percent %d, limit %d", gc, limit)
	}
	if gc, limit := tuneGC(env("GOMEMLIMIT", "1GiB")); gc != 100 || limit != math.MaxInt64 {
		t.Errorf("with GOMEMLIMIT set: GC percent %d, limit %d", gc, limit)
	}
	if gc, limit := tuneGC(env()); gc != ServeGCPercent || limit != ServeMemoryLimit {
		t.Errorf("unset: GC percent %d, limit %d", gc, limit)
	}
}

// TestCLIConventions (issue 17, point 8): help per command with its flags, defaults and an example, exit 0;
// flags after the file name; one-line errors without a usage dump.
func TestCLIConventions(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{{"serve", "--help"}, {"help", "serve"}, {"serve", "-h"}} {
		code, out, errOut := runCLI(t, ctx, args...)
		if code != ExitOK || errOut != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
		for _, want := range []string{"usage: upstream-ca serve", "--cpuprofile FILE", "--ek-roots PEM-OR-DIR", "(required", "example:", "127.0.0.1:8443"} {
			if !strings.Contains(out, want) {
				t.Fatalf("%v: help lacks %q:\n%s", args, want, out)
			}
		}
	}
	if code, out, _ := runCLI(t, ctx, "help"); code != ExitOK || !strings.Contains(out, "ek-list import") {
		t.Fatalf("help: %d\n%s", code, out)
	}
	// Flags after the file name, as the usage line shows them: the import runs (and fails on the missing
	// CA directory), it is not refused as "--dir and one FILE are required".
	code, _, errOut := runCLI(t, ctx, "ek-list", "import", "/nonexistent/list.json", "--dir", filepath.Join(t.TempDir(), "ca"), "--sig", "/nonexistent/list.json.sig")
	if code != ExitFailure || strings.Contains(errOut, "required") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("flags after FILE: exit %d, %q", code, errOut)
	}
	for _, args := range [][]string{{"init"}, {"init", "--nope"}, {"bogus"}, {"ek-list"}} {
		code, out, errOut := runCLI(t, ctx, args...)
		if code != ExitUsage || out != "" || strings.Contains(errOut, "usage:") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

// TestEKCertVerifyMissingIntermediate (issue 17, point 10): a root without the intermediate that signed
// the EK certificate: the report says an intermediate is missing.
func TestEKCertVerifyMissingIntermediate(t *testing.T) {
	rootOnly := t.TempDir() // the Infineon roots, without their intermediates
	for _, f := range []string{"infineon-root-1.pem", "infineon-root-2.pem"} {
		b, err := os.ReadFile(filepath.Join(sharedEKCerts, "ca", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rootOnly, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, _ := runCLI(t, context.Background(), "ek-cert", "verify", "--ek-roots", rootOnly, "--at", "2025-06-01T00:00:00Z",
		filepath.Join(sharedEKCerts, "ek", "infineon-rsa-1.der"))
	if code != ExitFailure || !strings.Contains(out, "intermediate CA is probably missing") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}
