package tpmsigner_test

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/fixtures/fixturestest"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ca"
	"github.com/tpmline/tpmline/provisioning/tpmsigner"
)

const idevidHandle = tpm2.TPMHandle(0x81020000)

// board is a swtpm board whose IDevID the test made and our issuer certified, as a station leaves it:
// key persisted at 0x81020000, certificate in NV 0x01C90200.
type board struct {
	addr    string
	tcti    string
	tpm     transport.TPMCloser
	cert    []byte
	root    *ca.KeyPair // the identity root: the only thing TLS servers here trust
	issuing *ca.KeyPair
}

func newBoard(t *testing.T, alg provisioning.KeyAlg, scheme provisioning.IDevIDScheme) *board {
	t.Helper()
	fixturestest.RequireSwtpm(t)
	sw, _ := fixturestest.NewSwtpmBoard(t)
	tpm, err := fixtures.Open(sw.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tpm.Close() })
	if err := provisioning.FlushTransients(tpm); err != nil {
		t.Fatal(err)
	}
	key, err := provisioning.CreateIDevIDFor(tpm, alg, scheme)
	if err != nil {
		t.Fatal(err)
	}
	if err := provisioning.Persist(tpm, key, idevidHandle); err != nil {
		t.Fatal(err)
	}
	if err := key.Flush(tpm); err != nil {
		t.Fatal(err)
	}
	// OpenSSL checks validity against the wall clock, so this PKI lives on it.
	now := time.Now()
	root, err := ca.NewCertificate(ca.CertSpec{Subject: pkix.Name{CommonName: "identity root"}, NotAfter: now.Add(24 * time.Hour), IsCA: true, MaxPathLen: 1}, nil, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	issuing, err := ca.NewCertificate(ca.CertSpec{Subject: pkix.Name{CommonName: "issuing CA"}, NotAfter: now.Add(24 * time.Hour), IsCA: true}, root, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tpm2.Pub(key.Public)
	if err != nil {
		t.Fatal(err)
	}
	is := &ca.Issuer{CA: issuing.Cert, Key: issuing.Key, Root: root.Cert, Organization: "tpmline test", Now: time.Now}
	der, err := is.IssueIDevID(pub, ca.Board{Serial: "SN-TLS-1", Product: "widget"})
	if err != nil {
		t.Fatal(err)
	}
	const nvIDevIDCert = 0x01C90200 // DESIGN.md's default IDevID certificate index
	if err := provisioning.WriteCertNV(tpm, nvIDevIDCert, der, false); err != nil {
		t.Fatal(err)
	}
	back, err := provisioning.ReadNV(tpm, nvIDevIDCert, provisioning.MaxCertBytes)
	if err != nil {
		t.Fatal(err)
	}
	return &board{addr: sw.Addr(), tcti: sw.TCTI(), tpm: tpm, cert: back, root: root, issuing: issuing}
}

func (b *board) signer(t *testing.T) *tpmsigner.Signer {
	t.Helper()
	s, err := tpmsigner.New(b.tpm, idevidHandle, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSign checks signatures verify under the public key, per scheme and hash, and that a key's template
// scheme is enforced.
func TestSign(t *testing.T) {
	t.Run("ecdsa", func(t *testing.T) {
		b := newBoard(t, provisioning.KeyP256, provisioning.IDevIDSchemeTemplate)
		s := b.signer(t)
		d := sha256.Sum256([]byte("hello"))
		sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
			t.Fatal("ECDSA signature does not verify")
		}
		d384 := sha512.Sum384([]byte("hello"))
		if _, err := s.Sign(rand.Reader, d384[:], crypto.SHA384); err == nil {
			t.Fatal("an H-2 IDevID (ECDSA-SHA256 fixed) signed SHA-384")
		}
		if _, err := s.Sign(rand.Reader, d[:16], crypto.SHA256); err == nil {
			t.Fatal("signed a short digest")
		}
	})
	t.Run("ecdsa null scheme", func(t *testing.T) {
		b := newBoard(t, provisioning.KeyP256, provisioning.IDevIDSchemeNull)
		s := b.signer(t)
		d := sha512.Sum384([]byte("hello"))
		sig, err := s.Sign(rand.Reader, d[:], crypto.SHA384)
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
			t.Fatal("ECDSA-SHA384 signature does not verify")
		}
	})
	t.Run("rsa", func(t *testing.T) {
		b := newBoard(t, provisioning.KeyRSA2048, provisioning.IDevIDSchemeTemplate)
		s := b.signer(t)
		pub := s.Public().(*rsa.PublicKey)
		d := sha256.Sum256([]byte("hello"))
		sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig); err != nil {
			t.Fatalf("PKCS#1 v1.5: %v", err)
		}
		pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
		sig, err = s.Sign(rand.Reader, d[:], pss)
		if err != nil {
			t.Fatal(err)
		}
		if err := rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, pss); err != nil {
			t.Fatalf("PSS: %v", err)
		}
		if _, err := s.Sign(rand.Reader, d[:], &rsa.PSSOptions{SaltLength: 7, Hash: crypto.SHA256}); err == nil {
			t.Fatal("signed PSS with a salt length the TPM does not use")
		}
	})
	t.Run("restricted key refused", func(t *testing.T) {
		b := newBoard(t, provisioning.KeyP256, provisioning.IDevIDSchemeTemplate)
		iak, err := provisioning.CreateIAK(b.tpm, provisioning.KeyP256)
		if err != nil {
			t.Fatal(err)
		}
		defer iak.Flush(b.tpm)
		if _, err := tpmsigner.New(b.tpm, iak.Handle, nil); err == nil {
			t.Fatal("a Signer over a restricted key")
		}
	})
}

// tlsServer is a Go TLS server that trusts only the identity root and reports each handshake's client
// certificate chain or error.
type tlsServer struct {
	addr    string
	results chan error
	cas     *ca.KeyPair // the server's own PKI, which the clients trust
}

func startTLSServer(t *testing.T, identityRoot *x509.Certificate, version uint16) *tlsServer {
	t.Helper()
	now := time.Now()
	// A self-signed server certificate that clients trust directly: with the tpm2 provider chosen for
	// signatures, OpenSSL also verifies the server's signatures in the TPM, one object slot each, and a
	// two-level server chain plus the handshake signature overflow swtpm's 3 slots ("out of memory for
	// object contexts"); a trust anchor's own signature is never checked.
	leaf, err := ca.NewCertificate(ca.CertSpec{Subject: pkix.Name{CommonName: "service"}, NotAfter: now.Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, nil, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	sroot := leaf
	pool := x509.NewCertPool()
	pool.AddCert(identityRoot)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   version, MaxVersion: version,
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{addr: ln.Addr().String(), results: make(chan error, 4), cas: sroot}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				tc := c.(*tls.Conn)
				err := tc.Handshake()
				if err == nil {
					st := tc.ConnectionState()
					if len(st.VerifiedChains) == 0 || st.Version != version {
						err = fmt.Errorf("handshake at version %#x without a verified client chain", st.Version)
					} else {
						_, _ = io.WriteString(tc, "hello board\n")
					}
				}
				s.results <- err
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *tlsServer) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.results:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the server saw no handshake")
		return nil
	}
}

var versions = []struct {
	name string
	v    uint16
}{{"TLS1.3", tls.VersionTLS13}, {"TLS1.2", tls.VersionTLS12}}

// TestGoTLSClientAuth: Go crypto/tls authenticates with the IDevID through the TPM signer to a server that
// trusts only the identity root, on TLS 1.3 and 1.2, with ECC and RSA IDevIDs.
func TestGoTLSClientAuth(t *testing.T) {
	for _, k := range []struct {
		name   string
		alg    provisioning.KeyAlg
		scheme provisioning.IDevIDScheme
	}{{"p256", provisioning.KeyP256, ""}, {"p256-null", provisioning.KeyP256, provisioning.IDevIDSchemeNull}, {"rsa2048", provisioning.KeyRSA2048, ""}} {
		t.Run(k.name, func(t *testing.T) {
			b := newBoard(t, k.alg, k.scheme)
			s := b.signer(t)
			for _, v := range versions {
				t.Run(v.name, func(t *testing.T) {
					srv := startTLSServer(t, b.root.Cert, v.v)
					roots := x509.NewCertPool()
					roots.AddCert(srv.cas.Cert)
					conn, err := tls.Dial("tcp", srv.addr, &tls.Config{
						RootCAs: roots, MinVersion: v.v, MaxVersion: v.v,
						Certificates: []tls.Certificate{{Certificate: [][]byte{b.cert, b.issuing.Cert.Raw}, PrivateKey: s}},
					})
					if err == nil {
						_, err = bufio.NewReader(conn).ReadString('\n')
						conn.Close()
					}
					if serr := srv.result(t); serr != nil || err != nil {
						t.Fatalf("server: %v; client: %v", serr, err)
					}
				})
			}
		})
	}
}

// openssl runs an OpenSSL command with the tpm2 provider reaching the board's swtpm.
func (b *board) openssl(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "openssl", args...)
	cmd.Env = append(os.Environ(), "TPM2OPENSSL_TCTI="+b.tcti)
	return cmd
}

// providerArgs is the provider line notes/peers.md found working: hashing stays in the default provider,
// so swtpm's 3 object slots are not spent on the handshake transcript.
var providerArgs = []string{"-provider", "default", "-provider", "tpm2", "-propquery", "?tpm2.signature,tpm2.digest!=yes"}

func requireTPM2Provider(t *testing.T) {
	t.Helper()
	// Loading the provider needs a TPM, so look for its module file instead.
	out, err := exec.Command("openssl", "version", "-m").Output()
	dir := strings.Trim(strings.TrimSpace(strings.TrimPrefix(string(out), "MODULESDIR:")), `"`)
	if err != nil || dir == "" {
		t.Fatalf("openssl version -m: %v %q", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "tpm2.so")); err != nil {
		t.Fatalf("OpenSSL's tpm2 provider is missing (Debian tpm2-openssl; make test installs it): %v", err)
	}
}

func writePEM(t *testing.T, dir, name string, ders ...[]byte) string {
	t.Helper()
	var b []byte
	for _, d := range ders {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOpenSSLClientAuth: an unmodified OpenSSL 3 with tpm2-openssl authenticates with the persisted IDevID
// (handle:0x81020000) and its certificate from NV to a Go server that trusts only the identity root, on
// TLS 1.3 and 1.2; `openssl verify -purpose sslclient` accepts the certificate.
func TestOpenSSLClientAuth(t *testing.T) {
	requireTPM2Provider(t)
	for _, k := range []struct {
		name string
		alg  provisioning.KeyAlg
	}{{"p256", provisioning.KeyP256}, {"rsa2048", provisioning.KeyRSA2048}} {
		t.Run(k.name, func(t *testing.T) {
			b := newBoard(t, k.alg, "")
			dir := t.TempDir()
			certPath := writePEM(t, dir, "idevid.pem", b.cert)
			chainPath := writePEM(t, dir, "issuing.pem", b.issuing.Cert.Raw)
			rootPath := writePEM(t, dir, "root.pem", b.root.Cert.Raw)
			if out, err := exec.Command("openssl", "verify", "-purpose", "sslclient", "-CAfile", rootPath, "-untrusted", chainPath, certPath).CombinedOutput(); err != nil {
				t.Fatalf("openssl verify -purpose sslclient: %v\n%s", err, out)
			}
			// tpm2-openssl opens its own connection to swtpm, which serves one client at a time.
			b.tpm.Close()
			for _, v := range versions {
				t.Run(v.name, func(t *testing.T) {
					srv := startTLSServer(t, b.root.Cert, v.v)
					srvRoot := writePEM(t, dir, "service-root.pem", srv.cas.Cert.Raw)
					flag := "-tls1_3"
					if v.v == tls.VersionTLS12 {
						flag = "-tls1_2"
					}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					args := append([]string{"s_client"}, providerArgs...)
					args = append(args, "-connect", srv.addr, flag, "-key", fmt.Sprintf("handle:%#x", uint32(idevidHandle)),
						"-cert", certPath, "-cert_chain", chainPath, "-CAfile", srvRoot, "-verify_return_error", "-quiet")
					cmd := b.openssl(ctx, args...)
					cmd.Stdin = strings.NewReader("")
					out, cerr := cmd.CombinedOutput()
					if serr := srv.result(t); serr != nil {
						t.Fatalf("server refused OpenSSL's client authentication: %v\nopenssl (%v):\n%s", serr, cerr, out)
					}
					if !strings.Contains(string(out), "hello board") {
						t.Fatalf("openssl s_client did not get the server's greeting (%v):\n%s", cerr, out)
					}
				})
			}
		})
	}
}

// TestSHA384OnlyServer: a TLS 1.2 OpenSSL server that asks clients for ECDSA-SHA384 only gets no signature
// from an H-2 IDevID (its template fixes SHA-256) and a good one from the profile's NULL-scheme IDevID.
func TestSHA384OnlyServer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scheme provisioning.IDevIDScheme
		ok     bool
	}{{"H-2 template", provisioning.IDevIDSchemeTemplate, false}, {"null scheme", provisioning.IDevIDSchemeNull, true}} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBoard(t, provisioning.KeyP256, tc.scheme)
			s := b.signer(t)
			dir := t.TempDir()
			now := time.Now()
			sroot, err := ca.NewCertificate(ca.CertSpec{Subject: pkix.Name{CommonName: "service root"}, NotAfter: now.Add(24 * time.Hour), IsCA: true}, nil, now.Add(-time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := ca.NewCertificate(ca.CertSpec{Subject: pkix.Name{CommonName: "service"}, NotAfter: now.Add(24 * time.Hour),
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, sroot, now.Add(-time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			keyDER, _ := x509.MarshalPKCS8PrivateKey(leaf.Key)
			keyPath := filepath.Join(dir, "service.key")
			_ = os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			port := ln.Addr().(*net.TCPAddr).Port
			ln.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			srv := exec.CommandContext(ctx, "openssl", "s_server", "-accept", fmt.Sprint(port), "-naccept", "1", "-tls1_2",
				"-cert", writePEM(t, dir, "service.pem", leaf.Cert.Raw), "-key", keyPath,
				"-Verify", "2", "-verify_return_error", "-CAfile", writePEM(t, dir, "root.pem", b.root.Cert.Raw),
				"-client_sigalgs", "ECDSA+SHA384")
			stdin, _ := srv.StdinPipe() // s_server stops at EOF on stdin
			defer stdin.Close()
			var log strings.Builder
			srv.Stdout, srv.Stderr = &log, &log
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
			roots := x509.NewCertPool()
			roots.AddCert(sroot.Cert)
			var conn *tls.Conn
			deadline := time.Now().Add(10 * time.Second)
			for {
				conn, err = tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{
					RootCAs: roots, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
					Certificates: []tls.Certificate{{Certificate: [][]byte{b.cert, b.issuing.Cert.Raw}, PrivateKey: s}},
				})
				var opErr *net.OpError
				if err == nil || !errors.As(err, &opErr) || opErr.Op != "dial" || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err == nil {
				// The client's signature is checked by the server after the client's Finished: read to see it.
				_, _ = conn.Write([]byte("ping\n"))
				_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				_, err = conn.Read(make([]byte, 1))
				if errors.Is(err, os.ErrDeadlineExceeded) {
					err = nil // the server kept the connection: it accepted the client
				}
				conn.Close()
			}
			time.Sleep(100 * time.Millisecond)
			serverOK := strings.Contains(log.String(), "CIPHER is") || strings.Contains(log.String(), "Shared Signature Algorithms")
			if tc.ok && (err != nil || !serverOK) {
				t.Fatalf("NULL-scheme IDevID refused: client %v\nserver:\n%s", err, log.String())
			}
			if !tc.ok && err == nil {
				t.Fatalf("an H-2 IDevID signed for a SHA-384-only server:\n%s", log.String())
			}
			t.Logf("client: %v", err)
		})
	}
}
