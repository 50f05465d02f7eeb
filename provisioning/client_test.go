package provisioning_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tpmline/tpmline/fixtures/fixturestest/testpki"
	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/provisioning"
)

// serveHandler serves handler over HTTPS with the test PKI's CA server certificate, requiring a client
// certificate from its station access CA: a stand-in server for the client's own behaviour (error bodies,
// proxies, oversized answers) that the real CA never produces on purpose.
func serveHandler(t *testing.T, pki *testpki.PKI, handler http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = &tls.Config{Time: clock.Now,
		Certificates: []tls.Certificate{pki.Server.TLS()},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    testpki.Pool(pki.Access.Cert),
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake refusals are expected here
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestClient(t *testing.T) {
	pki := testpki.New(t)
	station := testpki.MustIssue(t, testpki.Spec{CommonName: "station-1", Usage: x509.ExtKeyUsageClientAuth}, pki.Access).TLS()
	tlsConf := &tls.Config{Time: clock.Now, Certificates: []tls.Certificate{station}, RootCAs: testpki.Pool(pki.Root.Cert), MinVersion: tls.VersionTLS12}

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
	srv := serveHandler(t, pki, mux)
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
	// Another CA with the station access CA's subject name (Go's client then offers its certificate), and
	// one with a name of its own.
	sameName := testpki.MustIssue(t, testpki.Spec{CommonName: pki.Access.Cert.Subject.CommonName, CA: true}, nil)
	otherName := testpki.MustIssue(t, testpki.Spec{CommonName: "other TLS CA", CA: true}, nil)
	leaf := func(ca *testpki.KeyPair) tls.Certificate {
		return testpki.MustIssue(t, testpki.Spec{CommonName: "station-1", Usage: x509.ExtKeyUsageClientAuth}, ca).TLS()
	}
	for _, c := range []struct {
		name  string
		certs []tls.Certificate
		want  string
	}{
		{"anonymous", nil, "no client certificate"},
		{"same-name CA", []tls.Certificate{leaf(sameName)}, "another CA of that name"},
		{"other CA", []tls.Certificate{leaf(otherName)}, "accepts certificates issued by " + strconv.Quote(pki.Access.Cert.Subject.String())},
	} {
		for _, maxVersion := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			cl := provisioning.NewClient(srv.URL, &tls.Config{Time: clock.Now, RootCAs: testpki.Pool(pki.Root.Cert), Certificates: c.certs, MaxVersion: maxVersion})
			_, err := cl.Enroll(ctx, &provisioning.EnrollRequest{})
			if !errors.As(err, &pe) || pe.Code != provisioning.CodeUnauthenticated || !strings.Contains(pe.Message, c.want) {
				t.Errorf("%s station, TLS %#x: %v, want unauthenticated naming %q", c.name, maxVersion, err, c.want)
			}
		}
	}
	// A server the station does not trust is refused.
	other := testpki.MustIssue(t, testpki.Spec{CommonName: "other root", CA: true}, nil)
	distrust := provisioning.NewClient(srv.URL, &tls.Config{Time: clock.Now, Certificates: []tls.Certificate{station}, RootCAs: testpki.Pool(other.Cert)})
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

func TestLoadClientTLS(t *testing.T) {
	pki := testpki.New(t)
	station := testpki.MustIssue(t, testpki.Spec{CommonName: "station-1", Usage: x509.ExtKeyUsageClientAuth}, pki.Access).TLS()
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
	trustFile := write("ca.pem", "CERTIFICATE", pki.Root.Cert.Raw)

	conf, err := provisioning.LoadClientTLS(certFile, keyFile, trustFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := serveHandler(t, pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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

// TestPreconnect: the handshake Preconnect starts is the connection the first request uses (the server
// sees one connection, made before any request, over HTTP/2 as without it); a preconnection that fails
// is forgotten and the request reports the CA unreachable.
func TestPreconnect(t *testing.T) {
	pki := testpki.New(t)
	station := testpki.MustIssue(t, testpki.Spec{CommonName: "station-1", Usage: x509.ExtKeyUsageClientAuth}, pki.Access).TLS()
	tlsConf := &tls.Config{Time: clock.Now, Certificates: []tls.Certificate{station}, RootCAs: testpki.Pool(pki.Root.Cert), MinVersion: tls.VersionTLS12}
	mux := http.NewServeMux()
	var proto atomic.Value
	mux.HandleFunc("POST "+provisioning.PathEnroll, func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Proto)
		json.NewEncoder(w).Encode(provisioning.Challenge{SessionID: "abc", Nonce: []byte{1}})
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Time: clock.Now, Certificates: []tls.Certificate{pki.Server.TLS()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: testpki.Pool(pki.Access.Cert)}
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	c := provisioning.NewClient(srv.URL, tlsConf)
	c.Preconnect()
	for deadline := time.Now().Add(10 * time.Second); conns.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("Preconnect made no connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx := context.Background()
	for range 2 {
		if _, err := c.Enroll(ctx, &provisioning.EnrollRequest{Version: 1, Serial: "SN-1"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("server saw %d connections, want the preconnected one only", n)
	}
	if p, _ := proto.Load().(string); p != "HTTP/2.0" {
		t.Errorf("protocol %q, want HTTP/2.0", p)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "https://" + ln.Addr().String()
	ln.Close()
	d := provisioning.NewClient(dead, tlsConf)
	d.Preconnect()
	if _, err := d.Enroll(ctx, &provisioning.EnrollRequest{Version: 1, Serial: "SN-1"}); err == nil || !strings.Contains(err.Error(), "CA unreachable") {
		t.Errorf("preconnect to a closed port, then enroll: %v, want CA unreachable", err)
	}
}
