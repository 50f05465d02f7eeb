package soak

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/provisioning"
)

// board is one simulated board in a slot: a board-agent process serving its own simulator, reached by the
// station through a relay proxy the driver owns, so that a fault can cut the station's connection
// mid-command the way a loose cable or a switch reboot would, while the board (and its TPM state) stays up.
type board struct {
	serial string
	agent  *fixtures.AgentBoard
	proxy  *relayProxy
	pin    string          // the agent key's pin, "#sha256=..." of its relays:// address
	client tls.Certificate // the station's client certificate, which the agent accepts
}

// startBoard starts a board-agent that accepts stations of stationCA (the CA's station access CA) over the
// authenticated relay, and a proxy in front of it; the proxy forwards TLS bytes, so cutting it cuts the
// station's connection as a cable would.
func startBoard(ctx context.Context, agentBin, vendorDir string, seed int64, serial, stationCA string, client tls.Certificate) (*board, error) {
	a, err := fixtures.StartAgentBoard(ctx, agentBin, vendorDir, seed, "--station-ca", stationCA)
	if err != nil {
		return nil, err
	}
	hostport, pin, ok := strings.Cut(strings.TrimPrefix(a.Addr, "relays://"), "#")
	if !ok {
		a.Stop()
		return nil, fmt.Errorf("board-agent printed %q, want relays://HOST:PORT#sha256=PIN", a.Addr)
	}
	p, err := newRelayProxy(hostport)
	if err != nil {
		a.Stop()
		return nil, err
	}
	return &board{serial: serial, agent: a, proxy: p, pin: pin, client: client}, nil
}

// Addr is the station's address of the board (through the proxy, with the agent's pin).
func (b *board) Addr() string { return "relays://" + b.proxy.Addr() + "#" + b.pin }

func (b *board) stop() {
	b.proxy.Close()
	b.agent.Stop()
}

// tpmCerts reads the certificates the board's TPM holds at the default layout's NV indices, straight from
// the agent (not through the proxy a fault may cut). It returns their SHA-256 (nil where an index is
// absent or unwritten).
func (b *board) tpmCerts() (iak, idevid []byte, err error) {
	tpm, err := fixtures.Open(b.agent.Addr, fixtures.WithRelayClientCert(b.client))
	if err != nil {
		return nil, nil, fmt.Errorf("board %s: opening its TPM: %w", b.serial, err)
	}
	defer tpm.Close()
	st, err := provisioning.Inspect(tpm, provisioning.DefaultLayout())
	if err != nil {
		return nil, nil, fmt.Errorf("board %s: reading its TPM: %w", b.serial, err)
	}
	sum := func(nv *provisioning.NVState) []byte {
		if nv == nil || nv.Data == nil {
			return nil
		}
		h := sha256.Sum256(nv.Data)
		return h[:]
	}
	if st.IAK == nil || st.IDevID == nil {
		return nil, nil, fmt.Errorf("board %s: its TPM holds no persisted IAK or IDevID", b.serial)
	}
	return sum(st.IAKCert), sum(st.IDevIDCert), nil
}

// relayProxy forwards TCP connections to a board-agent and can drop the ones open.
type relayProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newRelayProxy(target string) (*relayProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &relayProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.accept()
	return p, nil
}

func (p *relayProxy) Addr() string { return p.ln.Addr().String() }

func (p *relayProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, up) {
			return
		}
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *relayProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *relayProxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// Drop closes every open connection (both sides) and reports how many station connections it cut.
func (p *relayProxy) Drop() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns) / 2
	for c := range p.conns {
		c.Close()
	}
	return n
}

func (p *relayProxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.Drop()
}
