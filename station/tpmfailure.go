// TPM failure classification: how an error from a board's TPM, its fixture or its transport becomes the
// board's Failure (reason code, text, next action). The inventory's and the CA's classifications are in
// failure.go.

package station

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"

	"github.com/tpmline/tpmline/provisioning"
)

func tpmFailure(err error) *Failure {
	// A transport that knows what is wrong with the fixture (fixtures.NotStartedError) says what to do.
	var fixture interface{ NextAction() string }
	if errors.As(err, &fixture) {
		return fail(ReasonTPMNotStarted, fixture.NextAction(), err, "%v", err)
	}
	if provisioning.IsNotVouched(err) {
		return fail(ReasonNotVouched, "set the board aside and check its fixture link: something between the station and the TPM answered in the TPM's place", err, "%v", err)
	}
	if errors.Is(err, errTPMUnreachable) {
		return fail(ReasonTPMUnreachable, "check the fixture cable or board power, then retry", err, "%v", err)
	}
	var rc tpm2.TPMRC
	if errors.As(err, &rc) {
		return fail(ReasonTPMError, "retry the board; if it fails again set it aside for QA", err, "%v", err)
	}
	// Transport errors (timeouts, resets) come back as plain errors from the transport.
	msg := err.Error()
	if strings.Contains(msg, "connection") || strings.Contains(msg, "timeout") || strings.Contains(msg, "EOF") ||
		strings.Contains(msg, "broken pipe") || strings.Contains(msg, "i/o") {
		return fail(ReasonTPMUnreachable, "check the fixture cable or board power, then retry", err, "TPM stopped answering: %v", err)
	}
	return fail(ReasonTPMError, "retry the board; if it fails again set it aside for QA", err, "%v", err)
}

var errTPMUnreachable = errors.New("TPM unreachable")

func occupied(what string, h tpm2.TPMHandle, err error) error {
	if errors.Is(err, provisioning.ErrHandleOccupied) {
		return fail(ReasonTPMOccupied, "this TPM was provisioned before: run a rework (supervisor) to replace its keys", err,
			"%s handle %#x already holds another key", what, uint32(h))
	}
	return fmt.Errorf("persisting the %s: %w", what, err)
}
