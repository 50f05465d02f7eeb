package records

import (
	"errors"
	"strings"
	"testing"
)

// Callers match refusals with errors.Is on the sentinel and read the details with errors.As; each typed
// error must unwrap to its sentinel and say, to a person, which board and what to do.
func TestTypedErrorsUnwrapToTheirSentinels(t *testing.T) {
	ek := strings.Repeat("ab", 32)
	for _, c := range []struct {
		err      error
		sentinel error
		says     []string
	}{
		{&EKBoundError{Serial: "SN-2", EKPubSHA256: ek, OtherSerial: "SN-1"}, ErrEKBoundToOtherSerial, []string{"SN-2", "SN-1", "quarantine", ek[:16] + "…"}},
		{&SerialBoundError{Serial: "SN-1", EKPubSHA256: ek, BoundEK: "cd"}, ErrSerialBoundToOtherEK, []string{"SN-1", "rework"}},
		{&InProgressError{Serial: "SN-1", Station: "st2", Slot: 3}, ErrBoardInProgressElsewhere, []string{"SN-1", "st2", "slot 3"}},
		{&ChainError{Seq: 7, Problem: ProblemEdited, Detail: "x"}, ErrChainBroken, []string{"seq 7", ProblemEdited}},
	} {
		if !errors.Is(c.err, c.sentinel) {
			t.Errorf("%T does not unwrap to %v", c.err, c.sentinel)
		}
		for _, w := range c.says {
			if !strings.Contains(c.err.Error(), w) {
				t.Errorf("%q does not say %q", c.err, w)
			}
		}
		if strings.Contains(c.err.Error(), "\n") {
			t.Errorf("%q is more than one line", c.err)
		}
	}
}

func TestOpsCarryTheirKind(t *testing.T) {
	o := StepOutcome{Detail: "d"}
	for _, c := range []struct {
		op   Op
		kind OpKind
	}{
		{OpStepStarted("s"), OpKindStepStarted}, {OpStepFinished("s", o), OpKindStepFinished},
		{OpStepFailed("s", o), OpKindStepFailed}, {OpStepRan("s", o, true), OpKindStepRan},
		{OpTPMInfo(TPMInfo{}), OpKindTPMInfo}, {OpEK(nil, []byte{1}), OpKindEK}, {OpKey(Key{}), OpKindKey},
		{OpCertificate(KindIAK, nil), OpKindCertificate}, {OpProvisioned(), OpKindProvisioned},
		{OpFailed("c", "t"), OpKindFailed},
	} {
		if c.op.Kind != c.kind {
			t.Errorf("op %+v has kind %d, want %d", c.op, c.op.Kind, c.kind)
		}
	}
	if r := OpStepRan("s", o, true); !r.Failed || r.Step != "s" || r.Outcome.Detail != "d" {
		t.Errorf("OpStepRan lost its fields: %+v", r)
	}
}
