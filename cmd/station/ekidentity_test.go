package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestEKIdentityIsWhatOpenSSLPrints: the EK identity `station board show` prints and the EK list carries is
// what a QA engineer gets from the board's EK certificate with openssl alone:
// openssl x509 -pubkey | openssl pkey -pubin -outform DER | sha256sum.
func TestEKIdentityIsWhatOpenSSLPrints(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl not installed: install openssl (make test installs it)")
	}
	dir := t.TempDir()
	vendorDir, ca := startVendorAndCA(t, dir)
	run, _ := sqliteStation(t, dir, ca)
	run("batch", "open", "--id", "ID1", "--quantity", "1")
	addr, err := startSimBoardSeed(t, filepath.Join(binaries(t), "board-agent"), vendorDir, "701", ca.dir)
	if err != nil {
		t.Fatal(err)
	}
	run("provision", "--tpm", addr, "--serial", "ID-1", "--batch", "ID1")

	shown := regexp.MustCompile(`EK public SHA-256 ([0-9a-f]{64})`).FindStringSubmatch(run("board", "show", "ID-1"))
	if shown == nil {
		t.Fatal("board show prints no EK public SHA-256")
	}
	list := filepath.Join(dir, "eklist.json")
	run("ek-list", "export", "--batch", "ID1", "--format", "json", "--out", list)
	b, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Entries []struct {
			EKPublicSHA256 string `json:"ek_public_sha256"`
			EKPublic       []byte `json:"ek_public"`
			EKCert         []byte `json:"ek_cert"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || len(doc.Entries) != 1 {
		t.Fatalf("EK list: %v, %d entries", err, len(doc.Entries))
	}
	e := doc.Entries[0]
	certFile := filepath.Join(dir, "ek.der")
	if err := os.WriteFile(certFile, e.EKCert, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", "openssl x509 -inform DER -in "+certFile+" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum").Output()
	if err != nil {
		t.Fatalf("openssl: %v", err)
	}
	byOpenSSL := strings.Fields(string(out))[0]
	if shown[1] != byOpenSSL || e.EKPublicSHA256 != byOpenSSL {
		t.Fatalf("EK identity: board show %s, EK list %s, openssl %s", shown[1], e.EKPublicSHA256, byOpenSSL)
	}
	if old := sha256.Sum256(e.EKPublic); hex.EncodeToString(old[:]) == byOpenSSL {
		t.Fatal("the identity is the hash of the TPMT_PUBLIC bytes")
	}
}
