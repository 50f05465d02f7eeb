package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/internal/hsm/hsmtest"
)

// oemRoot is an OEM's offline root kept with openssl: openssl ca signs, with validity dates taken from the
// product clock (so the test holds when make clockcheck moves it).
type oemRoot struct {
	t        *testing.T
	dir, cnf string
	cert     string
}

func sslDate(t time.Time) string { return t.UTC().Format("20060102150405Z") }

func opensslRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newOEMRoot(t *testing.T, name string) *oemRoot { return newOEMCA(t, name, nil, "v3_root") }

// newOEMCA is an OEM CA kept with openssl: a self-signed root with the extensions section ext when parent
// is nil, else a CA parent signs with ext.
func newOEMCA(t *testing.T, name string, parent *oemRoot, ext string) *oemRoot {
	t.Helper()
	dir := t.TempDir()
	r := &oemRoot{t: t, dir: dir, cnf: filepath.Join(dir, "ca.cnf"), cert: filepath.Join(dir, "root.pem")}
	cnf := `[ca]
default_ca = oem
[oem]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
[any]
commonName = supplied
organizationName = optional
[v3_root]
basicConstraints = critical,CA:TRUE,pathlen:1
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_issuing]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_root_deep]
basicConstraints = critical,CA:TRUE,pathlen:2
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_pathlen1]
basicConstraints = critical,CA:TRUE,pathlen:1
keyUsage = critical,keyCertSign,cRLSign
[v3_leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
[v3_nocrl]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign
`
	for f, s := range map[string]string{"ca.cnf": cnf, "index.txt": "", "serial": "1000\n"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	opensslRun(t, dir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "root.key")
	opensslRun(t, dir, "req", "-new", "-key", "root.key", "-subj", "/O=Acme OEM/CN="+name, "-out", "root.csr")
	now := clock.Now()
	if parent != nil {
		signed := parent.sign(filepath.Join(dir, "root.csr"), ext, now.Add(-time.Hour), now.AddDate(15, 0, 0))
		if err := os.Rename(signed, r.cert); err != nil {
			t.Fatal(err)
		}
		return r
	}
	opensslRun(t, dir, "ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", "root.key", "-in", "root.csr", "-out", "root.pem",
		"-extensions", ext, "-notext", "-startdate", sslDate(now.Add(-time.Hour)), "-enddate", sslDate(now.AddDate(20, 0, 0)))
	return r
}

// sign has the root sign csr with the extensions section ext, valid from..until; it returns the PEM file.
func (r *oemRoot) sign(csr, ext string, from, until time.Time) string {
	r.t.Helper()
	out := filepath.Join(r.dir, fmt.Sprintf("signed-%s-%d.pem", ext, time.Now().UnixNano()))
	opensslRun(r.t, r.dir, "ca", "-batch", "-config", "ca.cnf", "-cert", "root.pem", "-keyfile", "root.key", "-in", csr, "-out", out,
		"-extensions", ext, "-notext", "-startdate", sslDate(from), "-enddate", sslDate(until))
	return out
}

// TestOEMRoot: init --issuing-csr makes the issuing key and a CSR and no root; serve refuses until the
// certificate is imported; import-issuing-cert refuses, one case per check, a certificate for another key,
// one without CA:true, one with pathlen 1, one without cRLSign, one not valid now, a wrong root, and a file
// with two certificates; then accepts the OEM root's and a board's IDevID chains to that root (openssl verify).
func TestOEMRoot(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is not installed (make test installs it)")
	}
	t.Run("files", func(t *testing.T) { testOEMRoot(t, nil) })
	t.Run("pkcs11", func(t *testing.T) { testOEMRoot(t, pkcs11Args(hsmtest.New(t).Config)) })
}

// testOEMRoot runs TestOEMRoot with the issuing key in a file, or on the token p11 names (up to the import:
// the key check is then against the token's key).
func testOEMRoot(t *testing.T, p11 []string) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	csr := filepath.Join(t.TempDir(), "issuing.csr")
	code, out, errOut := runCLI(t, ctx, append([]string{"init", "--dir", dir, "--org", "Acme", "--issuing-csr", csr}, p11...)...)
	if code != ExitOK || !strings.Contains(out, "without a root of its own") {
		t.Fatalf("init --issuing-csr: %d %s %s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "issuing.key")); (err == nil) != (p11 == nil) {
		t.Fatalf("issuing.key on disk: %v, with the key on a token: %v", err == nil, p11 != nil)
	}
	for _, f := range []string{"root.crt", "root.key", "issuing.crt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Fatalf("init --issuing-csr wrote %s", f)
		}
	}
	if text := opensslRun(t, "", "req", "-in", csr, "-noout", "-verify", "-subject"); !strings.Contains(text, "Acme TPM Identity Issuing CA") {
		t.Fatalf("CSR:\n%s", text)
	}
	stations := filepath.Join(t.TempDir(), "stations")
	if code, _, errOut := runCLI(t, ctx, "station", "add", "--dir", dir, "--name", "line-1", "--out", stations); code != ExitOK {
		t.Fatalf("station add: %s", errOut)
	}
	if code, _, errOut := runCLI(t, ctx, "serve", "--dir", dir, "--listen", "127.0.0.1:0"); code == ExitOK || !strings.Contains(errOut, "import-issuing-cert") {
		t.Fatalf("serve before the import: %d %s", code, errOut)
	}

	root := newOEMRoot(t, "Acme OEM Root")
	other := newOEMRoot(t, "Another Root")
	now := clock.Now()
	from, until := now.Add(-time.Hour), now.AddDate(10, 0, 0)
	otherDir := filepath.Join(t.TempDir(), "ca2")
	otherCSR := filepath.Join(t.TempDir(), "other.csr")
	if code, _, errOut := runCLI(t, ctx, "init", "--dir", otherDir, "--issuing-csr", otherCSR); code != ExitOK {
		t.Fatalf("second init: %s", errOut)
	}
	good := root.sign(csr, "v3_issuing", from, until)
	both := filepath.Join(t.TempDir(), "both.pem")
	g, _ := os.ReadFile(good)
	rp, _ := os.ReadFile(root.cert)
	if err := os.WriteFile(both, append(g, rp...), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, cert, root, want string
	}{
		{"another key", root.sign(otherCSR, "v3_issuing", from, until), root.cert, "not a certificate for the issuing CA's key"},
		{"not a CA", root.sign(csr, "v3_leaf", from, until), root.cert, "CA:true missing"},
		{"pathlen 1", root.sign(csr, "v3_pathlen1", from, until), root.cert, "pathlen:0"},
		{"no cRLSign", root.sign(csr, "v3_nocrl", from, until), root.cert, "cRLSign"},
		{"expired", root.sign(csr, "v3_issuing", now.AddDate(-2, 0, 0), now.AddDate(-1, 0, 0)), root.cert, "not now"},
		{"not yet valid", root.sign(csr, "v3_issuing", now.AddDate(0, 0, 1), until), root.cert, "not now"},
		{"wrong root", good, other.cert, "does not chain to the OEM root"},
		{"root is not a root", good, good, "not a self-signed CA"},
		{"two certificates", both, root.cert, "more than one certificate"},
	} {
		code, _, errOut := runCLI(t, ctx, "import-issuing-cert", "--dir", dir, "--root", c.root, c.cert)
		if code != ExitFailure || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Fatalf("import, %s: %d %q, want %q", c.name, code, errOut, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "issuing.crt")); err == nil {
		t.Fatal("a refused import wrote issuing.crt")
	}
	code, out, errOut = runCLI(t, ctx, "import-issuing-cert", "--dir", dir, "--root", root.cert, good)
	if code != ExitOK || !strings.Contains(out, "imported: signed by") {
		t.Fatalf("import: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, ctx, "import-issuing-cert", "--dir", dir, "--root", root.cert, good); code != ExitFailure || !strings.Contains(errOut, "refusing to replace") {
		t.Fatalf("second import: %d %s", code, errOut)
	}

	if p11 != nil {
		// Serving opens the token for the rest of the process (ca.Open), which would keep SoftHSM2 from
		// noticing TestPKCS11CA's token pulled and put back; the files run enrolls under the OEM root.
		return
	}
	s := serveCA(t, dir, stations, "line-1")
	idevid, st, body := s.enroll(t, newBoard(t, "SN-OEM"))
	if st != 200 {
		t.Fatalf("enroll under the OEM root: %d %s\n%s", st, body, s.logs.String())
	}
	leaf := filepath.Join(t.TempDir(), "idevid.pem")
	if err := os.WriteFile(leaf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: idevid.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"verify", "-CAfile", root.cert, "-untrusted", good}, clock.OpenSSLAtTime()...)
	if text := opensslRun(t, "", append(args, leaf)...); !strings.Contains(text, ": OK") {
		t.Fatalf("openssl verify of the IDevID under the OEM root:\n%s", text)
	}
}

func catFiles(t *testing.T, paths ...string) string {
	t.Helper()
	var all []byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	out := filepath.Join(t.TempDir(), "cat.pem")
	if err := os.WriteFile(out, all, 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOEMIntermediateAndAccessCA: init --issuing-csr --access-csr makes both keys and CSRs and neither
// certificate; serve and station add refuse until the imports; the issuing CA is signed by an OEM
// intermediate under the OEM root and its import checks the whole path (refused: the intermediate left out,
// an intermediate off the path, a chain file ending at another root, the root given as an intermediate,
// an intermediate expired); the station access CA's import refuses a non-CA and a certificate for the
// issuing key; once both are in, a station connects, and an IDevID the CA issues verifies with openssl
// against the OEM root with the chain the CA sent as the untrusted certificates.
func TestOEMIntermediateAndAccessCA(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is not installed (make test installs it)")
	}
	t.Run("files", func(t *testing.T) { testOEMIntermediate(t, nil) })
	t.Run("pkcs11", func(t *testing.T) { testOEMIntermediate(t, pkcs11Args(hsmtest.New(t).Config)) })
}

// testOEMIntermediate runs TestOEMIntermediateAndAccessCA with both keys in files, or on the token p11
// names (up to serving, as testOEMRoot).
func testOEMIntermediate(t *testing.T, p11 []string) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	icsr, acsr := filepath.Join(t.TempDir(), "issuing.csr"), filepath.Join(t.TempDir(), "access.csr")
	code, out, errOut := runCLI(t, ctx, append([]string{"init", "--dir", dir, "--org", "Acme", "--issuing-csr", icsr, "--access-csr", acsr}, p11...)...)
	if code != ExitOK || !strings.Contains(out, "import-issuing-cert") || !strings.Contains(out, "import-access-cert") {
		t.Fatalf("init with both CSRs: %d %s %s", code, out, errOut)
	}
	for _, f := range []string{"issuing.key", "station-access.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); (err == nil) != (p11 == nil) {
			t.Fatalf("%s on disk: %v, with the keys on a token: %v", f, err == nil, p11 != nil)
		}
	}
	for _, f := range []string{"root.crt", "issuing.crt", "station-access.crt", "server.crt", "ca-trust.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Fatalf("init with both CSRs wrote %s", f)
		}
	}
	if text := opensslRun(t, "", "req", "-in", acsr, "-noout", "-verify", "-subject"); !strings.Contains(text, "Acme Station Access CA") {
		t.Fatalf("access CSR:\n%s", text)
	}
	stations := filepath.Join(t.TempDir(), "stations")
	if code, _, errOut := runCLI(t, ctx, "station", "add", "--dir", dir, "--name", "line-1", "--out", stations); code == ExitOK ||
		!strings.Contains(errOut, "import-access-cert") {
		t.Fatalf("station add before the access import: %d %s", code, errOut)
	}

	root := newOEMCA(t, "Acme OEM Root", nil, "v3_root_deep")
	inter := newOEMCA(t, "Acme OEM Devices CA", root, "v3_pathlen1")
	other := newOEMCA(t, "Another Root", nil, "v3_root_deep")
	otherInter := newOEMCA(t, "Another Devices CA", other, "v3_pathlen1")
	now := clock.Now()
	from, until := now.Add(-time.Hour), now.AddDate(10, 0, 0)
	expiredInter := newOEMCA(t, "Acme Old Devices CA", root, "v3_pathlen1")
	expiredInter.cert = root.sign(filepath.Join(expiredInter.dir, "root.csr"), "v3_pathlen1", now.AddDate(-3, 0, 0), now.AddDate(-1, 0, 0))
	issuing := inter.sign(icsr, "v3_issuing", from, until)
	underExpired := expiredInter.sign(icsr, "v3_issuing", from, until)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"intermediate left out", []string{"--root", root.cert, issuing}, "does not chain to the OEM root"},
		{"intermediate off the path", []string{"--root", root.cert, "--intermediate", inter.cert, "--intermediate", otherInter.cert, issuing}, "not on the path"},
		{"chain ends at another root", []string{"--root", root.cert, "--chain", catFiles(t, inter.cert, other.cert), issuing}, "not at the --root given"},
		{"root as an intermediate", []string{"--root", root.cert, "--intermediate", catFiles(t, inter.cert, root.cert), issuing}, "self-signed"},
		{"intermediate expired", []string{"--root", root.cert, "--intermediate", expiredInter.cert, underExpired}, "does not chain to the OEM root"},
		{"chain without a root", []string{"--chain", inter.cert, issuing}, "no self-signed root"},
	} {
		code, _, errOut := runCLI(t, ctx, append([]string{"import-issuing-cert", "--dir", dir}, c.args...)...)
		if code != ExitFailure || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Fatalf("import, %s: %d %q, want %q", c.name, code, errOut, c.want)
		}
	}
	code, out, errOut = runCLI(t, ctx, "import-issuing-cert", "--dir", dir, "--chain", catFiles(t, inter.cert, root.cert), issuing)
	if code != ExitOK || !strings.Contains(out, "1 OEM intermediate(s)") {
		t.Fatalf("import with the chain: %d %s %s", code, out, errOut)
	}
	roots := filepath.Join(t.TempDir(), "vendor.pem")
	if err := os.WriteFile(roots, vendor.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(t, ctx, "serve", "--dir", dir, "--listen", "127.0.0.1:0", "--ek-roots", roots); code == ExitOK || !strings.Contains(errOut, "import-access-cert") {
		t.Fatalf("serve before the access import: %d %s", code, errOut)
	}

	for _, c := range []struct{ name, cert, want string }{
		{"not a CA", inter.sign(acsr, "v3_leaf", from, until), "CA:true missing"},
		{"the issuing key", inter.sign(icsr, "v3_issuing", from, until), "not a certificate for the station access CA's key"},
	} {
		code, _, errOut := runCLI(t, ctx, "import-access-cert", "--dir", dir, "--root", root.cert, "--intermediate", inter.cert, c.cert)
		if code != ExitFailure || !strings.Contains(errOut, c.want) {
			t.Fatalf("access import, %s: %d %q, want %q", c.name, code, errOut, c.want)
		}
	}
	access := inter.sign(acsr, "v3_issuing", from, until)
	if code, out, errOut := runCLI(t, ctx, "import-access-cert", "--dir", dir, "--root", root.cert, "--intermediate", inter.cert, access); code != ExitOK {
		t.Fatalf("access import: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, ctx, "import-access-cert", "--dir", dir, "--root", root.cert, "--intermediate", inter.cert, access); code != ExitFailure ||
		!strings.Contains(errOut, "refusing to replace") {
		t.Fatalf("second access import: %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, ctx, "station", "add", "--dir", dir, "--name", "line-1", "--out", stations); code != ExitOK {
		t.Fatalf("station add: %s", errOut)
	}
	// The server's certificate chains to the OEM root as well; stations trust the access CA alone.
	args := append([]string{"verify", "-CAfile", root.cert, "-untrusted", catFiles(t, access, inter.cert)}, clock.OpenSSLAtTime()...)
	if text := opensslRun(t, "", append(args, filepath.Join(dir, "server.crt"))...); !strings.Contains(text, ": OK") {
		t.Fatalf("openssl verify of the server certificate:\n%s", text)
	}

	if p11 != nil {
		return // serving would hold the token for the test process (see testOEMRoot)
	}
	s := serveCA(t, dir, stations, "line-1")
	certs, st, body := s.enrollCerts(t, newBoard(t, "SN-INTER"))
	if st != 200 {
		t.Fatalf("enroll under the OEM intermediate: %d %s\n%s", st, body, s.logs.String())
	}
	if len(certs.Chain) != 3 {
		t.Fatalf("the CA sent a chain of %d certificates, want issuing CA, intermediate, root", len(certs.Chain))
	}
	write := func(name string, ders ...[]byte) string {
		p := filepath.Join(t.TempDir(), name)
		var b []byte
		for _, d := range ders {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	chain := write("chain.pem", certs.Chain[:len(certs.Chain)-1]...)
	args = append([]string{"verify", "-CAfile", root.cert, "-untrusted", chain}, clock.OpenSSLAtTime()...)
	for _, leaf := range [][]byte{certs.IDevIDCert, certs.IAKCert} {
		if text := opensslRun(t, "", append(args, write("leaf.pem", leaf))...); !strings.Contains(text, ": OK") {
			t.Fatalf("openssl verify under the OEM root with the CA's chain:\n%s", text)
		}
	}
}
