package hsm_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tpmline/tpmline/internal/hsm"
	"github.com/tpmline/tpmline/internal/hsm/hsmtest"
)

func sign(t *testing.T, s crypto.Signer) error {
	t.Helper()
	d := sha256.Sum256([]byte("tpmline"))
	sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		return err
	}
	if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Fatal("signature does not verify")
	}
	return nil
}

func TestGenerateFindSign(t *testing.T) {
	tk := hsmtest.New(t)
	tok, err := hsm.Open(tk.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	k, err := tok.Generate("ca-issuing")
	if err != nil {
		t.Fatal(err)
	}
	if err := sign(t, k); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Generate("ca-issuing"); !errors.Is(err, hsm.ErrKeyExists) {
		t.Fatalf("second Generate: %v, want ErrKeyExists", err)
	}
	again, err := tok.Key("ca-issuing")
	if err != nil {
		t.Fatal(err)
	}
	if !again.Public().(*ecdsa.PublicKey).Equal(k.Public()) {
		t.Fatal("Key found another key")
	}
	if _, err := tok.Key("nope"); !errors.Is(err, hsm.ErrNoKey) {
		t.Fatalf("missing key: %v, want ErrNoKey", err)
	}
}

func TestWrongPIN(t *testing.T) {
	tk := hsmtest.New(t)
	bad := filepath.Join(t.TempDir(), "pin")
	os.WriteFile(bad, []byte("0000\n"), 0o600)
	c := tk.Config
	c.PINFile = bad
	_, err := hsm.Open(c)
	if !errors.Is(err, hsm.ErrWrongPIN) {
		t.Fatalf("wrong PIN: %v, want ErrWrongPIN", err)
	}
	t.Log(err)
	c.PINFile, c.PINEnv = "", "HSM_TEST_PIN_UNSET"
	if _, err := hsm.Open(c); err == nil {
		t.Fatal("unset PIN variable accepted")
	}
	t.Setenv("HSM_TEST_PIN", hsmtest.PIN)
	c.PINEnv = "HSM_TEST_PIN"
	tok, err := hsm.Open(c)
	if err != nil {
		t.Fatalf("PIN from the environment: %v", err)
	}
	tok.Close()
}

func TestTokenRemoved(t *testing.T) {
	tk := hsmtest.New(t)
	tok, err := hsm.Open(tk.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	k, err := tok.Generate("k")
	if err != nil {
		t.Fatal(err)
	}
	restore := tk.Remove(t)
	if err := k.Ready(); !errors.Is(err, hsm.ErrTokenUnavailable) {
		t.Fatalf("Ready with the token removed: %v, want ErrTokenUnavailable", err)
	}
	if err := sign(t, k); !errors.Is(err, hsm.ErrTokenUnavailable) {
		t.Fatalf("Sign with the token removed: %v, want ErrTokenUnavailable", err)
	} else {
		t.Log(err)
	}
	restore()
	if err := k.Ready(); err != nil {
		t.Fatalf("Ready with the token back: %v", err)
	}
	if err := sign(t, k); err != nil {
		t.Fatalf("Sign with the token back: %v", err)
	}
}
