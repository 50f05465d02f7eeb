package station

import "testing"

// The documented examples must load: a typo in docs/examples is a broken promise to a newcomer.
func TestDocumentedExamples(t *testing.T) {
	p, err := LoadProfile("../docs/examples/profile.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckSerial("GW100-000123"); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSettings("../docs/examples/station.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Slots) != 4 || s.StationID == "" || len(s.Profiles) != 1 {
		t.Fatalf("example config: %+v", s)
	}
}
