package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/fixtures"
	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/internal/hsm"
	"github.com/tpmline/tpmline/internal/sqldb"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/station"
	"github.com/tpmline/tpmline/station/qa"
)

// The station declares what it consumes, the terminal what it needs of the station; this is where the
// real implementations meet them.
var (
	_ station.Inventory  = (*inventory.Store)(nil)
	_ station.Batches    = (*inventory.Store)(nil)
	_ station.InProgress = (*inventory.Store)(nil)
	_ station.StepLister = (*inventory.Store)(nil)
	_ qa.Store           = (*inventory.Store)(nil)
	_ qa.EKListPusher    = (*provisioning.Client)(nil)
)

// globals are the flags every command takes, before or after its name.
type globals struct {
	config, db, caURL, caTrust, clientCert, clientKey, stationID, profile string
	p11                                                                   hsm.Config
	p11Key                                                                string
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
	fs.StringVar(&g.p11.Module, "pkcs11-module", g.p11.Module, "PKCS#11 `LIB`rary: the client key is on a token instead of --client-key")
	fs.StringVar(&g.p11.Token, "pkcs11-token", g.p11.Token, "`LABEL` of the PKCS#11 token holding the client key")
	fs.StringVar(&g.p11.PINFile, "pkcs11-pin-file", g.p11.PINFile, "`FILE` holding the token's user PIN")
	fs.StringVar(&g.p11.PINEnv, "pkcs11-pin-env", g.p11.PINEnv, "environment `VAR`iable holding the token's user PIN")
	fs.StringVar(&g.p11Key, "pkcs11-key", g.p11Key, "`LABEL` of the station's client key on the token")
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
	if g.p11 != (hsm.Config{}) || g.p11Key != "" {
		if s.PKCS11 == nil {
			s.PKCS11 = &station.PKCS11Key{}
		}
		p := s.PKCS11
		for _, o := range []struct {
			dst *string
			v   string
		}{{&p.Module, g.p11.Module}, {&p.Token, g.p11.Token}, {&p.Key, g.p11Key}} {
			if o.v != "" {
				*o.dst = o.v
			}
		}
		// A PIN source on the command line replaces the config's, whichever kind it is.
		if g.p11.PINFile != "" || g.p11.PINEnv != "" {
			p.PINFile, p.PINEnv = g.p11.PINFile, g.p11.PINEnv
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
func openInventory(ctx context.Context, s *station.Settings, opts ...inventory.Option) (*inventory.Store, error) {
	inv, err := inventory.Open(ctx, s.DB, append([]inventory.Option{inventory.MustExist()}, opts...)...)
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
	if s.CAURL == "" || s.CATrust == "" || !hasClientKey(s) {
		return nil, usagef("the CA needs --ca, --ca-trust, --client-cert and --client-key or --pkcs11-* (or ca_url, ca_trust, client_cert, client_key or pkcs11 in --config)")
	}
	cred, err := clientCredential(s)
	if err != nil {
		return nil, err
	}
	tlsConf, err := provisioning.ClientTLS(cred, s.CATrust)
	if err != nil {
		return nil, refusef("%v; check --ca-trust (or the config's ca_trust)", err)
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
		KeyReady:  keyReady(s),
	})
}

// enrollmentHead signs the inventory's chain head for each enrollment with the station's client key,
// under the name its certificate carries (the name the CA knows the station by). Without a client key,
// or over an inventory that cannot tell its head, enrollments carry none.
func enrollmentHead(s *station.Settings, inv station.Inventory) (func(context.Context) (*provisioning.WitnessRequest, error), error) {
	ch, ok := inv.(interface {
		ChainHead(ctx context.Context) (int64, string, error)
	})
	if !ok || !hasClientKey(s) {
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
	if hasClientKey(s) {
		kp, err := clientCredential(s)
		if err != nil {
			return nil, err
		}
		opts = append(opts, fixtures.WithRelayClientCert(kp))
	}
	if s.InsecurePlaintextRelay {
		opts = append(opts, fixtures.WithInsecurePlaintextRelay())
	}
	return opts, nil
}

// hasClientKey says whether the settings name a client credential: the certificate and its key, in a
// PEM file or on a PKCS#11 token.
func hasClientKey(s *station.Settings) bool {
	return s.ClientCert != "" && (s.ClientKey != "" || s.PKCS11 != nil)
}

// credentials holds each settings' client credential once loaded: the CA client, the relay links and the
// signer share one, so a token is opened (and its PIN read) once per command.
var credentials struct {
	sync.Mutex
	m map[*station.Settings]tls.Certificate
}

// clientCredential is the station's one client credential loader: its certificate (client_cert) with its
// key from the PEM file client_key or from the PKCS#11 token of the pkcs11 section, checked to be the
// certificate's key. It shows the CA and board-agents the certificate over mutual TLS and signs EK lists,
// reports and chain heads.
func clientCredential(s *station.Settings) (tls.Certificate, error) {
	credentials.Lock()
	defer credentials.Unlock()
	if c, ok := credentials.m[s]; ok {
		return c, nil
	}
	var cred tls.Certificate
	var err error
	switch {
	case s.ClientCert == "":
		return tls.Certificate{}, usagef("the station's client key needs --client-cert (or client_cert in --config)")
	case s.PKCS11 != nil && s.ClientKey != "":
		return tls.Certificate{}, usagef("give the client key as --client-key or on a token with --pkcs11-*, not both (client_key or pkcs11 in --config)")
	case s.PKCS11 != nil:
		cred, err = tokenCredential(s.ClientCert, s.PKCS11)
	case s.ClientKey != "":
		if cred, err = tls.LoadX509KeyPair(s.ClientCert, s.ClientKey); err != nil {
			err = refusef("loading the station's client certificate %s and key %s: %v; check --client-cert and --client-key", s.ClientCert, s.ClientKey, err)
		}
	default:
		return tls.Certificate{}, usagef("the station's client key needs --client-key or --pkcs11-* (or client_key or pkcs11 in --config)")
	}
	if err != nil {
		return tls.Certificate{}, err
	}
	if credentials.m == nil {
		credentials.m = map[*station.Settings]tls.Certificate{}
	}
	credentials.m[s] = cred
	return cred, nil
}

// tokenCredential pairs the certificate file with the key labelled p.Key on the token. The token stays
// open for the process (the key signs on it for every TLS handshake and signature).
func tokenCredential(certFile string, p *station.PKCS11Key) (tls.Certificate, error) {
	if p.Key == "" {
		return tls.Certificate{}, usagef("pkcs11: the station key's label is required: --pkcs11-key (or pkcs11.key in --config)")
	}
	if err := p.Config.Check(); err != nil {
		return tls.Certificate{}, usagef("%v (--pkcs11-* or the config's pkcs11 section)", err)
	}
	b, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, refusef("reading the station's client certificate: %v; check --client-cert", err)
	}
	var cred tls.Certificate
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			cred.Certificate = append(cred.Certificate, blk.Bytes)
		}
	}
	if len(cred.Certificate) == 0 {
		return tls.Certificate{}, refusef("the station's client certificate %s holds no PEM certificate; check --client-cert", certFile)
	}
	if cred.Leaf, err = x509.ParseCertificate(cred.Certificate[0]); err != nil {
		return tls.Certificate{}, refusef("the station's client certificate %s: %v", certFile, err)
	}
	tok, err := hsm.Open(p.Config)
	if errors.Is(err, hsm.ErrTokenUnavailable) {
		return tls.Certificate{}, refusef("the station's client key: %v; put the token back (or reseat its reader), then run again", err)
	}
	if err != nil {
		return tls.Certificate{}, refusef("the station's client key: %v", err)
	}
	key, err := tok.Key(p.Key)
	if err != nil {
		tok.Close()
		hint := "; check the token's module, label and PIN (--pkcs11-* or the config's pkcs11 section)"
		if errors.Is(err, hsm.ErrNoKey) {
			hint = "; check --pkcs11-key (or pkcs11.key in --config)"
		}
		return tls.Certificate{}, refusef("the station's client key: %v%s", err, hint)
	}
	pub, ok := cred.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		tok.Close()
		return tls.Certificate{}, refusef("the station's client key: key %q on token %q is not the key of the certificate %s; check --pkcs11-key and --client-cert", p.Key, p.Token, certFile)
	}
	cred.PrivateKey = key
	return cred, nil
}

// keyReady is the readiness check of the station's client key when it is on a PKCS#11 token (the token
// still holds the key), nil when the key is a file; the station asks it before each board
// (station.Config.KeyReady).
func keyReady(s *station.Settings) func() error {
	if s.PKCS11 == nil || !hasClientKey(s) {
		return nil
	}
	if cred, err := clientCredential(s); err == nil {
		if k, ok := cred.PrivateKey.(*hsm.Signer); ok {
			return k.Ready
		}
	}
	return nil
}
