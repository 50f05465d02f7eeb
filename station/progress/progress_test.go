package progress

import "testing"

func TestStepIndex(t *testing.T) {
	for i, s := range Steps {
		if got := StepIndex(s); got != i {
			t.Errorf("StepIndex(%q) = %d, want %d", s, got, i)
		}
	}
	if StepIndex("no-such-step") != -1 {
		t.Error("an unknown step has an index")
	}
	if Steps[0] != StepConnect || Steps[len(Steps)-1] != StepRecord || StepIndex(StepClaim) < StepIndex(StepIDevID) {
		t.Errorf("the flow's order changed: %v", Steps)
	}
}

func TestFailureLine(t *testing.T) {
	f := &Failure{Code: ReasonClone, Text: "EK already bound to serial SN-1", Next: "set the board aside for QA"}
	if got, want := f.Line(), "ek_bound_to_other_serial: EK already bound to serial SN-1: set the board aside for QA"; got != want {
		t.Errorf("Line() = %q, want %q", got, want)
	}
	f.Next = ""
	if got, want := f.Error(), "ek_bound_to_other_serial: EK already bound to serial SN-1"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestBoardSteps(t *testing.T) {
	plain := BoardSteps(false)
	if len(plain) != len(Steps)-2 || StepIndexIn(plain, StepClear) != -1 || StepIndexIn(plain, StepRecord) != -1 {
		t.Errorf("a board's steps: %v", plain)
	}
	rw := BoardSteps(true)
	want := []string{StepConnect, StepFlush, StepTPMInfo, StepEKCerts, StepEK, StepEKCheck, StepClaim, StepClear, StepIAK, StepIDevID,
		StepEnroll, StepActivate, StepCertify, StepIssue, StepPersist, StepNVWrite, StepReadBack}
	if len(rw) != len(want) {
		t.Fatalf("a rework's steps: %v", rw)
	}
	for i := range want {
		if rw[i] != want[i] {
			t.Fatalf("a rework's steps: %v, want %v", rw, want)
		}
	}
}
