package main

import (
	"context"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ca"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func openssl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestRevoke: a board's certificates name the CRL and OCSP endpoints; openssl, as a relying party, sees
// the IDevID good in OCSP, then revoked (keyCompromise) in OCSP and in a CRL whose signature verifies
// under the CA chain after upstream-ca revoke --board; a revoked station is refused at the handshake while
// another station still enrolls.
func TestRevoke(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is not installed: install openssl (make test installs it)")
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	pub := freeAddr(t)
	if code, _, errOut := runCLI(t, ctx, "init", "--dir", dir, "--public-url", "http://"+pub); code != ExitOK {
		t.Fatalf("init: %s", errOut)
	}
	if code, _, _ := runCLI(t, ctx, "init", "--dir", filepath.Join(t.TempDir(), "x"), "--public-url", "https://ca.example/crl"); code != ExitUsage {
		t.Fatalf("https public URL with a path: exit %d", code)
	}
	stations := filepath.Join(t.TempDir(), "stations")
	for _, n := range []string{"line-1", "line-2"} {
		if code, _, errOut := runCLI(t, ctx, "station", "add", "--dir", dir, "--name", n, "--out", stations); code != ExitOK {
			t.Fatalf("station add %s: %s", n, errOut)
		}
	}
	s := serveCA(t, dir, stations, "line-1", "--public-listen", pub)
	b := newBoard(t, "SN-REV")
	idevid, st, body := s.enroll(t, b)
	if st != 200 {
		t.Fatalf("enroll: %d %s\n%s", st, body, s.logs.String())
	}
	if len(idevid.CRLDistributionPoints) != 1 || idevid.CRLDistributionPoints[0] != "http://"+pub+ca.CRLPath ||
		len(idevid.OCSPServer) != 1 || idevid.OCSPServer[0] != "http://"+pub+ca.OCSPPath {
		t.Fatalf("IDevID names CRL %v, OCSP %v", idevid.CRLDistributionPoints, idevid.OCSPServer)
	}
	tmp := t.TempDir()
	certFile, chain := filepath.Join(tmp, "idevid.pem"), filepath.Join(tmp, "chain.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: idevid.Raw}), 0o644)
	root, _ := os.ReadFile(filepath.Join(dir, ca.RootCertFile))
	issuing, _ := os.ReadFile(filepath.Join(dir, ca.IssuingCertFile))
	os.WriteFile(chain, append(append([]byte{}, issuing...), root...), 0o644)
	ocspCheck := func() string {
		args := []string{"ocsp", "-issuer", filepath.Join(dir, ca.IssuingCertFile), "-cert", certFile, "-url", "http://" + pub + ca.OCSPPath,
			"-CAfile", chain, "-no_nonce"}
		if clock.Shifted() {
			// The moved-clock check: openssl verifies the chain at the product's time (-attime), and checks a
			// response's thisUpdate against its own clock, so it is given the shift as allowed skew.
			skew := time.Until(clock.Now()).Abs() + 24*time.Hour
			args = append(append(args, clock.OpenSSLAtTime()...), "-validity_period", strconv.FormatInt(int64(skew.Seconds()), 10))
		}
		return openssl(t, args...)
	}
	if out := ocspCheck(); !strings.Contains(out, certFile+": good") || !strings.Contains(out, "Response verify OK") {
		t.Fatalf("OCSP before revocation:\n%s", out)
	}

	code, out, errOut := runCLI(t, ctx, "revoke", "--dir", dir, "--board", "SN-REV", "--reason", "keyCompromise")
	if code != ExitOK || strings.Count(out, "revoked ") != 2 || !strings.Contains(out, "reason 1") {
		t.Fatalf("revoke: %d %s %s", code, out, errOut)
	}
	if code, out, _ := runCLI(t, ctx, "revoke", "--dir", dir, "--cert-serial", ca.SerialHex(idevid.SerialNumber)); code != ExitOK || !strings.Contains(out, "already revoked") {
		t.Fatalf("second revoke: %d %s", code, out)
	}
	if code, _, errOut := runCLI(t, ctx, "revoke", "--dir", dir, "--board", "SN-NONE"); code != ExitFailure || !strings.Contains(errOut, "no certificate to board") {
		t.Fatalf("unknown board: %d %s", code, errOut)
	}
	if code, _, _ := runCLI(t, ctx, "revoke", "--dir", dir, "--board", "SN-REV", "--reason", "bored"); code != ExitUsage {
		t.Fatalf("bad reason: exit %d", code)
	}
	if out := ocspCheck(); !strings.Contains(out, certFile+": revoked") || !strings.Contains(out, "Reason: keyCompromise") {
		t.Fatalf("OCSP after revocation:\n%s", out)
	}
	resp, err := http.Get("http://" + pub + ca.CRLPath)
	if err != nil {
		t.Fatal(err)
	}
	crl, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("GET %s: %s %q\n%s", ca.CRLPath, resp.Status, crl, s.logs.String())
	}
	crlFile := filepath.Join(tmp, "crl.der")
	os.WriteFile(crlFile, crl, 0o644)
	if out := openssl(t, "crl", "-inform", "DER", "-in", crlFile, "-CAfile", chain, "-noout", "-verify"); !strings.Contains(out, "verify OK") {
		t.Fatalf("openssl crl -verify:\n%s", out)
	}
	text := openssl(t, "crl", "-inform", "DER", "-in", crlFile, "-noout", "-text")
	if !strings.Contains(text, strings.ToUpper(ca.SerialHex(idevid.SerialNumber))) || !strings.Contains(text, "Key Compromise") {
		t.Fatalf("CRL lacks the IDevID:\n%s", text)
	}

	// The station line-1 is revoked: its next handshake is refused; line-2 still enrolls.
	if code, out, errOut := runCLI(t, ctx, "revoke", "--dir", dir, "--station-cert", filepath.Join(stations, "line-1.crt"), "--reason", "cessationOfOperation"); code != ExitOK || !strings.Contains(out, "station line-1") {
		t.Fatalf("revoke station: %d %s %s", code, out, errOut)
	}
	s.client.Transport.(*http.Transport).CloseIdleConnections()
	if _, err := s.client.Post("https://"+s.addr+provisioning.PathEnroll, "application/json", strings.NewReader("{}")); err == nil {
		t.Fatal("a revoked station still connects")
	}
	if !strings.Contains(s.logs.String(), `station \"line-1\": its certificate`) && !strings.Contains(s.logs.String(), `station "line-1": its certificate`) {
		t.Fatalf("serve log does not say why line-1 was refused:\n%s", s.logs.String())
	}
	s2 := serveCA(t, dir, stations, "line-2")
	b2 := newBoard(t, "SN-REV")
	b2.req.Rework = true
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, st, body := s2.enroll(t, b2)
		if st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("line-2 enroll: %d %s", st, body)
		}
	}
}
