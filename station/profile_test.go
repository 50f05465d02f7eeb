package station

import (
	"strings"
	"testing"

	"github.com/tpmline/tpmline/provisioning"
)

func TestDefaultProfileMatchesDesign(t *testing.T) {
	p := DefaultProfile()
	l := p.Layout()
	if l.IAKHandle != 0x81020001 || l.IDevIDHandle != 0x81020000 || l.IAKCertIndex != 0x01C90100 || l.IDevIDCertIndex != 0x01C90200 {
		t.Fatalf("default layout %+v differs from DESIGN.md", l)
	}
	if p.KeyAlg() != provisioning.KeyP256 || !p.EKCertRequired() {
		t.Fatalf("default profile: alg %s, ek cert required %v", p.KeyAlg(), p.EKCertRequired())
	}
}

func TestParseProfile(t *testing.T) {
	p, err := ParseProfile([]byte(`{"name":"gw-100","key_algorithm":"p384","iak_handle":"0x81020011","write_lock":true,
		"require_ek_cert":false,"serial_pattern":"GW[0-9]{6}","accepted_tpms":[{"manufacturer":"IFX","min_firmware":"7.85"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.KeyAlg() != provisioning.KeyP384 || p.Layout().IAKHandle != 0x81020011 || p.Layout().IDevIDHandle != 0x81020000 || !p.WriteLock || p.EKCertRequired() {
		t.Fatalf("profile parsed wrong: %+v", p)
	}
	for _, bad := range []string{
		`{"name":"x","key_algorithm":"rsa1024"}`,
		`{"name":"x","iak_handle":"0x81020000"}`, // same as IDevID
		`{"name":"x","unknown":1}`,
		`{"key_algorithm":"p256"}`,
		`{"name":"x","serial_pattern":"("}`,
		`{"name":"x","accepted_tpms":[{"manufacturer":"IFX","min_firmware":"7.x"}]}`,
		`{"name":"x","iak_handle":"zz"}`,
		`{"name":"x","iak_key_algorithm":"rsa4096"}`,
		`{"name":"x","idevid_scheme":"ecdsa"}`,
	} {
		if _, err := ParseProfile([]byte(bad)); err == nil {
			t.Errorf("ParseProfile(%s) accepted a bad profile", bad)
		}
	}
}

func TestCheckSerial(t *testing.T) {
	p, err := ParseProfile([]byte(`{"name":"gw","serial_pattern":"GW[0-9]{6}"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckSerial("GW123456"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "GW12345", "GW1234567", "gw123456", "GW12345\x1b", "GW123456\r", strings.Repeat("9", 65), "GW12345é"} {
		if err := p.CheckSerial(bad); err == nil {
			t.Errorf("CheckSerial(%q) accepted", bad)
		}
	}
	if err := DefaultProfile().CheckSerial("SN-0001/a.b"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"SN 0001", "SN_0001", "SN#1"} {
		if err := DefaultProfile().CheckSerial(bad); err == nil {
			t.Fatalf("default profile accepted %q (the CA refuses it)", bad)
		}
	}
}

func TestCheckTPM(t *testing.T) {
	p, err := ParseProfile([]byte(`{"name":"gw","accepted_tpms":[{"manufacturer":"IFX","min_firmware":"7.85"},{"manufacturer":"IBM"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		info provisioning.TPMInfo
		ok   bool
	}{
		{provisioning.TPMInfo{Manufacturer: "IFX", Firmware: "7.85.4555.0"}, true},
		{provisioning.TPMInfo{Manufacturer: "IFX", Firmware: "7.85"}, true},
		{provisioning.TPMInfo{Manufacturer: "IFX", Firmware: "7.63.3353.0"}, false},
		{provisioning.TPMInfo{Manufacturer: "IFX", Firmware: "garbage"}, false},
		{provisioning.TPMInfo{Manufacturer: "IBM", Firmware: "1.2"}, true},
		{provisioning.TPMInfo{Manufacturer: "STM", Firmware: "73.4"}, false},
	}
	for _, c := range cases {
		if err := p.CheckTPM(c.info); (err == nil) != c.ok {
			t.Errorf("CheckTPM(%+v) = %v, want ok=%v", c.info, err, c.ok)
		}
	}
	if err := DefaultProfile().CheckTPM(provisioning.TPMInfo{Manufacturer: "XYZ"}); err != nil {
		t.Fatalf("default profile refused a TPM: %v", err)
	}
}

// TestKeyOptions: an RSA-2048 IAK (H-1) beside the default ECC IDevID, and the NULL-scheme ECC IDevID.
func TestKeyOptions(t *testing.T) {
	p, err := ParseProfile([]byte(`{"name":"acme-fed","iak_key_algorithm":"rsa2048","idevid_scheme":"null"}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.IAKKeyAlg() != provisioning.KeyRSA2048 || p.KeyAlg() != provisioning.KeyP256 || p.IDevIDSchemeChoice() != provisioning.IDevIDSchemeNull {
		t.Fatalf("IAK %s, IDevID %s scheme %q", p.IAKKeyAlg(), p.KeyAlg(), p.IDevIDSchemeChoice())
	}
	d := DefaultProfile()
	if d.IAKKeyAlg() != provisioning.KeyP256 || d.IDevIDSchemeChoice() != provisioning.IDevIDSchemeTemplate {
		t.Fatalf("default IAK %s scheme %q", d.IAKKeyAlg(), d.IDevIDSchemeChoice())
	}
}
