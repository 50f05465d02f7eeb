// Package hsmtest gives tests a SoftHSM2 token of their own: a SOFTHSM2_CONF and token directory under the
// test's temporary directory, the token initialised with softhsm2-util, and the PIN in a file.
package hsmtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tpmline/tpmline/internal/hsm"
)

// Module is where Debian's softhsm2 package installs the PKCS#11 library.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// PIN is the user PIN of every test token.
const PIN = "1234-test"

// Token is a SoftHSM2 token for one test.
type Token struct {
	Config hsm.Config
	Dir    string // the token's own directory under SoftHSM2's tokendir
}

// The PKCS#11 library reads SOFTHSM2_CONF and lists its tokens once, when it is first initialised, and a
// process keeps it initialised while any session is open (a CA opened by a test holds its token until the
// process ends). So every test of a process shares one configuration, and its tokens are all made before
// the library is first loaded: New hands out the next one.
const poolSize = 12

var (
	once    sync.Once
	pool    []*Token
	tokens  string
	onceErr error
	next    int
	mu      sync.Mutex
)

func setup(util string) {
	dir, err := os.MkdirTemp("", "tpmline-softhsm-")
	if err != nil {
		onceErr = err
		return
	}
	tokens = filepath.Join(dir, "tokens")
	if onceErr = os.Mkdir(tokens, 0o700); onceErr != nil {
		return
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if onceErr = os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"), 0o600); onceErr != nil {
		return
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	pinFile := filepath.Join(dir, "pin")
	if onceErr = os.WriteFile(pinFile, []byte(PIN+"\n"), 0o600); onceErr != nil {
		return
	}
	for i := 1; i <= poolSize; i++ {
		label := fmt.Sprintf("tpmline-test-%d", i)
		before, _ := os.ReadDir(tokens)
		out, err := exec.Command(util, "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", "so-"+PIN).CombinedOutput()
		if err != nil {
			onceErr = fmt.Errorf("softhsm2-util --init-token: %v\n%s", err, out)
			return
		}
		after, _ := os.ReadDir(tokens)
		seen := map[string]bool{}
		for _, e := range before {
			seen[e.Name()] = true
		}
		tk := &Token{Config: hsm.Config{Module: Module, Token: label, PINFile: pinFile}}
		for _, e := range after {
			if !seen[e.Name()] {
				tk.Dir = filepath.Join(tokens, e.Name())
			}
		}
		if tk.Dir == "" {
			onceErr = errors.New("softhsm2-util made no token directory")
			return
		}
		pool = append(pool, tk)
	}
}

// New returns a fresh, initialised SoftHSM2 token (user PIN PIN, in the file Config.PINFile) and points
// SOFTHSM2_CONF at the process's configuration. A test that changes the PIN file puts it back. New fails
// the test when SoftHSM2 is not installed, so a PKCS#11 test never passes by skipping (make test installs it).
func New(t testing.TB) *Token {
	t.Helper()
	if _, err := os.Stat(Module); err != nil {
		t.Fatalf("SoftHSM2 is not installed (%v): install softhsm2 (make test installs it)", err)
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		t.Fatalf("softhsm2-util is not installed (%v): install softhsm2 (make test installs it)", err)
	}
	once.Do(func() { setup(util) })
	if onceErr != nil {
		t.Fatalf("setting up SoftHSM2: %v", onceErr)
	}
	mu.Lock()
	defer mu.Unlock()
	if next == len(pool) {
		t.Fatalf("hsmtest: all %d tokens of this process are used; raise poolSize", poolSize)
	}
	tk := pool[next]
	next++
	c := *tk
	return &c
}

// Remove takes the token away as pulling an HSM would (its directory moved out of the token directory)
// and returns the function that puts it back.
func (tk *Token) Remove(t testing.TB) (restore func()) {
	t.Helper()
	aside := filepath.Join(filepath.Dir(tokens), filepath.Base(tk.Dir)+".removed")
	if err := os.Rename(tk.Dir, aside); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Rename(aside, tk.Dir); err != nil {
			t.Fatal(err)
		}
	}
}
