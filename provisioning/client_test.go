package provisioning_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/provisioning"
)

// testPKI is a CA that issues the server's and the station's certificates for mutual TLS.
type testPKI struct {
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test TLS CA"},
		NotBefore: clock.Now().Add(-time.Hour), NotAfter: clock.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &testPKI{ca: ca, caKey: key}
}

func (p *testPKI) leaf(t *testing.T, cn string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(clock.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: clock.Now().Add(-time.Hour), NotAfter: clock.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (p *testPKI) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	return pool
}

// startCA serves handler over HTTPS requiring a client certificate from pki.
func startCA(t *testing.T, pki *testPKI, handler http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = &tls.Config{Time: clock.Now,
		Certificates: []tls.Certificate{pki.leaf(t, "ca", x509.ExtKeyUsageServerAuth)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pki.pool(),
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake refusals are expected here
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestClient(t *testing.T) {
	pki := newTestPKI(t)
	station := pki.leaf(t, "station-1", x509.ExtKeyUsageClientAuth)
	tlsConf := &tls.Config{Time: clock.Now, Certificates: []tls.Certificate{station}, RootCAs: pki.pool(), MinVersion: tls.VersionTLS12}

	var gotEnroll provisioning.EnrollRequest
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+provisioning.PathEnroll, func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "station-1" {
			t.Error("no station certificate")
		}
		if err := json.NewDecoder(r.Body).Decode(&gotEnroll); err != nil {
			t.Error(err)
		}
		json.NewEncoder(w).Encode(provisioning.Challenge{SessionID: "abc", Nonce: []byte{1, 2, 3}})
	})
	mux.HandleFunc("POST "+provisioning.PathActivate, func(w http.ResponseWriter, r *http.Request) {
		var req provisioning.ActivateRequest
		json.NewDecoder(r.Body).Decode(&req)
		switch req.SessionID {
		case "refuse":
			w.WriteHeader(http.StatusForbidden)
			var eb provisioning.ErrorBody
			eb.Error.Code, eb.Error.Message = provisioning.CodeActivationFailed, "wrong secret"
			json.NewEncoder(w).Encode(eb)
		case "proxy":
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("<html>bad gateway</html>"))
		case "huge":
			w.Write([]byte(`{"iak_cert":"`))
			w.Write([]byte(strings.Repeat("A", provisioning.MaxResponseBytes)))
			w.Write([]byte(`"}`))
		case "garbled":
			w.Write([]byte("{not json"))
		default:
			json.NewEncoder(w).Encode(provisioning.Certificates{IAKCert: []byte{0x30}, IDevIDCert: []byte{0x31}})
		}
	})
	srv := startCA(t, pki, mux)
	c := provisioning.NewClient(srv.URL+"/", tlsConf)
	ctx := context.Background()

	ch, err := c.Enroll(ctx, &provisioning.EnrollRequest{Version: 1, Serial: "SN-1", EKCert: []byte{0x30, 0x82}})
	if err != nil {
		t.Fatal(err)
	}
	if ch.SessionID != "abc" || string(ch.Nonce) != "\x01\x02\x03" || gotEnroll.Serial != "SN-1" || string(gotEnroll.EKCert) != "\x30\x82" {
		t.Errorf("round trip: %+v, %+v", ch, gotEnroll)
	}
	certs, err := c.Activate(ctx, &provisioning.ActivateRequest{SessionID: "ok"})
	if err != nil || string(certs.IAKCert) != "\x30" {
		t.Fatalf("activate: %+v, %v", certs, err)
	}

	_, err = c.Activate(ctx, &provisioning.ActivateRequest{SessionID: "refuse"})
	var pe *provisioning.Error
	if !errors.As(err, &pe) || pe.Code != provisioning.CodeActivationFailed || !errors.Is(err, &provisioning.Error{Code: provisioning.CodeActivationFailed}) {
		t.Errorf("refusal: %v, want *Error activation_failed", err)
	}
	for _, id := range []string{"proxy", "huge", "garbled"} {
		_, err := c.Activate(ctx, &provisioning.ActivateRequest{SessionID: id})
		if err == nil || errors.As(err, &pe) {
			t.Errorf("%s: %v, want a non-protocol error", id, err)
		}
	}

	// A station the CA does not authenticate is turned away at the TLS layer; the client says so (an
	// unauthenticated refusal, so the station names client_cert/client_key), not "CA unreachable", whether
	// the alert or a broken pipe reached the request, on TLS 1.3 and 1.2.
	sameName := newTestPKI(t) // another CA with the same subject name: Go's client offers its certificate
	otherName := reissued(t, newTestPKI(t), "other TLS CA")
	for _, c := range []struct {
		name  string
		certs []tls.Certificate
		want  string
	}{
		{"anonymous", nil, "no client certificate"},
		{"same-name CA", []tls.Certificate{sameName.leaf(t, "station-1", x509.ExtKeyUsageClientAuth)}, "another CA of that name"},
		{"other CA", []tls.Certificate{otherName.leaf(t, "station-1", x509.ExtKeyUsageClientAuth)}, `accepts certificates issued by "CN=test TLS CA"`},
	} {
		for _, maxVersion := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			cl := provisioning.NewClient(srv.URL, &tls.Config{Time: clock.Now, RootCAs: pki.pool(), Certificates: c.certs, MaxVersion: maxVersion})
			_, err := cl.Enroll(ctx, &provisioning.EnrollRequest{})
			if !errors.As(err, &pe) || pe.Code != provisioning.CodeUnauthenticated || !strings.Contains(pe.Message, c.want) {
				t.Errorf("%s station, TLS %#x: %v, want unauthenticated naming %q", c.name, maxVersion, err, c.want)
			}
		}
	}
	// A server the station does not trust is refused.
	other := newTestPKI(t)
	distrust := provisioning.NewClient(srv.URL, &tls.Config{Time: clock.Now, Certificates: []tls.Certificate{station}, RootCAs: other.pool()})
	if _, err := distrust.Enroll(ctx, &provisioning.EnrollRequest{}); err == nil {
		t.Error("untrusted CA accepted")
	}
	// Nothing listening.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	down := provisioning.NewClient("https://"+addr, tlsConf)
	if _, err := down.Enroll(ctx, &provisioning.EnrollRequest{}); err == nil || !strings.Contains(err.Error(), "CA unreachable at https://"+addr+"/v1/enroll") {
		t.Errorf("CA down: %v", err)
	}
	// Cancelled context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Enroll(cctx, &provisioning.EnrollRequest{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// reissued makes p's CA again under another subject name.
func reissued(t *testing.T, p *testPKI, cn string) *testPKI {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: clock.Now().Add(-time.Hour), NotAfter: clock.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, p.caKey.Public(), p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &testPKI{ca: ca, caKey: p.caKey}
}

func TestLoadClientTLS(t *testing.T) {
	pki := newTestPKI(t)
	station := pki.leaf(t, "station-1", x509.ExtKeyUsageClientAuth)
	dir := t.TempDir()
	keyDER, _ := x509.MarshalECPrivateKey(station.PrivateKey.(*ecdsa.PrivateKey))
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile := write("station.pem", "CERTIFICATE", station.Certificate[0])
	keyFile := write("station.key", "EC PRIVATE KEY", keyDER)
	trustFile := write("ca.pem", "CERTIFICATE", pki.ca.Raw)

	conf, err := provisioning.LoadClientTLS(certFile, keyFile, trustFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := startCA(t, pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(provisioning.Challenge{SessionID: r.TLS.PeerCertificates[0].Subject.CommonName})
	}))
	ch, err := provisioning.NewClient(srv.URL, conf).Enroll(context.Background(), &provisioning.EnrollRequest{})
	if err != nil || ch.SessionID != "station-1" {
		t.Fatalf("mutual TLS with loaded files: %+v, %v", ch, err)
	}

	if _, err := provisioning.LoadClientTLS(certFile, keyFile, certFile+".missing"); err == nil {
		t.Error("missing trust file accepted")
	}
	if _, err := provisioning.LoadClientTLS(certFile, keyFile, keyFile); err == nil {
		t.Error("trust file without certificates accepted")
	}
	if _, err := provisioning.LoadClientTLS(trustFile, keyFile, trustFile); err == nil {
		t.Error("certificate not matching the key accepted")
	}
}
