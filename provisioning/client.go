package provisioning

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tpmline/tpmline/internal/clock"
)

// MaxResponseBytes bounds every CA answer the client reads: two certificates and a short chain are a few
// KiB; a CA (or something pretending to be one) that sends more is cut off.
const MaxResponseBytes = 1 << 20

// DefaultClientTimeout bounds one request, connection included.
const DefaultClientTimeout = 30 * time.Second

// Client talks to the upstream CA over HTTPS with mutual TLS.
type Client struct {
	baseURL string
	http    *http.Client
}

var _ CA = (*Client)(nil)

// NewClient returns a client for the CA at baseURL (e.g. "https://ca.example:8443"). tlsConf carries the
// station's client certificate and the CA's trust anchor (see LoadClientTLS).
func NewClient(baseURL string, tlsConf *tls.Config) *Client {
	tr := &http.Transport{
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: DefaultClientTimeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &Client{
		baseURL: strings.TrimRight(baseURL, "/"),
		http:    &http.Client{Transport: tr, Timeout: DefaultClientTimeout},
	}
}

// Enroll sends round 1 and returns the CA's credential challenge.
func (c *Client) Enroll(ctx context.Context, req *EnrollRequest) (*Challenge, error) {
	var ch Challenge
	if err := c.post(ctx, PathEnroll, req, &ch); err != nil {
		return nil, err
	}
	return &ch, nil
}

// Activate sends round 2 and returns the issued certificates.
func (c *Client) Activate(ctx context.Context, req *ActivateRequest) (*Certificates, error) {
	var certs Certificates
	if err := c.post(ctx, PathActivate, req, &certs); err != nil {
		return nil, err
	}
	return &certs, nil
}

// post sends a JSON body and decodes a JSON answer. A non-2xx answer carrying an ErrorBody becomes a
// *Error (errors.As works); transport failures and unreadable answers say the CA is unreachable.
// PushEKList uploads a batch's EK list (POST PathEKLists).
func (c *Client) PushEKList(ctx context.Context, up *EKListUpload) (*EKListResult, error) {
	var res EKListResult
	if err := c.postLimit(ctx, PathEKLists, up, &res, MaxEKListRequestBytes); err != nil {
		return nil, err
	}
	return &res, nil
}

func (c *Client) post(ctx context.Context, path string, in, out any) error {
	return c.postLimit(ctx, path, in, out, MaxRequestBytes)
}

func (c *Client) postLimit(ctx context.Context, path string, in, out any, limit int) error {
	url := c.baseURL + path
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encoding request for %s: %w", url, err)
	}
	if len(body) > limit {
		return fmt.Errorf("request for %s is %d bytes, over the protocol's %d", url, len(body), limit)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("CA unreachable at %s: %w", url, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	rsp, err := c.http.Do(hreq)
	if err != nil {
		return fmt.Errorf("CA unreachable at %s: %w", url, err)
	}
	defer rsp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(rsp.Body, MaxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("CA unreachable at %s: reading answer: %w", url, err)
	}
	if len(data) > MaxResponseBytes {
		return fmt.Errorf("CA at %s answered more than %d bytes", url, MaxResponseBytes)
	}
	if rsp.StatusCode < 200 || rsp.StatusCode > 299 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return &Error{Code: eb.Error.Code, Message: eb.Error.Message}
		}
		return fmt.Errorf("CA at %s answered HTTP %d without a protocol error: %.200q", url, rsp.StatusCode, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("CA at %s sent an unreadable answer: %w", url, err)
	}
	return nil
}

// LoadClientTLS builds the station's mutual-TLS configuration: its client certificate and key (PEM) and
// the PEM bundle of CA certificates it trusts for the server. TLS 1.2 is the floor.
func LoadClientTLS(certFile, keyFile, trustFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading station certificate %s / key %s: %w", certFile, keyFile, err)
	}
	pem, err := os.ReadFile(trustFile)
	if err != nil {
		return nil, fmt.Errorf("loading CA trust anchors: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("loading CA trust anchors: no PEM certificate in %s", trustFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS12,
		Time:         clock.Now,
	}, nil
}

// CA is the upstream CA as the device side sees it: the two rounds of the enrollment protocol. *Client
// implements it over HTTPS; the station takes one in its Config.
type CA interface {
	Enroll(ctx context.Context, req *EnrollRequest) (*Challenge, error)
	Activate(ctx context.Context, req *ActivateRequest) (*Certificates, error)
}

// Step names of the per-board flow (station/flow.go runs the steps and journals them under these names).
const (
	StepFlush     = "flush"
	StepTPMInfo   = "tpm-info"
	StepEKCerts   = "ek-certs"
	StepEK        = "ek"
	StepEKCheck   = "ek-check"
	StepClear     = "clear"
	StepIAK       = "iak"
	StepIDevID    = "idevid"
	StepEnroll    = "enroll"
	StepActivate  = "activate-credential"
	StepCertify   = "certify"
	StepIssue     = "issue"
	StepPersist   = "persist"
	StepNVWrite   = "nv-write"
	StepReadBack  = "read-back"
	StepFlushDone = "flush-done"
)
