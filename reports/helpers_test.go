package reports

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"time"
)

var t0 = time.Date(2025, 3, 4, 6, 0, 0, 0, time.UTC)

func sampleBatch() BatchInfo {
	return BatchInfo{
		ID: "B-2025-0304-A", Product: "gw-200 gateway", WorkOrder: "WO-77812",
		Stations: []string{"line2-st01", "line2-st02"}, Operators: []string{"A. Novák", "J. Smith"},
		Opened: t0, Closed: t0.Add(9*time.Hour + 30*time.Minute), Quantity: 160, Refused: 2,
	}
}

func sampleAudit() AuditInfo {
	sum := sha256.Sum256([]byte("chain head"))
	return AuditInfo{EventCount: 1234, ChainHead: hex.EncodeToString(sum[:]), ChainVerified: true}
}

var failReasons = []struct{ code, text string }{
	{"ek_cert_chain", "EK certificate does not chain to a configured TPM vendor root"},
	{"ek_cert_chain", "EK certificate does not chain to a configured TPM vendor root"},
	{"ek_cert_chain", "EK certificate does not chain to a configured TPM vendor root"},
	{"tpm_timeout", "TPM did not answer within 30 s (board seated?)"},
	{"tpm_timeout", "TPM did not answer within 30 s (board seated?)"},
	{"ca_unreachable", "CA did not answer; retried 3 times"},
	{"nv_write", "NV write of the IDevID certificate failed: TPM_RC_NV_LOCKED"},
	{"ek_swapped", "EK already bound to serial SN-000012 (cloned or swapped part)"},
}

// sampleRows makes n deterministic boards: mostly provisioned, some failed and stopped, the last one in
// progress when inProgress is set. mode "pass" makes every board pass, "fail" every board fail.
func sampleRows(n int, mode string, inProgress bool) []BoardRow {
	rng := mrand.New(mrand.NewPCG(1, 2))
	rows := make([]BoardRow, 0, n)
	at := t0.Add(10 * time.Minute)
	for i := 0; i < n; i++ {
		ek := sha256.Sum256([]byte(fmt.Sprint("ek", i)))
		cycle := time.Duration(38000+rng.IntN(30000)) * time.Millisecond
		if rng.IntN(40) == 0 {
			cycle += 90 * time.Second // a slow board now and then
		}
		r := BoardRow{
			Serial: fmt.Sprintf("SN-%06d", i), EKPublicSHA256: hex.EncodeToString(ek[:]),
			TPMVendor: []string{"IFX", "STM", "NTC"}[i%3], TPMFirmware: []string{"15.23", "1.769", "7.2.3.1"}[i%3],
			Started: at, Finished: at.Add(cycle), CycleTime: cycle, Result: ResultProvisioned,
			IAKCertSerial: fmt.Sprintf("%032x", uint64(i)*7919+1), IDevIDCertSerial: fmt.Sprintf("%032x", uint64(i)*104729+3),
		}
		fail := mode == "fail" || (mode == "" && rng.IntN(9) == 0)
		if fail {
			fr := failReasons[rng.IntN(len(failReasons))]
			r.Result, r.ReasonCode, r.ReasonText = ResultFailed, fr.code, fr.text
			if fr.code == "ek_swapped" {
				r.Result = ResultStopped
			}
			r.IAKCertSerial, r.IDevIDCertSerial = "", ""
		}
		rows = append(rows, r)
		at = at.Add(cycle / 2) // two slots in parallel
	}
	if n > 3 && mode == "" {
		rows[2].Serial = "SN-Ærø-κ-002" // non-ASCII: cp1252 has Æ and ø, not κ
		rows[3].Serial = "=HYPERLINK(\"http://x\")"
	}
	if inProgress && n > 0 {
		last := &rows[n-1]
		last.Result, last.Finished, last.CycleTime, last.ReasonCode, last.ReasonText = ResultInProgress, time.Time{}, 0, "", ""
		last.IAKCertSerial, last.IDevIDCertSerial = "", ""
	}
	return rows
}

func sliceSource(rows []BoardRow) BoardSource {
	return func(yield func(BoardRow) error) error {
		for _, r := range rows {
			if err := yield(r); err != nil {
				return err
			}
		}
		return nil
	}
}
