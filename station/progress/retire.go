package progress

import (
	"fmt"
	"strings"

	"github.com/tpmline/tpmline/records"
)

// RetireJob takes a provisioned (or failed, or stopped) board out of service after the line
// (station.Station.Retire, which `station board rma|deprovision` and the terminal's rework dialog run).
type RetireJob struct {
	Serial string
	// Kind is records.EventBoardRMA (returned for repair; a rework provisions it again) or
	// records.EventBoardDeprovisioned (retired).
	Kind   string
	Reason string // why, as the operator gives it (required)
	// CRLReason is the RFC 5280 reason the CA records (0 unspecified, 5 cessationOfOperation, ...).
	CRLReason int
	// TPM is the board's TPM address when it is on the fixture; "" records that its keys and
	// certificates could not be removed.
	TPM string
	// Supervisor is the badge that confirmed it at the terminal (recorded in the revoke and TPM events).
	Supervisor string
}

// RetireOutcome says what each step did.
type RetireOutcome struct {
	Board        *records.Board
	Revoked      []string // certificate serials the CA revoked now
	Already      []string // revoked before
	RevokeErr    error    // the CA could not be asked, or refused; nil when it revoked
	TPMCleared   bool
	TPMNotReason string // why the TPM was not cleared
}

// OK reports whether every step did what it is for.
func (o *RetireOutcome) OK() bool { return o.RevokeErr == nil && o.TPMCleared }

// RetireLine is one step's outcome as a person reads it; Bad marks a step that was not done.
type RetireLine struct {
	Text string
	Bad  bool
}

// Lines says what each step did, one line each, without the board's serial: `station board rma` prints
// them after "board SERIAL: ", the terminal logs them under the slot.
func (o *RetireOutcome) Lines() []RetireLine {
	var out []RetireLine
	if o.Board != nil {
		out = append(out, RetireLine{Text: fmt.Sprintf("stopped (%s: %s)", o.Board.ReasonCode, o.Board.ReasonText)})
	}
	if o.RevokeErr != nil {
		serial := ""
		if o.Board != nil {
			serial = o.Board.Serial
		}
		out = append(out, RetireLine{Bad: true, Text: fmt.Sprintf("certificates NOT revoked: %v; retry when the CA answers, or ask the CA operator (upstream-ca revoke --board %s)",
			o.RevokeErr, serial)})
	} else {
		out = append(out, RetireLine{Text: fmt.Sprintf("%d certificate(s) revoked at the CA (%s), %d revoked before", len(o.Revoked),
			strings.Join(o.Revoked, ", "), len(o.Already))})
	}
	if o.TPMCleared {
		out = append(out, RetireLine{Text: "IAK and IDevID evicted, certificate indices undefined"})
	} else {
		out = append(out, RetireLine{Bad: true, Text: "TPM NOT cleared: " + o.TPMNotReason})
	}
	return out
}
