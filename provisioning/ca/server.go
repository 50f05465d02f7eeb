package ca

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/internal/metrics"
	"github.com/tpmline/tpmline/provisioning"
)

// StatusOf is the HTTP status of each error code (wire.go, docs/protocol.md).
func StatusOf(code provisioning.ErrorCode) int {
	switch code {
	case provisioning.CodeBadRequest, provisioning.CodeUnsupportedVersion:
		return http.StatusBadRequest
	case provisioning.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case provisioning.CodeUnauthenticated:
		return http.StatusUnauthorized
	case provisioning.CodeEKNotListed, provisioning.CodeActivationFailed, provisioning.CodeRevokeRefused:
		return http.StatusForbidden
	case provisioning.CodeEKSerialConflict, provisioning.CodeWitnessConflict:
		return http.StatusConflict
	case provisioning.CodeChallengeUnknown, provisioning.CodeBoardUnknown:
		return http.StatusNotFound
	case provisioning.CodeChallengeExpired, provisioning.CodeChallengeUsed:
		return http.StatusGone
	case provisioning.CodeEKCertInvalid, provisioning.CodeEKUntrusted, provisioning.CodeEKNotEK,
		provisioning.CodeEKMismatch, provisioning.CodeIAKAttributes, provisioning.CodeIAKAlgorithm,
		provisioning.CodeIDevIDAttributes, provisioning.CodeAttestInvalid, provisioning.CodeAttestNonce,
		provisioning.CodeAttestName, provisioning.CodeAttestSignature, provisioning.CodeEKListInvalid,
		provisioning.CodeCheckpointInvalid, provisioning.CodeCSRInvalid, provisioning.CodeCSRSignature:
		return http.StatusUnprocessableEntity
	default:
		return http.StatusInternalServerError
	}
}

// Server serves the enrollment API. Every endpoint needs a client certificate that chains to the station
// access CA (the TLS layer checks it: ServerTLSConfig); the certificate's subject CN names the station.
type Server struct {
	Verifier *Verifier
	Log      *slog.Logger // one line per request; default: discard
	// Ready, when set, is asked before a request that leads to issuing (enroll, activate): while the
	// issuing key cannot sign (its PKCS#11 token is gone) the request is refused with 503 before a
	// challenge is made or claimed, so the station retries later and nothing is burnt.
	Ready func() error
	// Metrics, when set, counts every request (internal/metrics).
	Metrics *metrics.CA
}

// requestNote carries what the verifier learns about a request (the board serial of round 2) back to the
// request log line.
type requestNote struct{ serial string }

type noteKey struct{}

func noteSerial(ctx context.Context, serial string) {
	if n, ok := ctx.Value(noteKey{}).(*requestNote); ok {
		n.serial = serial
	}
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Handler routes POST provisioning.PathEnroll, PathActivate and PathEKLists.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	note := &requestNote{}
	ctx := context.WithValue(r.Context(), noteKey{}, note)
	station := ""
	status, code := http.StatusOK, provisioning.ErrorCode("ok")
	defer func() {
		d := time.Since(start)
		s.log().Info("request", "method", r.Method, "path", r.URL.Path, "station", station, "serial", note.serial,
			"status", status, "outcome", string(code), "duration", d.Round(time.Microsecond))
		path := r.URL.Path
		if path != provisioning.PathEnroll && path != provisioning.PathActivate && path != provisioning.PathEKLists &&
			path != provisioning.PathEnrollTCGCSR {
			path = "other" // a label per unknown path would let any client grow the series without bound
		}
		s.Metrics.Request(path, string(code), d, path == provisioning.PathActivate && status == http.StatusOK)
	}()
	fail := func(err error) {
		var pe *provisioning.Error
		if !errors.As(err, &pe) {
			s.log().Error("unexpected error", "err", err)
			pe = provisioning.Errorf(provisioning.CodeInternal, "CA failed; retry later or contact the CA operator")
		}
		status, code = StatusOf(pe.Code), pe.Code
		writeError(w, status, pe)
	}

	var limit int64
	switch r.URL.Path {
	case provisioning.PathEnroll, provisioning.PathActivate, provisioning.PathRevoke:
		limit = provisioning.MaxRequestBytes
	case provisioning.PathEnrollTCGCSR:
		limit = provisioning.MaxTCGCSRRequestBytes
	case provisioning.PathEKLists:
		limit = MaxEKListRequestBytes
	case provisioning.PathWitness:
		limit = provisioning.MaxWitnessRequestBytes
	default:
		status, code = http.StatusNotFound, provisioning.CodeBadRequest
		writeError(w, status, provisioning.Errorf(provisioning.CodeBadRequest, "no endpoint %s", printable(r.URL.Path)))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		status, code = http.StatusMethodNotAllowed, provisioning.CodeBadRequest
		writeError(w, status, provisioning.Errorf(provisioning.CodeBadRequest, "%s takes POST only", r.URL.Path))
		return
	}
	var err error
	if station, err = StationOf(r.TLS); err != nil {
		fail(err)
		return
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		status, code = http.StatusUnsupportedMediaType, provisioning.CodeBadRequest
		writeError(w, status, provisioning.Errorf(provisioning.CodeBadRequest,
			"%s takes a JSON body (Content-Type: application/json), not %q", r.URL.Path, printable(r.Header.Get("Content-Type"))))
		return
	}
	if s.Ready != nil && r.URL.Path != provisioning.PathEKLists {
		if err := s.Ready(); err != nil {
			s.log().Error("issuing key unavailable", "err", err)
			status, code = http.StatusServiceUnavailable, provisioning.CodeInternal
			w.Header().Set("Retry-After", "30")
			writeError(w, status, provisioning.Errorf(provisioning.CodeInternal, "the CA's issuing key is unavailable (its key token is not answering); retry later or contact the CA operator"))
			return
		}
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	switch r.URL.Path {
	case provisioning.PathEnroll:
		var req provisioning.EnrollRequest
		if err := decodeJSON(body, &req); err != nil {
			fail(err)
			return
		}
		note.serial = printable(req.Serial)
		if err := s.Verifier.EnrollmentHead(ctx, station, r.TLS, &req); err != nil {
			fail(err)
			return
		}
		ch, err := s.Verifier.Enroll(ctx, station, &req)
		if err != nil {
			fail(err)
			return
		}
		writeJSON(w, http.StatusOK, ch)
	case provisioning.PathEnrollTCGCSR:
		var req provisioning.TCGCSREnrollRequest
		if err := decodeJSON(body, &req); err != nil {
			fail(err)
			return
		}
		ch, err := s.Verifier.EnrollTCGCSR(ctx, station, &req)
		if err != nil {
			fail(err)
			return
		}
		writeJSON(w, http.StatusOK, ch)
	case provisioning.PathActivate:
		var req provisioning.ActivateRequest
		if err := decodeJSON(body, &req); err != nil {
			fail(err)
			return
		}
		certs, err := s.Verifier.Activate(ctx, station, &req)
		if err != nil {
			fail(err)
			return
		}
		writeJSON(w, http.StatusOK, certs)
	case provisioning.PathEKLists:
		var up EKListUpload
		if err := decodeJSON(body, &up); err != nil {
			fail(err)
			return
		}
		note.serial = "batch:" + printable(up.Batch)
		res, err := s.Verifier.ImportEKList(ctx, station, &up)
		if err != nil {
			fail(err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	case provisioning.PathWitness:
		var req provisioning.WitnessRequest
		if err := decodeJSON(body, &req); err != nil {
			fail(err)
			return
		}
		res, err := s.Verifier.Witness(ctx, station, r.TLS, &req)
		if err != nil {
			fail(err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	case provisioning.PathRevoke:
		var req provisioning.RevokeBoardRequest
		if err := decodeJSON(body, &req); err != nil {
			fail(err)
			return
		}
		note.serial = printable(req.Serial)
		res, err := s.Verifier.RevokeBoard(ctx, station, &req)
		if err != nil {
			fail(err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}

// StationOf names the station behind a TLS connection: the subject CN of its verified client certificate.
// No verified chain, or an empty or unprintable CN, is unauthenticated.
func StationOf(cs *tls.ConnectionState) (string, error) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", provisioning.Errorf(provisioning.CodeUnauthenticated, "a client certificate issued by this CA's station access CA is required")
	}
	cn := cs.VerifiedChains[0][0].Subject.CommonName
	if cn == "" || len(cn) > 64 || printable(cn) != cn {
		return "", provisioning.Errorf(provisioning.CodeUnauthenticated, "the client certificate names no station (empty or unprintable CN)")
	}
	return cn, nil
}

// decodeJSON reads exactly one JSON object into v: unknown fields, trailing data and an over-long body
// (http.MaxBytesReader) are refused with a protocol error.
func decodeJSON(r io.Reader, v any) error {
	data, err := io.ReadAll(r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return provisioning.Errorf(provisioning.CodeTooLarge, "request body is over the %d-byte bound", mbe.Limit)
		}
		return provisioning.Errorf(provisioning.CodeBadRequest, "reading the request: %s", printable(err.Error()))
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return provisioning.Errorf(provisioning.CodeBadRequest, "empty request body")
	}
	if err := checkKeys(data, reflect.TypeOf(v)); err != nil {
		return provisioning.Errorf(provisioning.CodeBadRequest, "request is not valid JSON for this endpoint: %s", printable(err.Error()))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return provisioning.Errorf(provisioning.CodeTooLarge, "request body is over the %d-byte bound", mbe.Limit)
		}
		if errors.Is(err, io.EOF) {
			return provisioning.Errorf(provisioning.CodeBadRequest, "empty request body")
		}
		return provisioning.Errorf(provisioning.CodeBadRequest, "request is not valid JSON for this endpoint: %s", printable(err.Error()))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return provisioning.Errorf(provisioning.CodeTooLarge, "request body is over the %d-byte bound", mbe.Limit)
		}
		return provisioning.Errorf(provisioning.CodeBadRequest, "trailing data after the JSON object")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"encoding the answer failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, pe *provisioning.Error) {
	var body provisioning.ErrorBody
	body.Error.Code, body.Error.Message = pe.Code, pe.Message
	writeJSON(w, status, body)
}

// ServerTLSConfig requires TLS 1.2 or later and a client certificate that chains to clientCAs (the station
// access CA) with the clientAuth extended key usage.
func ServerTLSConfig(serverCert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{serverCert},
		Time:         clock.Now,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
	}
}

// HTTPServer wraps the handler with the timeouts a server facing the network needs: a slow client cannot
// hold a connection open (slowloris) or a request for long.
func (s *Server) HTTPServer(tlsConf *tls.Config) *http.Server {
	return &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       60 * time.Second, // an EK list of MaxEKListRequestBytes on a slow link
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log().Handler(), slog.LevelWarn),
	}
}

// Serve serves HTTPS on ln until ctx ends, then shuts down gracefully (in-flight requests get up to 10 s).
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsConf *tls.Config) error {
	hs := s.HTTPServer(tlsConf)
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// isJSON reports whether a request's Content-Type names JSON: application/json, with at most a UTF-8
// charset parameter (RFC 8259 section 8.1 makes UTF-8 the only encoding). A body sent as text/plain or a
// form is refused before it is read, so a browser's simple cross-origin POST never reaches a decoder.
func isJSON(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return false
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return false
		}
	}
	return true
}
