package ca

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
)

// The CA's public endpoints, for relying parties without a station certificate: the CRL of board
// certificates (GET CRLPath, DER) and the OCSP responder (OCSPPath, ocsp.go), over plain HTTP as RFC 5280
// 4.2.1.13 and RFC 6960 appendix A expect. Both are signed by the issuing CA's key itself, so a relying
// party needs nothing beyond the chain it already holds.

// Paths of the public endpoints.
const (
	CRLPath  = "/crl"
	OCSPPath = "/ocsp"
)

// CRLValidity is how far ahead a CRL's nextUpdate lies: relying parties refetch at least daily.
const CRLValidity = 24 * time.Hour

// CRL makes a full CRL of the revoked board certificates, signed by the issuing CA. Its number is the
// signing time in milliseconds, which only grows (RFC 5280 5.2.3).
func CRL(ctx context.Context, st *Store, issuing *KeyPair, now time.Time) ([]byte, error) {
	revs, err := st.BoardRevocations(ctx)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(now.UnixMilli()),
		ThisUpdate: now.UTC().Truncate(time.Second),
		NextUpdate: now.Add(CRLValidity).UTC().Truncate(time.Second),
	}
	for _, r := range revs {
		serial, ok := new(big.Int).SetString(r.SerialNumber, 16)
		if !ok {
			return nil, fmt.Errorf("stored revocation has a bad serial %q", r.SerialNumber)
		}
		// crypto/x509 leaves a zero (unspecified) reason out, as RFC 5280 5.3.1 asks.
		e := x509.RevocationListEntry{SerialNumber: serial, RevocationTime: r.RevokedAt.UTC().Truncate(time.Second), ReasonCode: r.Reason}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, e)
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuing.Cert, issuing.Key)
	if err != nil {
		return nil, fmt.Errorf("signing the CRL: %w", err)
	}
	return der, nil
}

// Public serves CRLPath and OCSPPath for the CA whose store and issuing key it holds.
type Public struct {
	Store   *Store
	Issuing *KeyPair
	Log     *slog.Logger
	Now     func() time.Time // default clock.Now
}

func (p *Public) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return clock.Now()
}

func (p *Public) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Handler routes the public endpoints.
func (p *Public) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+CRLPath, p.serveCRL)
	mux.HandleFunc("POST "+OCSPPath, p.serveOCSP)
	mux.HandleFunc("GET "+OCSPPath+"/{req...}", p.serveOCSP)
	return mux
}

func (p *Public) serveCRL(w http.ResponseWriter, r *http.Request) {
	if err := Ready(p.Issuing.Key); err != nil {
		p.log().Error("CRL: issuing key unavailable", "err", err)
		http.Error(w, "the CA's issuing key is unavailable; retry later", http.StatusServiceUnavailable)
		return
	}
	der, err := CRL(r.Context(), p.Store, p.Issuing, p.now())
	if err != nil {
		p.log().Error("CRL", "err", err)
		http.Error(w, "making the CRL failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("Cache-Control", "max-age=300")
	w.Write(der)
}

// ServePublic serves the public endpoints on ln until ctx ends.
func (p *Public) ServePublic(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(p.log().Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving the CRL and OCSP: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}
