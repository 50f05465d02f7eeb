//go:build !headless

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/provisioning/ca"
	"github.com/tpmline/tpmline/provisioning/ekcert"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station"
)

// demoEnv is the embedded default: simulated boards from a simulated TPM vendor, SQLite in a data folder,
// and the upstream CA in-process on loopback with mutual TLS. Everything persists in the data folder, so a
// second run continues the same inventory.
type demoEnv struct {
	dir    string
	vendor *fixtures.Manufacturer
	caURL  string
	client *tls.Config
	stopCA func()
	agent  string
}

func setupDemo(ctx context.Context, dir string) (*demoEnv, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating data folder: %w", err)
	}
	agent, err := fixtures.BoardAgentPath()
	if err != nil {
		return nil, err
	}
	vendor, err := fixtures.LoadOrCreateManufacturer(filepath.Join(dir, "vendor"))
	if err != nil {
		return nil, fmt.Errorf("simulated TPM vendor: %w", err)
	}
	pki, err := demoPKI(filepath.Join(dir, "ca"))
	if err != nil {
		return nil, fmt.Errorf("demo CA keys: %w", err)
	}
	store, err := ca.OpenStore(ctx, "sqlite://"+filepath.Join(dir, "ca", "ca.db"))
	if err != nil {
		return nil, err
	}
	v := &ca.Verifier{
		Store:      store,
		Issuer:     &ca.Issuer{CA: pki.issuing.Cert, Key: pki.issuing.Key, Root: pki.root.Cert, Organization: "tpmline demo"},
		EKVerifier: &ekcert.Verifier{Roots: []*x509.Certificate{vendor.Root()}, Intermediates: []*x509.Certificate{vendor.Intermediate()}},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		store.Close()
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(pki.root.Cert)
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = (&ca.Server{Verifier: v}).Serve(cctx, ln, ca.ServerTLSConfig(tlsCert(pki.server), pool))
	}()
	return &demoEnv{
		dir:    dir,
		vendor: vendor,
		caURL:  "https://" + ln.Addr().String(),
		client: &tls.Config{MinVersion: tls.VersionTLS12, Time: clock.Now, RootCAs: pool, Certificates: []tls.Certificate{tlsCert(pki.station)}},
		stopCA: func() { cancel(); <-done; store.Close() },
		agent:  agent,
	}, nil
}

// agentArgs make a demo board-agent accept the demo station, whose certificate chains to the demo root.
func (e *demoEnv) agentArgs() []string {
	return []string{"--station-ca", filepath.Join(e.dir, "ca", "root.crt")}
}

func tlsCert(kp *ca.KeyPair) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{kp.Cert.Raw}, PrivateKey: kp.Key, Leaf: kp.Cert}
}

type demoKeys struct{ root, issuing, server, station *ca.KeyPair }

// demoPKI loads the demo CA's keys from dir, creating them on first use.
func demoPKI(dir string) (*demoKeys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	now := clock.Now()
	far := now.AddDate(10, 0, 0)
	var k demoKeys
	specs := []struct {
		name   string
		dst    **ca.KeyPair
		parent **ca.KeyPair
		spec   ca.CertSpec
	}{
		{"root", &k.root, nil, ca.CertSpec{Subject: pkix.Name{CommonName: "tpmline demo CA root"}, NotAfter: far, IsCA: true, MaxPathLen: 1}},
		{"issuing", &k.issuing, &k.root, ca.CertSpec{Subject: pkix.Name{CommonName: "tpmline demo issuing CA"}, NotAfter: far, IsCA: true}},
		{"server", &k.server, &k.root, ca.CertSpec{Subject: pkix.Name{CommonName: "localhost"}, NotAfter: far, DNSNames: []string{"localhost"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}},
		{"station", &k.station, &k.root, ca.CertSpec{Subject: pkix.Name{CommonName: "demo-station"}, NotAfter: far,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}},
	}
	for _, s := range specs {
		cert, key := filepath.Join(dir, s.name+".crt"), filepath.Join(dir, s.name+".key")
		kp, err := ca.ReadKeyPair(cert, key)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
			var parent *ca.KeyPair
			if s.parent != nil {
				parent = *s.parent
			}
			if kp, err = ca.NewCertificate(s.spec, parent, now); err != nil {
				return nil, err
			}
			if err := ca.WriteKeyPair(kp, cert, key); err != nil {
				return nil, err
			}
		}
		*s.dst = kp
	}
	return &k, nil
}

// cmdDemo runs the embedded default: the operator terminal on simulated boards (one per slot), or with
// --headless a batch of --boards boards provisioned straight through, printing one line per board.
func cmdDemo(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	data := fs.String("data", defaultDataDir(), "data folder `DIR` (inventory, simulated vendor, demo CA)")
	slots := fs.Int("slots", 4, "`N` slots, each with its own simulated board")
	headless := fs.Bool("headless", false, "no terminal UI: provision --boards boards and print one line each")
	boards := fs.Int("boards", 0, "with --headless: `N` boards to provision (0: one per slot)")
	operator := fs.String("operator", "", "operator `ID` (skips the sign-in screen)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *slots < 1 || *slots > 16 {
		return usagef("--slots must be 1..16")
	}
	if *boards < 0 {
		return usagef("--boards must not be negative")
	}
	if *boards == 0 {
		*boards = *slots
	}
	env, err := setupDemo(ctx, *data)
	if err != nil {
		return err
	}
	defer env.stopCA()
	s := &station.Settings{StationID: "demo-station", DB: "sqlite://" + filepath.Join(*data, "inventory.db"),
		// The demo station signs EK lists and reports with its demo client key, as a real one does.
		ClientCert: filepath.Join(*data, "ca", "station.crt"), ClientKey: filepath.Join(*data, "ca", "station.key")}
	inv, err := createInventory(ctx, s)
	if err != nil {
		return err
	}
	defer inv.Close()
	ca := provisioning.NewClient(env.caURL, env.client)
	if !*headless {
		return demoTerminal(ctx, env, s, inv, ca, *slots, *operator)
	}
	return demoHeadless(ctx, g, env, s, inv, ca, *slots, *boards, *data)
}

// demoHeadless provisions boards straight through on parallel slots (CI and the docs use it).
func demoHeadless(ctx context.Context, g *globals, env *demoEnv, s *station.Settings, inv *inventory.Store, ca provisioning.CA,
	slots, boards int, data string) error {
	var mu sync.Mutex
	logf := func(format string, a ...any) {
		mu.Lock()
		fmt.Fprintf(g.stdout, format+"\n", a...)
		mu.Unlock()
	}
	st, err := newStation(s, inv, ca, func(e station.Event) {
		switch e.Kind {
		case station.EvPassed:
			logf("slot %d  %-14s PASS  %6.0f ms", e.Slot, e.Serial, ms(e.Elapsed))
		case station.EvFailed:
			logf("slot %d  %-14s FAIL  %s", e.Slot, e.Serial, e.Failure.Line())
		}
	}, nil)
	if err != nil {
		return err
	}
	batchID := "DEMO-" + clock.Now().UTC().Format("20060102-150405")
	if _, err := inv.OpenBatch(ctx, records.NewBatch{ID: batchID, Product: "default", WorkOrder: "WO-DEMO", Quantity: boards,
		Operator: "demo", Station: s.StationID}); err != nil {
		return err
	}
	logf("tpmline demo: batch %s, %d boards on %d slots; CA %s; data in %s", batchID, boards, slots, env.caURL, data)

	var wg sync.WaitGroup
	var failed int
	next := make(chan int)
	go func() {
		defer close(next)
		for i := 1; i <= boards; i++ {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	start := time.Now()
	for slot := 1; slot <= slots; slot++ {
		wg.Add(1)
		go func(slot int) {
			defer wg.Done()
			for i := range next {
				// A fresh simulated board per unit, as a new board is put into the fixture.
				b, err := fixtures.StartAgentBoard(ctx, env.agent, filepath.Join(data, "vendor"), fixtures.NewSimSeed(), env.agentArgs()...)
				if err != nil {
					logf("slot %d: %v", slot, err)
					mu.Lock()
					failed++
					mu.Unlock()
					continue
				}
				serial := fmt.Sprintf("%s-%04d", clock.Now().UTC().Format("060102150405"), i)
				out := st.Provision(ctx, station.Job{Batch: batchID, Serial: serial, Slot: slot, TPM: b.Addr})
				b.Stop()
				if out.Failure != nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		}(slot)
	}
	wg.Wait()
	el := time.Since(start)
	// The line's rule for a rate (records.FiguresOK): a dash until enough boards or time stand behind it.
	passed := boards - failed
	rate := records.Figures{UnitsPerHour: float64(passed) / el.Hours(), OK: records.FiguresOK(passed, el)}
	logf("done: %d of %d passed in %.1f s (%s); see 'station --db %s batch show %s'",
		passed, boards, el.Seconds(), rate.RateText(), s.DB, batchID)
	if failed > 0 {
		return errFailed
	}
	return nil
}
