package soak

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tpmline/tpmline/provisioning"
)

// Binaries are the real programs the soak runs, built from this module.
type Binaries struct {
	Station, CA, Agent string
}

// BuildBinaries builds station, upstream-ca and board-agent into dir with `go build` from the module root
// (found from the working directory upwards).
func BuildBinaries(ctx context.Context, dir string) (*Binaries, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(os.PathSeparator), "./cmd/station", "./cmd/upstream-ca", "./cmd/board-agent")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %w: %s", err, bytes.TrimSpace(out))
	}
	return &Binaries{Station: filepath.Join(dir, "station"), CA: filepath.Join(dir, "upstream-ca"), Agent: filepath.Join(dir, "board-agent")}, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run the soak from inside the tpmline module")
		}
		dir = parent
	}
}

// freePort picks a loopback port that was free a moment ago; the soak keeps it for a process's restarts so
// that its clients' URLs stay the same.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// proc is one child process the soak started and reaps.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProc(cmd *exec.Cmd) (*proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// kill sends SIGKILL to the process (by its pid) and waits until it is reaped.
func (p *proc) kill() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the process to end (SIGTERM) and kills it when it has not within grace.
func (p *proc) stop(grace time.Duration) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill()
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// PG is a throw-away PostgreSQL cluster in a temporary folder on a free loopback port. The soak kills and
// restarts this one, never the machine's shared server. PostgreSQL refuses to run as root, so as root the
// cluster belongs to the postgres user and its programs run with that user's credentials.
type PG struct {
	bindir, dir      string
	Port             int
	cred             *syscall.Credential
	logPath, keepLog string

	mu sync.Mutex
	p  *proc
}

// StartPG makes a cluster with initdb in dir/pg, starts it and creates the databases named.
func StartPG(ctx context.Context, dir string, dbs ...string) (*PG, error) {
	bindir, err := pgBindir()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	// Its own temporary folder, not one under dir: the postgres user must be able to reach it, and the
	// folders a test gets are its runner's alone.
	pgDir, err := os.MkdirTemp("", "tpmline-soak-pg-")
	if err != nil {
		return nil, err
	}
	pg := &PG{bindir: bindir, dir: pgDir, Port: port, logPath: filepath.Join(pgDir, "pg.log"), keepLog: filepath.Join(dir, "pg.log")}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, the throw-away PostgreSQL needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		pg.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(pg.dir, uid, gid); err != nil {
			return nil, err
		}
		f, err := os.Create(pg.logPath)
		if err != nil {
			return nil, err
		}
		f.Close()
		if err := os.Chown(pg.logPath, uid, gid); err != nil {
			return nil, err
		}
	}
	initdb := pg.command(ctx, "initdb", "-D", filepath.Join(pg.dir, "data"), "-U", "postgres", "-A", "trust", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w: %s", err, bytes.TrimSpace(out))
	}
	if err := pg.Start(ctx); err != nil {
		os.RemoveAll(pg.dir)
		return nil, err
	}
	for _, db := range dbs {
		if err := pg.CreateDB(ctx, db); err != nil {
			pg.Stop()
			return nil, err
		}
	}
	return pg, nil
}

func pgBindir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no initdb found (install postgresql): the soak runs its own throw-away cluster")
}

func (pg *PG) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(pg.bindir, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// URL is the database's URL.
func (pg *PG) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", pg.Port, db)
}

// Start runs the postmaster itself as the child (not pg_ctl), so Kill is a SIGKILL of the server. After a
// kill the old server's backends may still hold its shared memory for a moment; Start tries again until
// the new one stays up.
func (pg *PG) Start(ctx context.Context) error {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		logf, err := os.OpenFile(pg.logPath, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			logf, err = os.Create(pg.logPath)
			if err != nil {
				return err
			}
		}
		cmd := pg.command(context.Background(), "postgres", "-D", filepath.Join(pg.dir, "data"), "-h", "127.0.0.1",
			"-p", strconv.Itoa(pg.Port), "-k", pg.dir, "-c", "max_connections=300", "-c", "fsync=on")
		cmd.Stdout, cmd.Stderr = logf, logf
		p, err := startProc(cmd)
		logf.Close()
		if err != nil {
			return fmt.Errorf("starting PostgreSQL: %w", err)
		}
		if err := pg.waitReady(ctx, p, deadline); err == nil {
			pg.p = p
			return nil
		} else if time.Now().After(deadline) || ctx.Err() != nil {
			p.kill()
			return fmt.Errorf("PostgreSQL on port %d: %w (log %s)", pg.Port, err, pg.logPath)
		}
		p.kill()
		time.Sleep(200 * time.Millisecond)
	}
}

func (pg *PG) waitReady(ctx context.Context, p *proc, deadline time.Time) error {
	for {
		if p.exited() {
			return errors.New("the server exited at start")
		}
		ready := pg.command(ctx, "pg_isready", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port))
		if ready.Run() == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("not ready in time")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill SIGKILLs the postmaster, as a power cut of the database host would end it.
func (pg *PG) Kill() {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	pg.p.kill()
}

// Stop ends the cluster (fast shutdown via SIGINT), copies its log beside the run's other logs and
// removes its files.
func (pg *PG) Stop() {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.p != nil {
		_ = pg.p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-pg.p.done:
		case <-time.After(10 * time.Second):
			pg.p.kill()
		}
	}
	if log, err := os.ReadFile(pg.logPath); err == nil {
		_ = os.WriteFile(pg.keepLog, log, 0o644)
	}
	os.RemoveAll(pg.dir)
}

// CA is one `upstream-ca serve` process on a fixed port with its state in PostgreSQL, and the station
// credentials `upstream-ca station add` made for it.
type CA struct {
	bin, dir, roots, db string
	Port                int
	logPath             string
	// StationCert, StationKey and Trust are the station's client credentials and the CA's TLS anchor.
	StationCert, StationKey, Trust string
	client                         *tls.Config

	mu sync.Mutex
	p  *proc
}

// InitCA runs `upstream-ca init` and `station add` in dir and writes the TPM vendor's roots (PEM).
func InitCA(ctx context.Context, bin, dir string, vendorPEM []byte) (*CA, error) {
	c := &CA{bin: bin, dir: filepath.Join(dir, "ca"), roots: filepath.Join(dir, "ek-roots.pem")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.roots, vendorPEM, 0o644); err != nil {
		return nil, err
	}
	st := filepath.Join(dir, "station-creds")
	for _, args := range [][]string{{"init", "--dir", c.dir}, {"station", "add", "--dir", c.dir, "--name", "soak", "--out", st}} {
		if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("upstream-ca %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	c.StationCert, c.StationKey, c.Trust = filepath.Join(st, "soak.crt"), filepath.Join(st, "soak.key"), filepath.Join(st, "ca-trust.pem")
	var err error
	if c.client, err = provisioning.LoadClientTLS(c.StationCert, c.StationKey, c.Trust); err != nil {
		return nil, err
	}
	return c, nil
}

// Serve returns a CA server of this CA directory on its own port and database; several may share one
// database (the two-CA race).
func (c *CA) Serve(db, logPath string) (*CA, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &CA{bin: c.bin, dir: c.dir, roots: c.roots, db: db, Port: port, logPath: logPath,
		StationCert: c.StationCert, StationKey: c.StationKey, Trust: c.Trust, client: c.client}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// URL is the CA's enrollment API.
func (c *CA) URL() string { return fmt.Sprintf("https://127.0.0.1:%d", c.Port) }

// Client is a provisioning client of this CA with the soak station's credentials.
func (c *CA) Client() *provisioning.Client { return provisioning.NewClient(c.URL(), c.client.Clone()) }

// Start runs `upstream-ca serve` and waits until it accepts mutual-TLS connections. A server that exits at
// start (PostgreSQL down while it migrates) is started again until the deadline.
func (c *CA) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	addr := fmt.Sprintf("127.0.0.1:%d", c.Port)
	for {
		logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		cmd := exec.Command(c.bin, "serve", "--dir", c.dir, "--listen", addr, "--ek-roots", c.roots, "--db", c.db)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		p, err := startProc(cmd)
		logf.Close()
		if err != nil {
			return fmt.Errorf("starting upstream-ca: %w", err)
		}
		for !p.exited() && time.Now().Before(deadline) {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, c.client)
			if err == nil {
				conn.Close()
				c.p = p
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		p.kill()
		if time.Now().After(deadline) {
			return fmt.Errorf("upstream-ca serve on %s did not come up (log %s)", addr, c.logPath)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Kill SIGKILLs the CA process.
func (c *CA) Kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.p.kill()
}

// Stop ends the CA process.
func (c *CA) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.p.stop(5 * time.Second)
}

// CreateDB creates a database in the cluster.
func (pg *PG) CreateDB(ctx context.Context, name string) error {
	cmd := pg.command(ctx, "createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-U", "postgres", name)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("createdb %s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}
