package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/internal/sqldb"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/station"
	"github.com/tpmline/tpmline/station/qa"
	"github.com/tpmline/tpmline/tui"
)

// The station declares what it consumes, the terminal what it needs of the station; this is where the
// real implementations meet them.
var (
	_ station.Inventory  = (*inventory.Store)(nil)
	_ station.Batches    = (*inventory.Store)(nil)
	_ station.InProgress = (*inventory.Store)(nil)
	_ station.StepLister = (*inventory.Store)(nil)
	_ tui.Station        = (*station.Station)(nil)
	_ qa.Store           = (*inventory.Store)(nil)
	_ qa.EKListPusher    = (*provisioning.Client)(nil)
)

// globals are the flags every command takes, before or after its name.
type globals struct {
	config, db, caURL, caTrust, clientCert, clientKey, stationID, profile string
	insecurePlaintext                                                     bool
	stdout, stderr                                                        io.Writer
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.config, "config", g.config, "station config `FILE` (JSON, see docs/station.md)")
	fs.StringVar(&g.db, "db", g.db, "inventory database `URL`: sqlite://PATH or postgres://... (default sqlite://data/inventory.db, or $TPMLINE_DATA/inventory.db)")
	fs.StringVar(&g.caURL, "ca", g.caURL, "upstream CA `URL` (https://host:port)")
	fs.StringVar(&g.caTrust, "ca-trust", g.caTrust, "`PEM` trust anchor for the CA's TLS certificate (ca-trust.pem from upstream-ca station add)")
	fs.StringVar(&g.clientCert, "client-cert", g.clientCert, "this station's client certificate `PEM`")
	fs.StringVar(&g.clientKey, "client-key", g.clientKey, "this station's client key `PEM`")
	fs.StringVar(&g.stationID, "station-id", g.stationID, "station `ID` recorded with every board (default: the host name)")
	fs.StringVar(&g.profile, "profile", g.profile, "product profile `FILE` (adds to the config's profiles)")
	fs.BoolVar(&g.insecurePlaintext, "insecure-plaintext", g.insecurePlaintext, "allow relay:// board-agents (unauthenticated TPM link; a bench you trust only)")
	fs.StringVar(&metricsListen, "metrics-listen", metricsListen, "serve Prometheus /metrics on this `ADDR` (plain HTTP; default off)")
}

// settings merges the config file with the flags; flags win.
func (g *globals) settings() (*station.Settings, error) {
	s := &station.Settings{}
	if g.config != "" {
		var err error
		if s, err = station.LoadSettings(g.config); err != nil {
			return nil, refusef("%v", err)
		}
	}
	for _, o := range []struct {
		dst *string
		v   string
	}{{&s.DB, g.db}, {&s.CAURL, g.caURL}, {&s.CATrust, g.caTrust}, {&s.ClientCert, g.clientCert},
		{&s.ClientKey, g.clientKey}, {&s.StationID, g.stationID}} {
		if o.v != "" {
			*o.dst = o.v
		}
	}
	if g.profile != "" {
		s.Profiles = append(s.Profiles, g.profile)
	}
	if g.insecurePlaintext {
		s.InsecurePlaintextRelay = true
	}
	if s.InsecurePlaintextRelay && g.stderr != nil {
		fmt.Fprintln(g.stderr, "station: WARNING: insecure plaintext relay allowed: a relay:// board link is unauthenticated, so whoever sits on it can answer in the board's place")
	}
	if s.DB == "" {
		s.DB = "sqlite://" + filepath.Join(defaultDataDir(), "inventory.db")
	}
	if s.StationID == "" {
		h, _ := os.Hostname()
		s.StationID = h
	}
	return s, nil
}

func defaultDataDir() string {
	if d := os.Getenv("TPMLINE_DATA"); d != "" {
		return d
	}
	return "data"
}

// openInventory opens the existing inventory named by the settings. It never creates one: a mistyped
// --db must not start the station on a new, empty inventory (that is 'station init').
func openInventory(ctx context.Context, s *station.Settings) (*inventory.Store, error) {
	inv, err := inventory.Open(ctx, s.DB, inventory.MustExist())
	if errors.Is(err, sqldb.ErrNotCreated) {
		return nil, refusef("%v; check --db (or the config's db), or create a new inventory there with 'station init'", err)
	}
	if err != nil {
		return nil, fmt.Errorf("%v; check --db or the config's db", err)
	}
	return inv, nil
}

// createInventory opens the inventory named by the settings, creating it (and an SQLite file's folder)
// when it does not exist: 'station init' and the demo's own data folder.
func createInventory(ctx context.Context, s *station.Settings) (*inventory.Store, error) {
	if path, ok := strings.CutPrefix(s.DB, "sqlite://"); ok && path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("creating the database folder: %w", err)
		}
	}
	inv, err := inventory.Open(ctx, s.DB)
	if err != nil {
		return nil, fmt.Errorf("%v; check --db or the config's db", err)
	}
	return inv, nil
}

// checkTPM refuses a malformed --tpm address at once, as a usage error: it is a typing mistake, not a
// fixture fault, and trying to connect would only delay saying so.
func checkTPM(flagName, addr string) error {
	if err := fixtures.CheckAddress(addr); err != nil {
		return usagef("%s: %v", flagName, err)
	}
	return nil
}

// caClient builds the mutual-TLS client of the upstream CA.
func caClient(s *station.Settings) (*provisioning.Client, error) {
	if s.CAURL == "" || s.CATrust == "" || s.ClientCert == "" || s.ClientKey == "" {
		return nil, usagef("the CA needs --ca, --ca-trust, --client-cert and --client-key (or ca_url, ca_trust, client_cert, client_key in --config)")
	}
	tlsConf, err := provisioning.LoadClientTLS(s.ClientCert, s.ClientKey, s.CATrust)
	if err != nil {
		return nil, refusef("loading the station's TLS credentials: %v", err)
	}
	return provisioning.NewClient(s.CAURL, tlsConf), nil
}

// newStation wires a station over the real inventory, CA client and fixtures.
func newStation(s *station.Settings, inv station.Inventory, ca provisioning.CA, onEvent func(station.Event), fault func(step, phase string)) (*station.Station, error) {
	profiles, err := station.LoadProfiles(s.Profiles)
	if err != nil {
		return nil, refusef("%v", err)
	}
	openOpts, err := relayOptions(s)
	if err != nil {
		return nil, err
	}
	if onEvent, err = withMetrics(onEvent); err != nil {
		return nil, err
	}
	auditHead, err := enrollmentHead(s, inv)
	if err != nil {
		return nil, err
	}
	return station.New(station.Config{
		StationID: s.StationID,
		Inventory: inv,
		CA:        ca,
		Open:      func(addr string) (transport.TPMCloser, error) { return fixtures.Open(addr, openOpts...) },
		Timed:     func(t transport.TPM) station.TimedTPM { return fixtures.NewRecorder(t) },
		Profiles:  profiles,
		OnEvent:   onEvent,
		Fault:     fault,
		AuditHead: auditHead,
	})
}

// enrollmentHead signs the inventory's chain head for each enrollment with the station's client key,
// under the name its certificate carries (the name the CA knows the station by). Without a client key,
// or over an inventory that cannot tell its head, enrollments carry none.
func enrollmentHead(s *station.Settings, inv station.Inventory) (func(context.Context) (*provisioning.WitnessRequest, error), error) {
	ch, ok := inv.(interface {
		ChainHead(ctx context.Context) (int64, string, error)
	})
	if !ok || s.ClientCert == "" || s.ClientKey == "" {
		return nil, nil
	}
	sg, err := signer(s)
	if err != nil {
		return nil, err
	}
	name := sg.Chain[0].Subject.CommonName
	return func(ctx context.Context) (*provisioning.WitnessRequest, error) {
		seq, hash, err := ch.ChainHead(ctx)
		if err != nil || seq == 0 {
			return nil, err // an empty chain has no head to witness
		}
		return qa.SignCheckpoint(&provisioning.Checkpoint{Station: name, Seq: seq, Hash: hash, Time: clock.Now()}, sg)
	}, nil
}

// relayOptions hands the station's client credential (the one it shows the CA, which chains to the
// station access CA board-agents trust) to relays:// links, and allows relay:// only when asked.
func relayOptions(s *station.Settings) ([]fixtures.Option, error) {
	var opts []fixtures.Option
	if s.ClientCert != "" && s.ClientKey != "" {
		kp, err := tls.LoadX509KeyPair(s.ClientCert, s.ClientKey)
		if err != nil {
			return nil, usagef("loading the station's client certificate for board-agents: %v", err)
		}
		opts = append(opts, fixtures.WithRelayClientCert(kp))
	}
	if s.InsecurePlaintextRelay {
		opts = append(opts, fixtures.WithInsecurePlaintextRelay())
	}
	return opts, nil
}
