package station

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
)

// Profile is a product profile: everything about how one product is provisioned that is not a property of
// the station. One JSON file per product; docs/profiles.md documents the format and
// docs/examples/profile.json is an example. The built-in profile "default" holds DESIGN.md's defaults.
type Profile struct {
	Name string `json:"name"`
	// KeyAlgorithm picks the TCG device-identity templates: "p256" (H-2, default), "rsa2048" (H-1),
	// "p384" (H-3).
	KeyAlgorithm string `json:"key_algorithm,omitempty"`
	// IAKKeyAlgorithm, when set, overrides KeyAlgorithm for the IAK alone: "rsa2048" (H-1) for relying
	// parties that verify RSA attestation keys only, such as step-ca's ACME device-attest-01
	// (docs/device.md), while the IDevID keeps its ECC key.
	IAKKeyAlgorithm string `json:"iak_key_algorithm,omitempty"`
	// IDevIDScheme "null" makes an ECC IDevID without a fixed signing scheme, so it can sign with SHA-384
	// for TLS 1.2 peers that ask for it (H-2 fixes ECDSA-SHA256). Empty keeps the template's.
	IDevIDScheme string `json:"idevid_scheme,omitempty"`
	// Handles and NV indices, as hex strings ("0x81020001").
	IAKHandle       HexU32 `json:"iak_handle,omitempty"`
	IDevIDHandle    HexU32 `json:"idevid_handle,omitempty"`
	IAKCertIndex    HexU32 `json:"iak_cert_nv,omitempty"`
	IDevIDCertIndex HexU32 `json:"idevid_cert_nv,omitempty"`
	// WriteLock write-locks the certificate NV indices after they are written and read back.
	WriteLock bool `json:"write_lock,omitempty"`
	// RequireEKCert refuses a board whose TPM carries no EK certificate (default true).
	RequireEKCert *bool `json:"require_ek_cert,omitempty"`
	// SerialPattern is a regular expression every scanned serial must match in full.
	SerialPattern string `json:"serial_pattern,omitempty"`
	// AcceptedTPMs lists the TPM vendors (TPM_PT_MANUFACTURER, e.g. "IFX", "STM", "NTC", "IBM") and their
	// minimum firmware versions; empty accepts any TPM.
	AcceptedTPMs []AcceptedTPM `json:"accepted_tpms,omitempty"`

	serialRE *regexp.Regexp
}

// AcceptedTPM is one TPM vendor a product accepts.
type AcceptedTPM struct {
	Manufacturer string `json:"manufacturer"`
	// MinFirmware is a dotted version ("7.85" or "7.85.4555.0"); empty accepts every version.
	MinFirmware string `json:"min_firmware,omitempty"`
}

// HexU32 is a TPM handle or NV index written as a hex string in JSON.
type HexU32 uint32

// MarshalJSON writes the value as "0x%08X".
func (h HexU32) MarshalJSON() ([]byte, error) { return json.Marshal(fmt.Sprintf("0x%08X", uint32(h))) }

// UnmarshalJSON reads "0x..." strings (or plain numbers).
func (h *HexU32) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n uint32
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("want a hex string like \"0x81020001\": %w", err)
		}
		*h = HexU32(n)
		return nil
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 32)
	if err != nil {
		return fmt.Errorf("%q is not a hex handle: %w", s, err)
	}
	*h = HexU32(v)
	return nil
}

// DefaultProfile is the built-in profile "default": DESIGN.md's handles and indices, ECC P-256, any TPM
// vendor, EK certificate required.
func DefaultProfile() *Profile {
	l := provisioning.DefaultLayout()
	p := &Profile{
		Name:            "default",
		KeyAlgorithm:    string(provisioning.DefaultKeyAlg),
		IAKHandle:       HexU32(l.IAKHandle),
		IDevIDHandle:    HexU32(l.IDevIDHandle),
		IAKCertIndex:    HexU32(l.IAKCertIndex),
		IDevIDCertIndex: HexU32(l.IDevIDCertIndex),
		SerialPattern:   `[A-Za-z0-9][A-Za-z0-9./-]*`, // within X.520 PrintableString: the CA puts it in the subject serialNumber
	}
	if err := p.validate(); err != nil {
		panic("built-in profile is invalid: " + err.Error())
	}
	return p
}

// LoadProfile reads a profile file; fields it leaves out take the default profile's values.
func LoadProfile(path string) (*Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading product profile: %w", err)
	}
	p, err := ParseProfile(b)
	if err != nil {
		return nil, fmt.Errorf("product profile %s: %w", path, err)
	}
	return p, nil
}

// ParseProfile decodes a profile, rejecting unknown fields so a typo never silently takes a default.
func ParseProfile(b []byte) (*Profile, error) {
	p := DefaultProfile()
	p.Name = ""
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Profile) validate() error {
	if p.Name == "" {
		return fmt.Errorf("profile has no name")
	}
	if _, err := provisioning.ParseKeyAlg(p.KeyAlgorithm); err != nil {
		return err
	}
	if p.IAKKeyAlgorithm != "" {
		if _, err := provisioning.ParseKeyAlg(p.IAKKeyAlgorithm); err != nil {
			return fmt.Errorf("iak_key_algorithm: %w", err)
		}
	}
	if _, err := provisioning.ParseIDevIDScheme(p.IDevIDScheme); err != nil {
		return fmt.Errorf("idevid_scheme: %w", err)
	}
	if p.SerialPattern == "" {
		p.SerialPattern = DefaultProfile().SerialPattern
	}
	re, err := regexp.Compile(`^(?:` + p.SerialPattern + `)$`)
	if err != nil {
		return fmt.Errorf("serial_pattern: %w", err)
	}
	p.serialRE = re
	for _, a := range p.AcceptedTPMs {
		if a.Manufacturer == "" {
			return fmt.Errorf("accepted_tpms: an entry has no manufacturer")
		}
		if a.MinFirmware != "" {
			if _, err := parseVersion(a.MinFirmware); err != nil {
				return fmt.Errorf("accepted_tpms %s: %w", a.Manufacturer, err)
			}
		}
	}
	l := p.Layout()
	if l.IAKHandle == l.IDevIDHandle || l.IAKCertIndex == l.IDevIDCertIndex {
		return fmt.Errorf("IAK and IDevID must use different handles and NV indices")
	}
	return nil
}

// KeyAlg is the profile's device-identity key algorithm (the IDevID's, and the IAK's unless
// IAKKeyAlgorithm overrides it).
func (p *Profile) KeyAlg() provisioning.KeyAlg {
	a, _ := provisioning.ParseKeyAlg(p.KeyAlgorithm) // validated on load
	return a
}

// IAKKeyAlg is the IAK's template. The EK is chosen by its name algorithm, which the CA requires the
// IAK to share.
func (p *Profile) IAKKeyAlg() provisioning.KeyAlg {
	if p.IAKKeyAlgorithm == "" {
		return p.KeyAlg()
	}
	a, _ := provisioning.ParseKeyAlg(p.IAKKeyAlgorithm) // validated on load
	return a
}

// IDevIDSchemeChoice is the IDevID's signing scheme option.
func (p *Profile) IDevIDSchemeChoice() provisioning.IDevIDScheme {
	s, _ := provisioning.ParseIDevIDScheme(p.IDevIDScheme) // validated on load
	return s
}

// Layout is where the profile keeps keys and certificates in the TPM.
func (p *Profile) Layout() provisioning.Layout {
	return provisioning.Layout{
		IAKHandle:       tpm2.TPMHandle(p.IAKHandle),
		IDevIDHandle:    tpm2.TPMHandle(p.IDevIDHandle),
		IAKCertIndex:    uint32(p.IAKCertIndex),
		IDevIDCertIndex: uint32(p.IDevIDCertIndex),
		WriteLock:       p.WriteLock,
	}
}

// EKCertRequired reports whether a board without an EK certificate is refused.
func (p *Profile) EKCertRequired() bool { return p.RequireEKCert == nil || *p.RequireEKCert }

// CheckSerial validates a scanned serial: the one serial rule the CA enforces too (records.CheckSerial),
// then the product's pattern.
func (p *Profile) CheckSerial(serial string) error {
	if err := records.CheckSerial(serial); err != nil {
		return fmt.Errorf("serial %q: %w", serial, err)
	}
	re := p.serialRE
	if re == nil {
		re = DefaultProfile().serialRE
	}
	if !re.MatchString(serial) {
		return fmt.Errorf("serial %q does not match product %s's pattern %s", serial, p.Name, p.SerialPattern)
	}
	return nil
}

// CheckTPM refuses a TPM whose vendor or firmware the product does not accept.
func (p *Profile) CheckTPM(info provisioning.TPMInfo) error {
	if len(p.AcceptedTPMs) == 0 {
		return nil
	}
	mfr := strings.TrimSpace(info.Manufacturer)
	for _, a := range p.AcceptedTPMs {
		if !strings.EqualFold(a.Manufacturer, mfr) {
			continue
		}
		if a.MinFirmware == "" {
			return nil
		}
		have, err := parseVersion(info.Firmware)
		if err != nil {
			return fmt.Errorf("TPM firmware %q is unreadable: %w", info.Firmware, err)
		}
		want, _ := parseVersion(a.MinFirmware)
		if compareVersions(have, want) < 0 {
			return fmt.Errorf("TPM %s firmware %s is older than the %s product accepts (%s)", mfr, info.Firmware, p.Name, a.MinFirmware)
		}
		return nil
	}
	return fmt.Errorf("TPM vendor %q is not accepted for product %s", mfr, p.Name)
}

func parseVersion(s string) ([]uint64, error) {
	if s == "" {
		return nil, fmt.Errorf("empty version")
	}
	parts := strings.Split(s, ".")
	if len(parts) > 8 {
		return nil, fmt.Errorf("version %q has too many parts", s)
	}
	v := make([]uint64, len(parts))
	for i, part := range parts {
		n, err := strconv.ParseUint(part, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("version %q: %q is not a number", s, part)
		}
		v[i] = n
	}
	return v, nil
}

// compareVersions compares dotted versions part by part; missing parts count as zero.
func compareVersions(a, b []uint64) int {
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y uint64
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
	}
	return 0
}
