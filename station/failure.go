package station

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station/progress"
)

// Reason codes: see station/progress.
const (
	ReasonBadSerial          = progress.ReasonBadSerial
	ReasonBatch              = progress.ReasonBatch
	ReasonSlotBusy           = progress.ReasonSlotBusy
	ReasonTPMUnreachable     = progress.ReasonTPMUnreachable
	ReasonTPMError           = progress.ReasonTPMError
	ReasonTPMNotStarted      = progress.ReasonTPMNotStarted
	ReasonTPMRefused         = progress.ReasonTPMRefused
	ReasonNoEKCert           = progress.ReasonNoEKCert
	ReasonEKMismatch         = progress.ReasonEKMismatch
	ReasonClone              = progress.ReasonClone
	ReasonSwap               = progress.ReasonSwap
	ReasonHeldElsewhere      = progress.ReasonHeldElsewhere
	ReasonAlreadyDone        = progress.ReasonAlreadyDone
	ReasonStopped            = progress.ReasonStopped
	ReasonTPMOccupied        = progress.ReasonTPMOccupied
	ReasonCAUnreachable      = progress.ReasonCAUnreachable
	ReasonInventory          = progress.ReasonInventory
	ReasonStationKey         = progress.ReasonStationKey
	ReasonReadBack           = progress.ReasonReadBack
	ReasonNotVouched         = progress.ReasonNotVouched
	ReasonAborted            = progress.ReasonAborted
	ReasonCAPrefix           = progress.ReasonCAPrefix
	ReasonCertificateForeign = progress.ReasonCertificateForeign
)

func fail(code, next string, err error, format string, args ...any) *Failure {
	text := fmt.Sprintf(format, args...)
	if err != nil && text == "" {
		text = err.Error()
	}
	return &Failure{Code: code, Text: oneLine(text), Next: next, Err: err}
}

func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// keyUnavailable is the failure of a board whose station key does not answer (Config.KeyReady), nil when
// it does or is a file. It is a station fault: a claimed board stays in progress and resumes.
func (s *Station) keyUnavailable() *Failure {
	if s.cfg.KeyReady == nil {
		return nil
	}
	err := s.cfg.KeyReady()
	if err == nil {
		return nil
	}
	f := fail(ReasonStationKey, "put the station's key token back (or reseat its reader), then retry the board", err,
		"the station's key is unavailable (%v)", err)
	f.Infra = true
	return f
}

// classifyClaim turns an inventory refusal into a board failure.
func classifyClaim(serial string, err error) *Failure {
	var ekb *records.EKBoundError
	var sb *records.SerialBoundError
	var ip *records.InProgressError
	switch {
	case errors.As(err, &ekb):
		f := fail(ReasonClone, "set the board aside for QA (possible cloned TPM or mislabelled board)", err,
			"EK already bound to serial %s", ekb.OtherSerial)
		f.Stop = true
		return f
	case errors.As(err, &sb):
		f := fail(ReasonSwap, "set the board aside for QA; if its TPM was replaced on purpose, run a rework", err,
			"serial %s is bound to another TPM's EK (possible swapped part)", serial)
		f.Stop = true
		return f
	case errors.As(err, &ip):
		return fail(ReasonHeldElsewhere, "finish or abort it there first", err, "board %s is in progress at station %s slot %d", serial, ip.Station, ip.Slot)
	case errors.Is(err, records.ErrAlreadyProvisioned):
		return fail(ReasonAlreadyDone, "nothing to do; run a rework (supervisor) to provision it again", err, "")
	case errors.Is(err, records.ErrBoardStopped):
		f := fail(ReasonStopped, "hand it to QA; only a rework takes it again", err, "")
		f.Stop = true
		return f
	case errors.Is(err, records.ErrBatchClosed), errors.Is(err, records.ErrBatchNotFound):
		return fail(ReasonBatch, "open a batch (station batch open) and scan again", err, "")
	case errors.Is(err, records.ErrInvalid):
		return fail(ReasonBadSerial, "check the label and scan again", err, "")
	}
	f := fail(ReasonInventory, "check the database connection, then retry the board", err, "inventory: %v", err)
	f.Infra = true
	return f
}

// classifyCA turns a CA refusal or a transport error into a board failure.
func classifyCA(err error) *Failure {
	var pe *provisioning.Error
	if errors.As(err, &pe) {
		f := fail(ReasonCAPrefix+string(pe.Code), caNext(pe.Code), err, "CA refused: %s", pe.Message)
		switch pe.Code {
		case provisioning.CodeEKUntrusted, provisioning.CodeEKNotEK, provisioning.CodeEKMismatch,
			provisioning.CodeEKSerialConflict, provisioning.CodeEKNotListed:
			f.Stop = true
		case provisioning.CodeInternal, provisioning.CodeUnauthenticated, provisioning.CodeWitnessConflict, provisioning.CodeCheckpointInvalid:
			f.Infra = true
		}
		return f
	}
	f := fail(ReasonCAUnreachable, "check the CA link, then retry the board", err, "%v", err)
	f.Infra = true
	return f
}

func caNext(code provisioning.ErrorCode) string {
	switch code {
	case provisioning.CodeEKUntrusted, provisioning.CodeEKNotEK, provisioning.CodeEKCertInvalid:
		return "set the board aside for QA: its TPM's EK certificate is not from an accepted vendor"
	case provisioning.CodeEKSerialConflict:
		return "set the board aside for QA: the CA knows this TPM under another serial"
	case provisioning.CodeEKNotListed:
		return "push the batch's EK list to the CA (station ek-list push), then retry"
	case provisioning.CodeUnauthenticated:
		return "check the station's client certificate (client_cert/client_key) with the CA operator"
	case provisioning.CodeWitnessConflict:
		return "stop the line: the audit chain contradicts a head the CA witnessed; run 'station audit verify' with the CA and call QA"
	case provisioning.CodeCheckpointInvalid:
		return "check that the station signs with the key of its client certificate (client_cert/client_key), or upgrade the station"
	case provisioning.CodeChallengeExpired:
		return "retry the board (the CA's challenge timed out)"
	}
	return "retry the board once; if it fails again set it aside for QA"
}

func payload(m map[string]any) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		return []byte("{}")
	}
	return b
}
