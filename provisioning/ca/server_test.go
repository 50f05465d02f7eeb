package ca

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/provisioning"
)

type httpsCA struct {
	*env
	url      string
	client   *http.Client // authenticated as "station-7"
	trust    *x509.CertPool
	accessKP *KeyPair
	logs     *syncBuffer
}

func clientCert(t testing.TB, ca *KeyPair, cn string) tls.Certificate {
	t.Helper()
	kp, err := NewCertificate(CertSpec{Subject: pkix.Name{CommonName: cn}, NotAfter: clock.Now().AddDate(1, 0, 0), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{kp.Cert.Raw}, PrivateKey: kp.Key, Leaf: kp.Cert}
}

// newHTTPSCA serves a CA over real HTTPS with mutual TLS on loopback.
func newHTTPSCA(t testing.TB, dbURL string) *httpsCA {
	t.Helper()
	_, _, access := testPKI(t)
	e := newEnv(t, dbURL)
	srvKP, err := NewCertificate(CertSpec{Subject: pkix.Name{CommonName: "test CA server"}, NotAfter: clock.Now().AddDate(1, 0, 0),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, access, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(access.Cert)
	logs := &syncBuffer{}
	s := &Server{Verifier: e.v, Log: newTextLogger(logs)}
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.TLS = ServerTLSConfig(tls.Certificate{Certificate: [][]byte{srvKP.Cert.Raw}, PrivateKey: srvKP.Key}, clientCAs)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	trust := x509.NewCertPool()
	trust.AddCert(access.Cert)
	h := &httpsCA{env: e, url: ts.URL, trust: trust, accessKP: access, logs: logs}
	h.client = h.clientWith(clientCert(t, access, "station-7"))
	return h
}

func (h *httpsCA) clientWith(certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{Time: clock.Now, RootCAs: h.trust, Certificates: certs}}}
}

// post sends body and decodes the answer into out (2xx) or returns the error body.
func (h *httpsCA) post(t testing.TB, c *http.Client, path string, body []byte, out any) (int, *provisioning.ErrorBody) {
	t.Helper()
	resp, err := c.Post(h.url+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("decoding %s: %v", raw, err)
		}
		return resp.StatusCode, nil
	}
	var eb provisioning.ErrorBody
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb); err != nil {
		t.Fatalf("error body %q: %v", raw, err)
	}
	if StatusOf(eb.Error.Code) != resp.StatusCode && eb.Error.Code != provisioning.CodeBadRequest {
		t.Fatalf("code %s came with HTTP %d", eb.Error.Code, resp.StatusCode)
	}
	return resp.StatusCode, &eb
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHTTPSHappyPath: both rounds over HTTPS with mutual TLS on loopback, on SQLite and PostgreSQL.
func TestHTTPSHappyPath(t *testing.T) {
	b := newBoard(t, "SN-HTTPS", provisioning.EKRSA2048, provisioning.KeyP256)
	bothEngines(t, func(t *testing.T, _, url string) {
		h := newHTTPSCA(t, url)
		var ch provisioning.Challenge
		if st, eb := h.post(t, h.client, provisioning.PathEnroll, mustJSON(t, b.request()), &ch); eb != nil {
			t.Fatalf("enroll: %d %+v", st, eb)
		}
		var certs provisioning.Certificates
		if st, eb := h.post(t, h.client, provisioning.PathActivate, mustJSON(t, b.answer(t, &ch)), &certs); eb != nil {
			t.Fatalf("activate: %d %+v", st, eb)
		}
		checkIssued(t, h.env, &certs, "SN-HTTPS")
		// A replay over the wire.
		st, eb := h.post(t, h.client, provisioning.PathActivate, mustJSON(t, b.answer(t, &ch)), nil)
		if st != 410 || eb.Error.Code != provisioning.CodeChallengeUsed {
			t.Fatalf("replay: %d %+v", st, eb)
		}
		var logs string
		for i := 0; i < 100; i++ { // the log line is written after the answer went out
			if logs = h.logs.String(); strings.Contains(logs, "outcome=challenge_used") {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, want := range []string{"station=station-7", "serial=SN-HTTPS", "outcome=ok", "outcome=challenge_used", "duration="} {
			if !strings.Contains(logs, want) {
				t.Fatalf("request log lacks %q:\n%s", want, logs)
			}
		}
	})
}

// TestHTTPSRefusals covers authentication and request decoding over the wire.
func TestHTTPSRefusals(t *testing.T) {
	h := newHTTPSCA(t, "")
	t.Run("no client certificate", func(t *testing.T) {
		_, err := h.clientWith().Post(h.url+provisioning.PathEnroll, "application/json", strings.NewReader("{}"))
		if err == nil {
			t.Fatal("request without a client certificate was served")
		}
	})
	t.Run("client certificate from another CA", func(t *testing.T) {
		other, err := NewCertificate(CertSpec{Subject: pkix.Name{CommonName: "Rogue CA"}, NotAfter: clock.Now().AddDate(1, 0, 0), IsCA: true}, nil, clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		_, err = h.clientWith(clientCert(t, other, "station-7")).Post(h.url+provisioning.PathEnroll, "application/json", strings.NewReader("{}"))
		if err == nil {
			t.Fatal("request with a foreign client certificate was served")
		}
	})
	t.Run("IDevID-style certificate from the issuing CA", func(t *testing.T) {
		_, iss, _ := testPKI(t)
		_, err := h.clientWith(clientCert(t, iss, "station-7")).Post(h.url+provisioning.PathEnroll, "application/json", strings.NewReader("{}"))
		if err == nil {
			t.Fatal("a certificate from the device issuing CA authenticated as a station")
		}
	})
	t.Run("no TLS at the handler (401)", func(t *testing.T) {
		rec := httptest.NewRecorder()
		(&Server{Verifier: h.v}).Handler().ServeHTTP(rec, httptest.NewRequest("POST", provisioning.PathEnroll, strings.NewReader("{}")))
		if rec.Code != 401 || !strings.Contains(rec.Body.String(), `"unauthenticated"`) {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	})
	valid := string(mustJSON(t, &provisioning.ActivateRequest{Version: 1, SessionID: "00", Secret: []byte{1}, CertifyInfo: []byte{1}, CertifySignature: []byte{1}}))
	for _, tc := range []struct {
		name   string
		path   string
		body   string
		status int
		code   provisioning.ErrorCode
	}{
		{"unknown JSON field", provisioning.PathEnroll, `{"version":1,"serial":"SN","surprise":1}`, 400, provisioning.CodeBadRequest},
		{"unknown nested field", provisioning.PathEnroll, `{"version":1,"tpm":{"manufacturer":"X","extra":1}}`, 400, provisioning.CodeBadRequest},
		{"field name in another case", provisioning.PathEnroll, `{"version":1,"SERIAL":"SN-1"}`, 400, provisioning.CodeBadRequest},
		{"duplicate field", provisioning.PathEnroll, `{"version":1,"serial":"SN-1","serial":"SN-2"}`, 400, provisioning.CodeBadRequest},
		{"duplicate nested field", provisioning.PathEnroll, `{"version":1,"tpm":{"manufacturer":"IBM","manufacturer":"IFX"}}`, 400, provisioning.CodeBadRequest},
		{"duplicate field in an EK list entry", provisioning.PathEKLists, `{"batch":"B","entries":[{"serial":"A","serial":"B"}]}`, 400, provisioning.CodeBadRequest},
		{"nested too deeply", provisioning.PathEnroll, `{"version":1,"ek_chain":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, 400, provisioning.CodeBadRequest},
		{"trailing data", provisioning.PathActivate, valid + `{}`, 400, provisioning.CodeBadRequest},
		{"trailing garbage", provisioning.PathActivate, valid + `x`, 400, provisioning.CodeBadRequest},
		{"not JSON", provisioning.PathEnroll, `serial=SN`, 400, provisioning.CodeBadRequest},
		{"empty body", provisioning.PathEnroll, ``, 400, provisioning.CodeBadRequest},
		{"bad base64", provisioning.PathEnroll, `{"version":1,"ek_cert":"!!!"}`, 400, provisioning.CodeBadRequest},
		{"wrong type", provisioning.PathEnroll, `{"version":"1"}`, 400, provisioning.CodeBadRequest},
		{"oversized body", provisioning.PathEnroll, `{"serial":"` + strings.Repeat("A", provisioning.MaxRequestBytes) + `"}`, 413, provisioning.CodeTooLarge},
		{"oversized by trailing whitespace", provisioning.PathActivate, valid + strings.Repeat(" ", provisioning.MaxRequestBytes), 413, provisioning.CodeTooLarge},
		{"version", provisioning.PathEnroll, `{"version":3}`, 400, provisioning.CodeUnsupportedVersion},
		{"unknown session", provisioning.PathActivate, valid, 404, provisioning.CodeChallengeUnknown},
		{"unknown path", "/v1/nothing", `{}`, 404, provisioning.CodeBadRequest},
		{"EK list malformed", provisioning.PathEKLists, `{"batch":"B","entries":[{"serial":"S","ek_public_sha256":"00"}]}`, 422, provisioning.CodeEKListInvalid},
		{"EK list unknown field", provisioning.PathEKLists, `{"batch":"B","entries":[],"signature":"x"}`, 400, provisioning.CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, eb := h.post(t, h.client, tc.path, []byte(tc.body), nil)
			if eb == nil || st != tc.status || eb.Error.Code != tc.code {
				t.Fatalf("got %d %+v, want %d %s", st, eb, tc.status, tc.code)
			}
		})
	}
	t.Run("Content-Type other than JSON (415)", func(t *testing.T) {
		for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
			"application/json; charset=latin1", "application/json; x=1", "application/jsonx", "application/json;;"} {
			req, err := http.NewRequest("POST", h.url+provisioning.PathEnroll, strings.NewReader(`{"version":1}`))
			if err != nil {
				t.Fatal(err)
			}
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			resp, err := h.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 415 || !strings.Contains(string(raw), `"bad_request"`) || !strings.Contains(string(raw), "application/json") {
				t.Errorf("Content-Type %q: %d %s, want 415 naming application/json", ct, resp.StatusCode, raw)
			}
		}
	})
	t.Run("JSON with a UTF-8 charset is read", func(t *testing.T) {
		for _, ct := range []string{"application/json; charset=utf-8", "Application/JSON; charset=UTF-8"} {
			resp, err := h.client.Post(h.url+provisioning.PathEnroll, ct, strings.NewReader(`{"version":3}`))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 || !strings.Contains(string(raw), string(provisioning.CodeUnsupportedVersion)) {
				t.Errorf("Content-Type %q: %d %s, want the body decoded (unsupported_version)", ct, resp.StatusCode, raw)
			}
		}
	})
	t.Run("GET is refused", func(t *testing.T) {
		resp, err := h.client.Get(h.url + provisioning.PathEnroll)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
			t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})
}

// TestHTTPSEKList uploads an EK list over the wire and then requires it.
func TestHTTPSEKList(t *testing.T) {
	b := newBoard(t, "SN-EKL", provisioning.EKRSA2048, provisioning.KeyP256)
	h := newHTTPSCA(t, "")
	h.v.RequireEKList = true
	var ch provisioning.Challenge
	if st, eb := h.post(t, h.client, provisioning.PathEnroll, mustJSON(t, b.request()), &ch); eb == nil || st != 403 || eb.Error.Code != provisioning.CodeEKNotListed {
		t.Fatalf("%d %+v", st, eb)
	}
	up := &EKListUpload{Batch: "B-2026-11-27", Entries: []EKListEntry{{Serial: "SN-EKL", EKCert: b.ekCert, EKPublic: b.ek.PublicBytes, EKPublicSHA256: hexs(mustEKHash(t, b))}}}
	var res EKListResult
	if st, eb := h.post(t, h.client, provisioning.PathEKLists, mustJSON(t, up), &res); eb != nil || res.Added != 1 || res.Received != 1 {
		t.Fatalf("%d %+v %+v", st, eb, res)
	}
	if st, eb := h.post(t, h.client, provisioning.PathEnroll, mustJSON(t, b.request()), &ch); eb != nil {
		t.Fatalf("%d %+v", st, eb)
	}
	evs, err := h.store.RecentEvents(context.Background(), 5)
	if err != nil || len(evs) != 1 || evs[0].Kind != "ek_list_imported" || evs[0].Station != "station-7" {
		t.Fatalf("%+v %v", evs, err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDecodeStrictKeys: bodies that encoding/json alone would accept, refused by the CA's key check.
func TestDecodeStrictKeys(t *testing.T) {
	valid, err := json.Marshal(provisioning.EnrollRequest{Version: 1, Serial: "SN-1", Product: "p", EKCert: []byte{1},
		EKPublic: []byte{2}, IAKPublic: []byte{3}, IDevIDPublic: []byte{4}, TPM: provisioning.TPMInfo{Manufacturer: "IBM"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeEnroll(valid); err != nil {
		t.Fatalf("valid body refused: %v", err)
	}
	for name, body := range map[string]string{
		"field name in another case": strings.Replace(string(valid), `"serial"`, `"Serial"`, 1),
		"duplicate field":            strings.Replace(string(valid), `{`, `{"serial":"SN-2",`, 1),
		"duplicate nested field":     strings.Replace(string(valid), `"manufacturer":"IBM"`, `"manufacturer":"IBM","manufacturer":"IFX"`, 1),
	} {
		if _, err := decodeEnroll([]byte(body)); err == nil {
			t.Errorf("%s: accepted %s", name, body)
		} else if !strings.Contains(err.Error(), string(provisioning.CodeBadRequest)) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
