package bench

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	_ "github.com/lib/pq" // the PostgreSQL driver for schema set-up

	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/reports/signed"
	"github.com/tpmline/tpmline/station/qa"
)

// caDir is an upstream CA initialised with the real upstream-ca binary: its PKI and one station's
// client credentials. Several serve processes (each on a fresh database schema) run from one caDir.
type caDir struct {
	bin, dir, roots string
	client          *tls.Config
	station         string // the station's credentials: bench.crt, bench.key, ca-trust.pem
}

// newCADir runs `upstream-ca init` and `station add` in dir and writes the TPM vendor roots and
// intermediates (PEM) the CA is to trust.
func newCADir(bin, dir string, vendorPEM []byte) (*caDir, error) {
	c := &caDir{bin: bin, dir: filepath.Join(dir, "ca"), roots: filepath.Join(dir, "ek-roots.pem")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.roots, vendorPEM, 0o644); err != nil {
		return nil, err
	}
	st := filepath.Join(dir, "station")
	c.station = st
	for _, args := range [][]string{{"init", "--dir", c.dir}, {"station", "add", "--dir", c.dir, "--name", "bench", "--out", st}} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("upstream-ca %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	var err error
	c.client, err = provisioning.LoadClientTLS(filepath.Join(st, "bench.crt"), filepath.Join(st, "bench.key"), filepath.Join(st, "ca-trust.pem"))
	if err != nil {
		return nil, err
	}
	return c, nil
}

// auditHeads returns what makes each enrollment's audit chain head as a station does (cmd/station's
// enrollmentHead): a checkpoint of the bench station's chain, one seq further each call, stamped now and
// signed with the station's client key (qa.SignCheckpoint). Concurrent enrollments send theirs out of
// order, as a station's slots do; the CA takes a late head under its skew rule.
func (c *caDir) auditHeads() (func() (*provisioning.WitnessRequest, error), error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(c.station, "bench.crt"), filepath.Join(c.station, "bench.key"))
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the bench station's key cannot sign")
	}
	sg := signed.Signer{Key: key, Chain: []*x509.Certificate{leaf}}
	var seq atomic.Int64
	return func() (*provisioning.WitnessRequest, error) {
		n := seq.Add(1)
		sum := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(n)))
		return qa.SignCheckpoint(&provisioning.Checkpoint{Station: leaf.Subject.CommonName, Seq: n, Hash: hex.EncodeToString(sum[:]), Time: time.Now()}, sg)
	}, nil
}

// caProc is one running `upstream-ca serve`.
type caProc struct {
	URL    string
	cmd    *exec.Cmd
	schema *pgSchema
	done   chan error
}

// serve starts `upstream-ca serve` on a free loopback port with its state in a fresh PostgreSQL schema,
// and waits until it accepts TLS connections. Its request log goes to logPath.
func (c *caDir) serve(pgBase, logPath string) (*caProc, error) {
	schema, err := newPGSchema(pgBase, "bench_ca")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		schema.drop()
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	logf, err := os.Create(logPath)
	if err != nil {
		schema.drop()
		return nil, err
	}
	defer logf.Close()
	// application_name tells this CA's PostgreSQL backends apart (pgBackendCPU).
	cmd := exec.Command(c.bin, "serve", "--dir", c.dir, "--listen", addr, "--ek-roots", c.roots, "--db", schema.URL+"&application_name="+schema.name+os.Getenv("TPMLINE_BENCH_CA_DB_EXTRA"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		schema.drop()
		return nil, err
	}
	p := &caProc{URL: "https://" + addr, cmd: cmd, schema: schema, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, c.client)
		if err == nil {
			conn.Close()
			return p, nil
		}
		select {
		case werr := <-p.done:
			schema.drop()
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("upstream-ca serve exited (%v): %s", werr, lastLines(log, 5))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("upstream-ca serve at %s did not accept connections: %v", addr, err)
		}
	}
}

func (p *caProc) pid() int { return p.cmd.Process.Pid }

// pgBackendCPU sums the CPU time (from /proc) of the PostgreSQL backends serving this CA process, by
// pid: what PostgreSQL spends on its queries, without the server's shared processes (WAL writer,
// checkpointer), which other clients of the same server also use.
func (p *caProc) pgBackendCPU(ctx context.Context) (map[int]time.Duration, error) {
	db, err := sql.Open("postgres", p.schema.base)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", p.schema.name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cpu := map[int]time.Duration{}
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		if _, c, err := procStatus(pid); err == nil {
			cpu[pid] = c
		}
	}
	return cpu, rows.Err()
}

// stop ends the serve process it started (SIGINT, then SIGKILL) and drops its schema.
func (p *caProc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.schema.drop()
}

// procStatus reads VmRSS (bytes) and the CPU time (user+system) of a process from /proc.
func procStatus(pid int) (rss int64, cpu time.Duration, err error) {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			rss = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return rss, 0, err
	}
	// Fields after the command name (which may hold spaces) start after the last ')'; utime and stime
	// are fields 14 and 15 (proc(5)), in clock ticks (100 Hz on Linux).
	rest := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(rest) > 13 {
		u, _ := strconv.ParseInt(rest[11], 10, 64)
		s, _ := strconv.ParseInt(rest[12], 10, 64)
		cpu = time.Duration(u+s) * 10 * time.Millisecond
	}
	return rss, cpu, nil
}

// pgSchema is a fresh PostgreSQL schema, dropped after the run.
type pgSchema struct {
	URL  string
	name string
	base string
}

func newPGSchema(base, prefix string) (*pgSchema, error) {
	name := fmt.Sprintf("%s_%d_%d", prefix, time.Now().UnixNano(), os.Getpid())
	db, err := sql.Open("postgres", base)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+name); err != nil {
		return nil, fmt.Errorf("PostgreSQL at %s: %w (is it running? make test starts one)", base, err)
	}
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return &pgSchema{URL: base + sep + "search_path=" + name, name: name, base: base}, nil
}

func (s *pgSchema) drop() {
	if s == nil {
		return
	}
	db, err := sql.Open("postgres", s.base)
	if err != nil {
		return
	}
	defer db.Close()
	_, _ = db.Exec("DROP SCHEMA " + s.name + " CASCADE")
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
