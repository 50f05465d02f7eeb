package stepca

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/acmeattest"
	"github.com/tpmline/tpmline/provisioning/ca"
	"github.com/tpmline/tpmline/provisioning/ekcert"
	"github.com/tpmline/tpmline/provisioning/tpmsigner"
	"github.com/tpmline/tpmline/station"
)

// stepCABinary builds (once per machine, cached) and returns the step-ca binary tool/go.mod pins.
func stepCABinary(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("./build.sh").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("building step-ca: %v\n%s", err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// identityCA is tpmline's upstream CA, served over HTTPS with mutual TLS on loopback, as a line runs it.
type identityCA struct {
	url       string
	clientTLS *tls.Config
	root      *ca.KeyPair
	issuing   *ca.KeyPair
}

// The certificates here are checked by step-ca against the wall clock (it has no other), so they are made
// on it too, not on internal/clock's product calendar.
func newKeyPair(t *testing.T, spec ca.CertSpec, parent *ca.KeyPair) *ca.KeyPair {
	t.Helper()
	now := time.Now()
	if spec.NotAfter.IsZero() {
		spec.NotAfter = now.Add(24 * time.Hour)
	}
	kp, err := ca.NewCertificate(spec, parent, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func startIdentityCA(t *testing.T, vendorRoot *x509.Certificate, vendorInter []*x509.Certificate) *identityCA {
	t.Helper()
	root := newKeyPair(t, ca.CertSpec{Subject: pkix.Name{CommonName: "tpmline identity root"}, IsCA: true, MaxPathLen: 1}, nil)
	issuing := newKeyPair(t, ca.CertSpec{Subject: pkix.Name{CommonName: "tpmline issuing CA"}, IsCA: true}, root)
	server := newKeyPair(t, ca.CertSpec{Subject: pkix.Name{CommonName: "ca server"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, root)
	client := newKeyPair(t, ca.CertSpec{Subject: pkix.Name{CommonName: "station-interop"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, root)
	store, err := ca.OpenStore(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "ca.db"))
	if err != nil {
		t.Fatal(err)
	}
	v := &ca.Verifier{
		Store:      store,
		Issuer:     &ca.Issuer{CA: issuing.Cert, Key: issuing.Key, Root: root.Cert, Organization: "tpmline interop"},
		EKVerifier: &ekcert.Verifier{Roots: []*x509.Certificate{vendorRoot}, Intermediates: vendorInter},
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = (&ca.Server{Verifier: v}).Serve(ctx, ln, ca.ServerTLSConfig(tls.Certificate{Certificate: [][]byte{server.Cert.Raw}, PrivateKey: server.Key}, pool))
	}()
	t.Cleanup(func() { cancel(); <-done; store.Close() })
	return &identityCA{
		url: "https://" + ln.Addr().String(),
		clientTLS: &tls.Config{Time: clock.Now, MinVersion: tls.VersionTLS12, RootCAs: pool,
			Certificates: []tls.Certificate{{Certificate: [][]byte{client.Cert.Raw}, PrivateKey: client.Key}}},
		root: root, issuing: issuing,
	}
}

// provisionBoard runs the station over a swtpm board made by a swtpm_localca vendor, on profile, and
// returns the board's TPM address.
func provisionBoard(t *testing.T, idCA func(vendorRoot *x509.Certificate, inter []*x509.Certificate) *identityCA, profile string, serial string) (string, *identityCA) {
	t.Helper()
	board, vendor := fixturestest.NewSwtpmBoard(t)
	var vendorCerts []*x509.Certificate
	for _, p := range []string{vendor.RootPath(), vendor.IntermediatePath()} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		vendorCerts = append(vendorCerts, c)
	}
	c := idCA(vendorCerts[0], vendorCerts[1:])
	inv, err := inventory.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "inv.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inv.Close() })
	prof, err := station.ParseProfile([]byte(profile))
	if err != nil {
		t.Fatal(err)
	}
	st, err := station.New(station.Config{
		StationID: "station-interop", Inventory: inv, CA: provisioning.NewClient(c.url, c.clientTLS),
		Open:    func(addr string) (transport.TPMCloser, error) { return fixtures.Open(addr) },
		Timed:   func(t transport.TPM) station.TimedTPM { return fixtures.NewRecorder(t) },
		Default: prof,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := inv.OpenBatch(ctx, inventory.NewBatch{ID: "B1", Product: prof.Name, WorkOrder: "WO-1", Quantity: 1, Operator: "op1", Station: "station-interop"}); err != nil {
		t.Fatal(err)
	}
	out := st.Provision(ctx, station.Job{Batch: "B1", Serial: serial, TPM: board.Addr()})
	if out.Failure != nil || out.State != inventory.StateProvisioned {
		t.Fatalf("board %s: %s %v", serial, out.State, out.Failure)
	}
	return board.Addr(), c
}

// stepCA is a running step-ca with one ACME provisioner, "devices", that allows device-attest-01 with the
// "tpm" format and trusts attestationRoots.
type stepCA struct {
	directory string
	http      *http.Client
	root      *x509.Certificate
}

func startStepCA(t *testing.T, attestationRoots ...*x509.Certificate) *stepCA {
	t.Helper()
	bin := stepCABinary(t)
	dir := t.TempDir()
	root := newKeyPair(t, ca.CertSpec{Subject: pkix.Name{CommonName: "step-ca interop root"}, IsCA: true, MaxPathLen: 1}, nil)
	inter := newKeyPair(t, ca.CertSpec{Subject: pkix.Name{CommonName: "step-ca interop intermediate"}, IsCA: true}, root)
	keyDER, err := x509.MarshalPKCS8PrivateKey(inter.Key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, blocks ...*pem.Block) string {
		var b bytes.Buffer
		for _, blk := range blocks {
			_ = pem.Encode(&b, blk)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var bundle bytes.Buffer
	for _, c := range attestationRoots {
		_ = pem.Encode(&bundle, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := map[string]any{
		"root":     write("root.crt", &pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw}),
		"crt":      write("intermediate.crt", &pem.Block{Type: "CERTIFICATE", Bytes: inter.Cert.Raw}),
		"key":      write("intermediate.key", &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		"address":  addr,
		"dnsNames": []string{"127.0.0.1"},
		"db":       map[string]any{"type": "badgerv2", "dataSource": filepath.Join(dir, "db")},
		"logger":   map[string]any{"format": "text"},
		"authority": map[string]any{"provisioners": []any{map[string]any{
			"type": "ACME", "name": "devices",
			"challenges":         []string{"device-attest-01"},
			"attestationFormats": []string{"tpm"},
			// A Go []byte field: the PEM bundle goes base64-encoded into the JSON.
			"attestationRoots": base64.StdEncoding.EncodeToString(bundle.Bytes()),
		}}},
	}
	js, _ := json.MarshalIndent(cfg, "", "  ")
	cfgPath := filepath.Join(dir, "ca.json")
	if err := os.WriteFile(cfgPath, js, 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "step-ca.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "HOME="+dir, "STEPPATH="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("step-ca log:\n%s", b)
		}
	})
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("step-ca exited: %v\n%s", err, b)
		default:
		}
		if rsp, err := hc.Get("https://" + addr + "/health"); err == nil {
			rsp.Body.Close()
			if rsp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("step-ca did not answer /health within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &stepCA{directory: "https://" + addr + "/acme/devices/directory", http: hc, root: root.Cert}
}

// rsaIAKProfile is the product profile for boards that feed step-ca: an RSA-2048 IAK (H-1) beside a
// NULL-scheme P-256 IDevID, which the identity CA accepts as it does the H-2 one.
const rsaIAKProfile = `{"name": "widget-rsa-iak", "iak_key_algorithm": "rsa2048", "idevid_scheme": "null"}`

// TestDeviceAttest provisions a swtpm board with the station on the RSA-IAK profile and has it obtain a
// certificate for its serial from step-ca through ACME device-attest-01; then shows step-ca refuses an IAK
// certificate from another CA, tampered attestations, and an IAK certificate carrying hardwareModuleName.
func TestDeviceAttest(t *testing.T) {
	fixturestest.RequireSwtpm(t)
	const serial = "SN-ACME-0001"
	addr, idCA := provisionBoard(t, func(root *x509.Certificate, inter []*x509.Certificate) *identityCA {
		return startIdentityCA(t, root, inter)
	}, rsaIAKProfile, serial)
	sca := startStepCA(t, idCA.root.Cert)
	tpm, err := fixtures.Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { tpm.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := acmeattest.Config{Directory: sca.directory, HTTP: sca.http, TPM: tpm, IAKChain: [][]byte{idCA.issuing.Cert.Raw}}

	// The station's IAK certificate, as read from NV, for the refusal cases.
	iakCertDER, err := provisioning.ReadNV(tpm, provisioning.DefaultLayout().IAKCertIndex, provisioning.MaxCertBytes)
	if err != nil {
		t.Fatal(err)
	}
	iakCert, err := x509.ParseCertificate(iakCertDER)
	if err != nil {
		t.Fatal(err)
	}

	refused := func(t *testing.T, cfg acmeattest.Config, want string) {
		t.Helper()
		cfg.Replace = true // the key of "issued" sits at the default handle; step-ca must be what refuses
		octx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err := acmeattest.Obtain(octx, cfg)
		if err == nil {
			t.Fatal("step-ca issued a certificate")
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refused, but not for %q: %v", want, err)
		}
		t.Logf("refused: %v", err)
	}

	t.Run("issued", func(t *testing.T) {
		res, err := acmeattest.Obtain(ctx, base)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(res.Chain[0])
		if err != nil {
			t.Fatal(err)
		}
		if res.Identifier != serial {
			t.Fatalf("identifier %q", res.Identifier)
		}
		id, _, err := ca.ParsePermanentIdentifier(leaf)
		if err != nil || id != serial {
			t.Fatalf("step-ca's certificate names %q (%v), want %q", id, err, serial)
		}
		pool, inter := x509.NewCertPool(), x509.NewCertPool()
		pool.AddCert(sca.root)
		for _, der := range res.Chain[1:] {
			c, _ := x509.ParseCertificate(der)
			inter.AddCert(c)
		}
		vc := *leaf
		vc.UnhandledCriticalExtensions = nil // step-ca's SAN holds only the permanentIdentifier
		if _, err := vc.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("step-ca's certificate does not chain to its root: %v", err)
		}
		// The certified key is the one persisted in the TPM, and the TPM signs for it.
		s, err := tpmsigner.New(tpm, res.KeyHandle, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !leafKeyIs(leaf, s) {
			t.Fatal("step-ca certified another key than the TPM's")
		}
	})

	t.Run("occupied key handle refused before the exchange", func(t *testing.T) {
		_, err := acmeattest.Obtain(ctx, base)
		if err == nil || !strings.Contains(err.Error(), "already holds a key") {
			t.Fatalf("second run at the same handle: %v", err)
		}
	})

	t.Run("board-agent acme command", func(t *testing.T) {
		dir := t.TempDir()
		agent := filepath.Join(dir, "board-agent")
		if out, err := exec.Command("go", "build", "-o", agent, "github.com/tpmline/tpmline/cmd/board-agent").CombinedOutput(); err != nil {
			t.Fatalf("building board-agent: %v\n%s", err, out)
		}
		pemFile := func(name string, c *x509.Certificate) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		// The agent opens the TPM itself: this test's connection steps aside (swtpm serves one at a time).
		tpm.Close()
		defer func() {
			if tpm, err = fixtures.Open(addr); err != nil {
				t.Fatal(err)
			}
			base.TPM = tpm
		}()
		cmd := exec.Command(agent, "acme", "--directory", sca.directory, "--tpm", addr, "--root", pemFile("step-root.pem", sca.root),
			"--iak-chain", pemFile("issuing.pem", idCA.issuing.Cert), "--out", filepath.Join(dir, "out"), "--key-alg", "rsa2048",
			"--key-handle", "0x81020011")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("board-agent acme: %v\n%s", err, out)
		}
		b, err := os.ReadFile(filepath.Join(dir, "out", "cert.pem"))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		leaf, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if id, _, err := ca.ParsePermanentIdentifier(leaf); err != nil || id != serial {
			t.Fatalf("cert.pem names %q (%v)", id, err)
		}
		t.Logf("%s", bytes.TrimSpace(out))
	})

	t.Run("IAK certificate from another CA", func(t *testing.T) {
		otherRoot := newKeyPair(t, ca.CertSpec{Subject: pkix.Name{CommonName: "tpmline identity root"}, IsCA: true, MaxPathLen: 1}, nil)
		otherIssuing := newKeyPair(t, ca.CertSpec{Subject: pkix.Name{CommonName: "tpmline issuing CA"}, IsCA: true}, otherRoot)
		info, err := provisioning.ReadTPMInfo(tpm)
		if err != nil {
			t.Fatal(err)
		}
		is := &ca.Issuer{CA: otherIssuing.Cert, Key: otherIssuing.Key, Root: otherRoot.Cert, Now: time.Now}
		der, err := is.IssueIAK(iakCert.PublicKey, ca.Board{Serial: serial, TPM: info})
		if err != nil {
			t.Fatal(err)
		}
		cfg := base
		cfg.IAKCert, cfg.IAKChain = der, [][]byte{otherIssuing.Cert.Raw}
		refused(t, cfg, "x5c is not valid")
	})
	t.Run("tampered certInfo", func(t *testing.T) {
		cfg := base
		cfg.Attested = func(s *acmeattest.Statement) { s.CertInfo[len(s.CertInfo)-1] ^= 1 }
		refused(t, cfg, "invalid certification parameters")
	})
	t.Run("pubArea of another key", func(t *testing.T) {
		cfg := base
		cfg.Attested = func(s *acmeattest.Statement) { s.PubArea[len(s.PubArea)-1] ^= 1 }
		refused(t, cfg, "certification refers to a different key")
	})
	t.Run("signature tampered", func(t *testing.T) {
		cfg := base
		cfg.Attested = func(s *acmeattest.Statement) { s.Sig[len(s.Sig)-1] ^= 1 }
		refused(t, cfg, "could not verify attestation")
	})
	t.Run("IAK certificate with hardwareModuleName (step-ca misparses RFC 4108)", func(t *testing.T) {
		info, err := provisioning.ReadTPMInfo(tpm)
		if err != nil {
			t.Fatal(err)
		}
		is := &ca.Issuer{CA: idCA.issuing.Cert, Key: idCA.issuing.Key, Root: idCA.root.Cert, Now: time.Now, IAKHardwareModuleName: true}
		der, err := is.IssueIAK(iakCert.PublicKey, ca.Board{Serial: serial, TPM: info})
		if err != nil {
			t.Fatal(err)
		}
		cfg := base
		cfg.IAKCert = der
		refused(t, cfg, "failed parsing HardwareModuleName")
	})
}

// TestP256IAKRefused records why products that feed step-ca choose the RSA IAK: a board on the default
// profile (P-256 IAK, TCG H-2) has a valid IAK certificate, yet step-ca v0.30.2 verifies TPM2_Certify
// signatures of RSA AKs only (go-attestation's CertificationParameters.Verify).
func TestP256IAKRefused(t *testing.T) {
	fixturestest.RequireSwtpm(t)
	const serial = "SN-ACME-P256"
	addr, idCA := provisionBoard(t, func(root *x509.Certificate, inter []*x509.Certificate) *identityCA {
		return startIdentityCA(t, root, inter)
	}, `{"name": "widget"}`, serial)
	sca := startStepCA(t, idCA.root.Cert)
	tpm, err := fixtures.Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = acmeattest.Obtain(ctx, acmeattest.Config{Directory: sca.directory, HTTP: sca.http, TPM: tpm, IAKChain: [][]byte{idCA.issuing.Cert.Raw}})
	if err == nil || !strings.Contains(err.Error(), "only RSA verification keys are supported") {
		t.Fatalf("step-ca with a P-256 IAK: %v", err)
	}
	t.Logf("refused: %v", err)
}

func leafKeyIs(leaf *x509.Certificate, s *tpmsigner.Signer) bool {
	a, err1 := x509.MarshalPKIXPublicKey(leaf.PublicKey)
	b, err2 := x509.MarshalPKIXPublicKey(s.Public())
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}
