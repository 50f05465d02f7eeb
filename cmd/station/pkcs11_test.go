package main

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/internal/hsm"
	"github.com/tpmline/tpmline/internal/hsm/hsmtest"
)

// TestCLIPKCS11Line is issue 13's full line run with every key in SoftHSM2: the CA's root, issuing and
// station access CA keys on one token (init --pkcs11-*), the station's client key generated on another
// and certified from its CSR (station add --csr). The station then provisions two simulator boards
// through board-agents (relays://, mutual TLS with the token key) against the CA (mutual TLS with the
// token key), signs a batch report and an EK list with it, and both verify. Then the refusals: a wrong
// PIN, a label not on the token, a token key that is not the certificate's, a PEM key and a token key
// at once.
func TestCLIPKCS11Line(t *testing.T) {
	caTok, stTok := hsmtest.New(t), hsmtest.New(t)
	dir := t.TempDir()

	// The station's key, generated on its token; the CSR is all that leaves it. A second key on the same
	// token is not the certificate's.
	tok, err := hsm.Open(stTok.Config)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tok.Generate("line-1-client")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Generate("line-1-other"); err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored by the CA"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	tok.Close()
	csr := filepath.Join(dir, "line-1.csr")
	if err := os.WriteFile(csr, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}), 0o644); err != nil {
		t.Fatal(err)
	}

	vendorDir := filepath.Join(dir, "vendor")
	m, err := fixtures.LoadOrCreateManufacturer(vendorDir)
	if err != nil {
		t.Fatal(err)
	}
	roots := filepath.Join(dir, "vendor-cas.pem")
	if err := os.WriteFile(roots, append(m.RootPEM(), m.IntermediatePEM()...), 0o644); err != nil {
		t.Fatal(err)
	}
	c := caTok.Config
	ca := startUpstreamCAInit(t, roots, []string{"--pkcs11-module", c.Module, "--pkcs11-token", c.Token, "--pkcs11-pin-file", c.PINFile})
	for _, f := range []string{"root.key", "issuing.key", "station-access.key"} {
		if _, err := os.Stat(filepath.Join(ca.dir, f)); !os.IsNotExist(err) {
			t.Fatalf("init --pkcs11-* left %s in the CA directory (%v)", f, err)
		}
	}
	out := filepath.Join(dir, "line-1")
	mustRun(t, "upstream-ca", "station", "add", "--dir", ca.dir, "--name", "line-1", "--out", out, "--csr", csr)
	if _, err := os.Stat(filepath.Join(out, "line-1.key")); !os.IsNotExist(err) {
		t.Fatalf("station add --csr wrote a key file (%v)", err)
	}
	cert, trust := filepath.Join(out, "line-1.crt"), filepath.Join(out, "ca-trust.pem")

	// The flags for the first commands; the config file (PIN from a variable) for the rest.
	db := "sqlite://" + filepath.Join(dir, "inventory.db")
	sc := stTok.Config
	g := []string{"--db", db, "--station-id", "line-1", "--ca", ca.url, "--ca-trust", trust, "--client-cert", cert,
		"--pkcs11-module", sc.Module, "--pkcs11-token", sc.Token, "--pkcs11-pin-file", sc.PINFile, "--pkcs11-key", "line-1-client"}
	st := func(args ...string) result { return runBin(t, "station", append(append([]string{}, g...), args...)...) }
	t.Setenv("TPMLINE_TEST_STATION_PIN", hsmtest.PIN)
	conf, _ := json.Marshal(map[string]any{"db": db, "station_id": "line-1", "ca_url": ca.url, "ca_trust": trust, "client_cert": cert,
		"pkcs11": map[string]string{"module": sc.Module, "token": sc.Token, "pin_env": "TPMLINE_TEST_STATION_PIN", "key": "line-1-client"}})
	confFile := filepath.Join(dir, "station.json")
	if err := os.WriteFile(confFile, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	stc := func(args ...string) result {
		return runBin(t, "station", append([]string{"--config", confFile}, args...)...)
	}
	ok := func(r result, what string) result {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", what, r.code, r.stdout, r.stderr)
		}
		return r
	}

	ok(st("init"), "init")
	ok(st("batch", "open", "--id", "HSM1", "--quantity", "2"), "batch open")
	for i := 1; i <= 2; i++ {
		addr, err := startSimBoardSeed(t, filepath.Join(binaries(t), "board-agent"), vendorDir, fmt.Sprint(700+i), ca.dir)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(addr, "relays://") {
			t.Fatalf("board-agent address %q: want a relays:// link (mutual TLS with the station key)", addr)
		}
		run := st
		if i == 2 {
			run = stc
		}
		ok(run("provision", "--tpm", addr, "--serial", fmt.Sprintf("HSM-%d", i), "--batch", "HSM1"), "provision")
	}
	ok(stc("batch", "close", "--id", "HSM1"), "batch close")
	rep := filepath.Join(dir, "r.json")
	ok(stc("report", "batch", "--batch", "HSM1", "--json", rep), "report batch")
	if r := ok(stc("report", "verify", rep, "--trust", trust), "report verify"); !strings.Contains(r.stdout, "signature OK") ||
		!strings.Contains(r.stdout, "chain to the trust anchor OK") || !strings.Contains(r.stdout, "matches the inventory") ||
		!strings.Contains(r.stdout, "checkpoint OK (station line-1, seq ") {
		t.Fatalf("report verify:\n%s", r.stdout)
	}
	ek := filepath.Join(dir, "ek.json")
	ok(stc("ek-list", "export", "--batch", "HSM1", "--format", "json", "--out", ek), "ek-list export")
	if r := ok(stc("ek-list", "verify", ek, "--trust", trust), "ek-list verify"); !strings.Contains(r.stdout, "signature OK") {
		t.Fatalf("ek-list verify:\n%s", r.stdout)
	}
	if r := runBin(t, "upstream-ca", "ek-list", "import", "--dir", ca.dir, ek); r.code != 0 || !strings.Contains(r.stdout, "2 entries") {
		t.Fatalf("the CA importing the token-signed EK list: %d %s %s", r.code, r.stdout, r.stderr)
	}
	// The report's signer is the token key: the signature file's certificate is line-1.crt, whose key
	// never left the token (no key file exists), and a changed byte breaks it.
	b, _ := os.ReadFile(rep)
	_ = os.WriteFile(rep, []byte(strings.Replace(string(b), "HSM-2", "HSM-7", 1)), 0o644)
	if r := stc("report", "verify", rep); r.code != 1 || !strings.Contains(r.stderr, "INVALID") {
		t.Fatalf("tampered report verified: %d %s %s", r.code, r.stdout, r.stderr)
	}

	// Refusals: exit 2, one line naming the token or label and what to check; nothing signed.
	wrongPIN := filepath.Join(dir, "wrong.pin")
	if err := os.WriteFile(wrongPIN, []byte("9999-wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	refused := filepath.Join(dir, "refused.json")
	for _, tc := range []struct {
		name  string
		extra []string
		want  []string
	}{
		{"wrong PIN", []string{"--pkcs11-pin-file", wrongPIN}, []string{fmt.Sprintf("token %q", sc.Token), "the token refused the PIN", "check the PIN file or variable"}},
		{"no such label", []string{"--pkcs11-key", "line-9-client"}, []string{fmt.Sprintf("token %q", sc.Token), `key "line-9-client"`, "no such key on the token", "check --pkcs11-key"}},
		{"not the certificate's key", []string{"--pkcs11-key", "line-1-other"}, []string{`key "line-1-other"`, fmt.Sprintf("token %q", sc.Token), "is not the key of the certificate", "check --pkcs11-key and --client-cert"}},
		{"PEM key and token key", []string{"--client-key", filepath.Join(dir, "line-1.key")}, []string{"--client-key or on a token with --pkcs11-*, not both"}},
	} {
		r := st(append([]string{"ek-list", "export", "--batch", "HSM1", "--format", "json", "--out", refused}, tc.extra...)...)
		if r.code != 2 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Fatalf("%s: want exit 2 and one line, got %d:\n%s", tc.name, r.code, r.stderr)
		}
		t.Logf("%s: %s", tc.name, strings.TrimSpace(r.stderr))
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Fatalf("%s: stderr lacks %q:\n%s", tc.name, w, r.stderr)
			}
		}
		if _, err := os.Stat(refused); !os.IsNotExist(err) {
			t.Fatalf("%s: an EK list was written (%v)", tc.name, err)
		}
	}
	// The provisioning path refuses the same way before touching the board or the CA.
	if r := st("provision", "--tpm", "sim", "--serial", "HSM-9", "--batch", "HSM1", "--pkcs11-pin-file", wrongPIN); r.code != 2 || !strings.Contains(r.stderr, "the token refused the PIN") {
		t.Fatalf("provision with a wrong PIN: %d %s", r.code, r.stderr)
	}
}
