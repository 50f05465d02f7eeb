package ca

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/crypto/ocsp"
)

// OCSPValidity is how far ahead an OCSP answer's nextUpdate lies.
const OCSPValidity = time.Hour

// maxOCSPRequest bounds a request body: one CertID with a nonce is ~100 bytes.
const maxOCSPRequest = 4 << 10

// serveOCSP answers RFC 6960 requests (POST body or GET base64 path) for the issuing CA's certificates:
// good for a certificate it issued and did not revoke, revoked with time and reason, unknown for a
// serial it never issued; a request about another issuer is unauthorized.
func (p *Public) serveOCSP(w http.ResponseWriter, r *http.Request) {
	var raw []byte
	var err error
	if r.Method == http.MethodPost {
		raw, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxOCSPRequest))
	} else {
		var s string
		if s, err = url.PathUnescape(r.PathValue("req")); err == nil {
			raw, err = base64.StdEncoding.DecodeString(s)
		}
	}
	if err != nil {
		writeOCSP(w, ocsp.MalformedRequestErrorResponse)
		return
	}
	req, err := ocsp.ParseRequest(raw)
	if err != nil {
		writeOCSP(w, ocsp.MalformedRequestErrorResponse)
		return
	}
	if !p.issuedBy(req) {
		writeOCSP(w, ocsp.UnauthorizedErrorResponse)
		return
	}
	if err := Ready(p.Issuing.Key); err != nil {
		p.log().Error("OCSP: issuing key unavailable", "err", err)
		writeOCSP(w, ocsp.TryLaterErrorResponse)
		return
	}
	now := p.now().UTC().Truncate(time.Second)
	tmpl := ocsp.Response{SerialNumber: req.SerialNumber, ThisUpdate: now, NextUpdate: now.Add(OCSPValidity), IssuerHash: req.HashAlgorithm}
	serial := SerialHex(req.SerialNumber)
	cert, err := p.Store.CertificateBySerial(r.Context(), serial)
	if err != nil {
		p.log().Error("OCSP", "err", err)
		writeOCSP(w, ocsp.InternalErrorErrorResponse)
		return
	}
	rev, err := p.Store.RevocationOf(r.Context(), serial)
	if err != nil {
		p.log().Error("OCSP", "err", err)
		writeOCSP(w, ocsp.InternalErrorErrorResponse)
		return
	}
	switch {
	case rev != nil && rev.Kind != KindStation:
		tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, rev.RevokedAt.UTC().Truncate(time.Second), rev.Reason
	case cert != nil:
		tmpl.Status = ocsp.Good
	default:
		tmpl.Status = ocsp.Unknown
	}
	der, err := ocsp.CreateResponse(p.Issuing.Cert, p.Issuing.Cert, tmpl, p.Issuing.Key)
	if err != nil {
		p.log().Error("OCSP: signing", "err", err)
		writeOCSP(w, ocsp.InternalErrorErrorResponse)
		return
	}
	p.log().Info("ocsp", "serial", serial, "status", tmpl.Status)
	writeOCSP(w, der)
}

// issuedBy reports whether req's CertID names the issuing CA (RFC 6960 4.1.1: hashes of its name and key).
func (p *Public) issuedBy(req *ocsp.Request) bool {
	if !req.HashAlgorithm.Available() {
		return false
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(p.Issuing.Cert.RawSubjectPublicKeyInfo, &spki); err != nil {
		return false
	}
	h := req.HashAlgorithm.New()
	h.Write(spki.PublicKey.RightAlign())
	keyHash := h.Sum(nil)
	h = req.HashAlgorithm.New()
	h.Write(p.Issuing.Cert.RawSubject)
	return bytes.Equal(keyHash, req.IssuerKeyHash) && bytes.Equal(h.Sum(nil), req.IssuerNameHash)
}

func writeOCSP(w http.ResponseWriter, der []byte) {
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(der)
}
