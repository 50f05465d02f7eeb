package station

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/tpmline/tpmline/internal/hsm"
)

// Settings are a station's settings: the config file (docs/station.md documents it; docs/examples/
// station.json is an example), overridden by the global flags.
type Settings struct {
	StationID  string `json:"station_id"`
	DB         string `json:"db"`          // sqlite://PATH or postgres://...
	CAURL      string `json:"ca_url"`      // https://host:port of the upstream CA
	CATrust    string `json:"ca_trust"`    // PEM file: the CA's TLS trust anchor
	ClientCert string `json:"client_cert"` // PEM file: this station's client certificate
	ClientKey  string `json:"client_key"`  // PEM file: its key (also signs EK lists and reports)
	// PKCS11, when set, names the station's key on a PKCS#11 token in place of ClientKey.
	PKCS11   *PKCS11Key `json:"pkcs11,omitempty"`
	Profiles []string   `json:"profiles"` // product profile files
	Slots    []Slot     `json:"slots"`
	// InsecurePlaintextRelay lets slots use relay:// (unauthenticated board-agents); relays:// needs
	// nothing here: it authenticates with ClientCert and the pin in the address.
	InsecurePlaintextRelay bool `json:"insecure_plaintext_relay,omitempty"`
}

// PKCS11Key is the station's client and signing key on a PKCS#11 token: the token as the CA's config
// names one (module, token, pin_file or pin_env) and the key's label.
type PKCS11Key struct {
	hsm.Config
	Key string `json:"key"` // CKA_LABEL of the station's key on the token
}

// Slot is one fixture position and how its TPM is reached.
type Slot struct {
	ID  int    `json:"id"`
	TPM string `json:"tpm"` // a --tpm address
}

// LoadSettings reads a config file; unknown fields are refused so a typo never goes unnoticed.
func LoadSettings(path string) (*Settings, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading station config: %w", err)
	}
	var s Settings
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("station config %s: %w", path, err)
	}
	seen := map[int]bool{}
	for _, sl := range s.Slots {
		if sl.ID < 0 || seen[sl.ID] || sl.TPM == "" {
			return nil, fmt.Errorf("station config %s: slot %d is duplicated, negative or has no tpm address", path, sl.ID)
		}
		seen[sl.ID] = true
	}
	return &s, nil
}

// LoadProfiles loads profile files into a map by product name.
func LoadProfiles(paths []string) (map[string]*Profile, error) {
	out := map[string]*Profile{}
	for _, p := range paths {
		prof, err := LoadProfile(p)
		if err != nil {
			return nil, err
		}
		if _, dup := out[prof.Name]; dup {
			return nil, fmt.Errorf("two profiles for product %s", prof.Name)
		}
		out[prof.Name] = prof
	}
	return out, nil
}
