package records

import "testing"

func TestAttemptCertificates(t *testing.T) {
	certs := []Certificate{
		{Kind: KindIAK, Attempt: 1, SerialHex: "a1"}, {Kind: KindIDevID, Attempt: 1, SerialHex: "d1"},
		{Kind: KindIAK, Attempt: 2, SerialHex: "a2"},
	}
	iak, idevid := AttemptCertificates(certs, 1)
	if iak == nil || iak.SerialHex != "a1" || idevid == nil || idevid.SerialHex != "d1" {
		t.Errorf("attempt 1: got %v, %v", iak, idevid)
	}
	// The current attempt has an IAK certificate only: the earlier attempt's IDevID certificate is not it.
	iak, idevid = AttemptCertificates(certs, 2)
	if iak == nil || iak.SerialHex != "a2" || idevid != nil {
		t.Errorf("attempt 2: got %v, %v", iak, idevid)
	}
	if iak, idevid = AttemptCertificates(certs, 3); iak != nil || idevid != nil {
		t.Errorf("attempt 3: got %v, %v", iak, idevid)
	}
}
