package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
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
	_ tui.Station        = (*station.Station)(nil)
	_ qa.Store           = (*inventory.Store)(nil)
	_ qa.EKListPusher    = (*provisioning.Client)(nil)
)

// globals are the flags every command takes, before or after its name.
type globals struct {
	config, db, caURL, caTrust, clientCert, clientKey, stationID, profile string
	stdout, stderr                                                        io.Writer
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.config, "config", g.config, "station config file (JSON, see docs/station.md)")
	fs.StringVar(&g.db, "db", g.db, "inventory database URL: sqlite://PATH or postgres://...")
	fs.StringVar(&g.caURL, "ca", g.caURL, "upstream CA URL (https://host:port)")
	fs.StringVar(&g.caTrust, "ca-trust", g.caTrust, "PEM trust anchor for the CA's TLS certificate")
	fs.StringVar(&g.clientCert, "client-cert", g.clientCert, "this station's client certificate (PEM)")
	fs.StringVar(&g.clientKey, "client-key", g.clientKey, "this station's client key (PEM)")
	fs.StringVar(&g.stationID, "station-id", g.stationID, "station ID recorded with every board")
	fs.StringVar(&g.profile, "profile", g.profile, "product profile file (adds to the config's profiles)")
	fs.StringVar(&metricsListen, "metrics-listen", metricsListen, "serve Prometheus /metrics on this address (plain HTTP; default off)")
}

// flags returns a subcommand's flag set that also takes the globals.
func (g *globals) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	return fs
}

// parse parses flags given before, between or after the positional arguments ("board show SN --json").
func parse(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return usagef("%v", err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

// settings merges the config file with the flags; flags win.
func (g *globals) settings() (*station.Settings, error) {
	s := &station.Settings{}
	if g.config != "" {
		var err error
		if s, err = station.LoadSettings(g.config); err != nil {
			return nil, usagef("%v", err)
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

// openInventory opens the store named by the settings.
func openInventory(ctx context.Context, s *station.Settings) (*inventory.Store, error) {
	if path, ok := cutPrefix(s.DB, "sqlite://"); ok {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("creating the database folder: %w", err)
		}
	}
	return inventory.Open(ctx, s.DB)
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return s, false
}

// caClient builds the mutual-TLS client of the upstream CA.
func caClient(s *station.Settings) (*provisioning.Client, error) {
	if s.CAURL == "" || s.CATrust == "" || s.ClientCert == "" || s.ClientKey == "" {
		return nil, usagef("the CA needs --ca, --ca-trust, --client-cert and --client-key (or ca_url, ca_trust, client_cert, client_key in --config)")
	}
	tlsConf, err := provisioning.LoadClientTLS(s.ClientCert, s.ClientKey, s.CATrust)
	if err != nil {
		return nil, usagef("loading the station's TLS credentials: %v", err)
	}
	return provisioning.NewClient(s.CAURL, tlsConf), nil
}

// newStation wires a station over the real inventory, CA client and fixtures.
func newStation(s *station.Settings, inv station.Inventory, ca provisioning.CA, onEvent func(station.Event), fault func(step, phase string)) (*station.Station, error) {
	profiles, err := station.LoadProfiles(s.Profiles)
	if err != nil {
		return nil, usagef("%v", err)
	}
	if onEvent, err = withMetrics(onEvent); err != nil {
		return nil, err
	}
	return station.New(station.Config{
		StationID: s.StationID,
		Inventory: inv,
		CA:        ca,
		Open:      func(addr string) (transport.TPMCloser, error) { return fixtures.Open(addr) },
		Timed:     func(t transport.TPM) station.TimedTPM { return fixtures.NewRecorder(t) },
		Profiles:  profiles,
		OnEvent:   onEvent,
		Fault:     fault,
	})
}
