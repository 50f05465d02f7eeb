package provisioning

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"strings"
	"sync"
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
	tls     *tls.Config // as given, for the handshake probe of tlsRefusal

	mu  sync.Mutex
	pre chan preconn // the connection Preconnect is making, taken by the first dial
}

type preconn struct {
	addr string
	conn *tls.Conn
	err  error
}

var _ CA = (*Client)(nil)

// NewClient returns a client for the CA at baseURL (e.g. "https://ca.example:8443"). tlsConf carries the
// station's client certificate and the CA's trust anchor (see LoadClientTLS).
func NewClient(baseURL string, tlsConf *tls.Config) *Client {
	tr := &http.Transport{
		TLSClientConfig:       tlsConf,
		ResponseHeaderTimeout: DefaultClientTimeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	c := &Client{
		baseURL: strings.TrimRight(baseURL, "/"),
		http:    &http.Client{Transport: tr, Timeout: DefaultClientTimeout},
		tls:     tlsConf.Clone(),
	}
	tr.DialTLSContext = c.dialTLS
	return c
}

// handshakeTimeout bounds one connection's dial and TLS handshake (the transport's TLSHandshakeTimeout
// does not apply to a DialTLSContext of its own).
const handshakeTimeout = 10 * time.Second

// Preconnect starts dialing the CA (TCP and the mutual-TLS handshake) now, in the background; the first
// request then uses that connection. A station process that provisions one board calls it at start, so
// the handshake runs while the TPM works instead of inside the enroll round trip. A failed preconnection
// is forgotten: the first request dials again and reports what it finds.
// Meant for a client that will make a request: a connection no request takes stays open until the
// process ends.
func (c *Client) Preconnect() {
	u, err := neturl.Parse(c.baseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	ch := make(chan preconn, 1)
	c.mu.Lock()
	c.pre = ch
	c.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		defer cancel()
		conn, err := c.dialTLSConn(ctx, "tcp", addr)
		ch <- preconn{addr: addr, conn: conn, err: err}
	}()
}

// dialTLS is the transport's dialer: the preconnected connection when there is one for addr, else a new
// one, made as the transport itself would (the client's TLS configuration, ALPN h2 then http/1.1).
func (c *Client) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	c.mu.Lock()
	pre := c.pre
	c.pre = nil
	c.mu.Unlock()
	if pre != nil {
		select {
		case p := <-pre:
			if p.err == nil && p.addr == addr {
				return p.conn, nil
			}
			if p.conn != nil {
				p.conn.Close()
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return c.dialTLSConn(ctx, network, addr)
}

func (c *Client) dialTLSConn(ctx context.Context, network, addr string) (*tls.Conn, error) {
	conf := c.tls.Clone()
	if conf.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		conf.ServerName = host
	}
	conf.NextProtos = []string{"h2", "http/1.1"}
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	d := tls.Dialer{Config: conf}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return conn.(*tls.Conn), nil
}

// Enroll sends round 1 and returns the CA's credential challenge.
func (c *Client) Enroll(ctx context.Context, req *EnrollRequest) (*Challenge, error) {
	var ch Challenge
	if err := c.post(ctx, PathEnroll, req, &ch); err != nil {
		return nil, err
	}
	return &ch, nil
}

// EnrollTCGCSR sends round 1 with a TCG-CSR-IDEVID (POST PathEnrollTCGCSR); round 2 is Activate with the
// CSR's certify evidence.
func (c *Client) EnrollTCGCSR(ctx context.Context, req *TCGCSREnrollRequest) (*Challenge, error) {
	var ch Challenge
	if err := c.postLimit(ctx, PathEnrollTCGCSR, req, &ch, MaxTCGCSRRequestBytes); err != nil {
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
		if ctx.Err() == nil {
			if refusal := c.tlsRefusal(ctx); refusal != nil {
				return refusal
			}
		}
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

// probeTimeout bounds the handshake probe of tlsRefusal, dial included.
const probeTimeout = 3 * time.Second

// tlsRefusal finds out whether a request failed because the CA refused this station's client certificate.
// The request itself cannot tell: with TLS 1.3 the server checks the client's certificate after the
// client considers the handshake done, so the refusal (a TLS alert) races the request the client is
// already writing, and what comes back is as often "broken pipe" or "connection reset" as the alert. A
// fresh handshake that writes nothing and only reads does receive the alert. The probe also offers the
// certificate even when the server's list of acceptable CAs does not name its issuer (Go's client would
// then send none), so the refusal is about this certificate, and it notes that mismatch for the message.
// It returns nil when the CA accepts the certificate or cannot be reached at all: then the link is at fault.
func (c *Client) tlsRefusal(ctx context.Context) *Error {
	u, err := neturl.Parse(c.baseURL)
	if err != nil || u.Host == "" || c.tls == nil {
		return nil
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	conf := c.tls.Clone()
	if conf.ServerName == "" {
		conf.ServerName = u.Hostname()
	}
	conf.NextProtos = nil // HTTP/1.1: an accepting server then waits for a request and sends nothing
	var own *tls.Certificate
	if len(conf.Certificates) > 0 {
		own = &conf.Certificates[0]
	}
	var acceptable [][]byte
	conf.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		acceptable = cri.AcceptableCAs
		if own == nil {
			return &tls.Certificate{}, nil
		}
		return own, nil
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: probeTimeout}, Config: conf}
	conn, err := d.DialContext(pctx, "tcp", host)
	if err == nil {
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(probeTimeout))
		_, err = conn.Read(make([]byte, 1))
	}
	var oe *net.OpError
	if err == nil || !errors.As(err, &oe) || oe.Op != "remote error" {
		return nil
	}
	return &Error{Code: CodeUnauthenticated, Message: refusalMessage(c.baseURL, oe.Err, own, acceptable)}
}

// refusalMessage says what the CA refused and, when the certificate's issuer is not among the CAs the
// server asked for, which issuer it would have taken.
func refusalMessage(baseURL string, alert error, own *tls.Certificate, acceptable [][]byte) string {
	msg := fmt.Sprintf("the CA at %s refused this station's client certificate in the TLS handshake (%v)", baseURL, alert)
	if own == nil || len(own.Certificate) == 0 {
		return msg + ": the station has no client certificate"
	}
	leaf, err := x509.ParseCertificate(own.Certificate[0])
	if err != nil {
		return msg
	}
	msg += fmt.Sprintf(": certificate CN=%q issued by %q", leaf.Subject.CommonName, leaf.Issuer.String())
	if !clock.Now().Before(leaf.NotAfter) || clock.Now().Before(leaf.NotBefore) {
		msg += fmt.Sprintf(", valid %s to %s only", leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if len(acceptable) == 0 {
		return msg
	}
	var names []string
	for _, raw := range acceptable {
		if bytes.Equal(raw, leaf.RawIssuer) {
			// The issuer's name is right: another CA of the same name issued it (two CA directories made
			// with the same organization), or the certificate is not valid for client authentication.
			return msg + ", a name the CA accepts: is the certificate from another CA of that name?"
		}
		var n pkix.RDNSequence
		if _, err := asn1.Unmarshal(raw, &n); err == nil {
			var name pkix.Name
			name.FillFromRDNSequence(&n)
			names = append(names, fmt.Sprintf("%q", name.String()))
		}
	}
	return msg + ", while the CA accepts certificates issued by " + strings.Join(names, ", ")
}

// LoadClientTLS builds the station's mutual-TLS configuration: its client certificate and key (PEM) and
// the PEM bundle of CA certificates it trusts for the server. TLS 1.2 is the floor.
func LoadClientTLS(certFile, keyFile, trustFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading station certificate %s / key %s: %w", certFile, keyFile, err)
	}
	return ClientTLS(cert, trustFile)
}

// ClientTLS is LoadClientTLS over a credential already loaded: its key may be any crypto.Signer (a key on
// a PKCS#11 token).
func ClientTLS(cert tls.Certificate, trustFile string) (*tls.Config, error) {
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
