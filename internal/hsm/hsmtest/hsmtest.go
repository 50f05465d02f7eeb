// Package hsmtest gives tests a SoftHSM2 token of their own: a SOFTHSM2_CONF and token directory under the
// test's temporary directory, the token initialised with softhsm2-util, and the PIN in a file.
package hsmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpmline/tpmline/internal/hsm"
)

// Module is where Debian's softhsm2 package installs the PKCS#11 library.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// PIN is the user PIN of every test token.
const PIN = "1234-test"

// Token is a SoftHSM2 token for one test.
type Token struct {
	Config   hsm.Config
	TokenDir string // SoftHSM2's directories.tokendir
}

// New initialises token label in a fresh SoftHSM2 configuration and points SOFTHSM2_CONF at it for the
// rest of the test (t.Setenv: tests using it cannot run in parallel). It skips the test when SoftHSM2 is
// not installed (scripts/testenv.sh installs it).
func New(t testing.TB, label string) *Token {
	t.Helper()
	if _, err := os.Stat(Module); err != nil {
		t.Skipf("SoftHSM2 is not installed (%v); scripts/testenv.sh installs softhsm2", err)
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		t.Skipf("softhsm2-util is not installed: %v", err)
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	out, err := exec.Command(util, "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", "so-"+PIN).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte(PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &Token{Config: hsm.Config{Module: Module, Token: label, PINFile: pinFile}, TokenDir: tokens}
}

// Remove takes the token away as pulling an HSM would (its directory moved aside) and returns the function
// that puts it back.
func (tk *Token) Remove(t testing.TB) (restore func()) {
	t.Helper()
	aside := tk.TokenDir + ".removed"
	if err := os.Rename(tk.TokenDir, aside); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Rename(aside, tk.TokenDir); err != nil {
			t.Fatal(err)
		}
	}
}

// Contains reports whether s mentions every one of words (for checking error lines).
func Contains(s string, words ...string) bool {
	for _, w := range words {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}
