package provisioning_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tpmline/tpmline/provisioning"
)

// TestCheckpointBody: a checkpoint reads back from its body, and any other text is refused.
func TestCheckpointBody(t *testing.T) {
	cp := &provisioning.Checkpoint{Station: "st1", Seq: 42, Hash: strings.Repeat("ab", 32), Time: time.Date(2026, 12, 3, 19, 40, 0, 123, time.UTC)}
	got, err := provisioning.ParseCheckpoint(cp.Body())
	if err != nil || *got != *cp {
		t.Fatalf("provisioning.ParseCheckpoint = %+v, %v", got, err)
	}
	body := string(cp.Body())
	for name, b := range map[string]string{
		"empty":         "",
		"other format":  strings.Replace(body, provisioning.CheckpointFormat, "tpmline-audit-checkpoint/2", 1),
		"no final LF":   strings.TrimSuffix(body, "\n"),
		"extra line":    body + "x\n",
		"seq zero":      strings.Replace(body, "seq 42", "seq 0", 1),
		"seq padded":    strings.Replace(body, "seq 42", "seq 042", 1),
		"upper hex":     strings.Replace(body, "abab", "ABAB", 1),
		"short hash":    strings.Replace(body, strings.Repeat("ab", 32), "ab", 1),
		"empty station": strings.Replace(body, "station st1", "station ", 1),
		"bad time":      strings.Replace(body, "2026-12-03", "2026-13-03", 1),
		"CRLF":          strings.ReplaceAll(body, "\n", "\r\n"),
	} {
		if _, err := provisioning.ParseCheckpoint([]byte(b)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
