package station

import (
	"slices"
	"testing"

	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/station/progress"
)

func names(seq []*stepSpec) []string {
	var out []string
	for _, sp := range seq {
		out = append(out, sp.name)
	}
	return out
}

// The table the flow walks is the list the terminal draws: one spec per step, no spec for a step the
// terminal does not know.
func TestSequenceIsProgressSteps(t *testing.T) {
	if got := names(sequence); !slices.Equal(got, progress.Steps) {
		t.Errorf("sequence %v, progress.Steps %v", got, progress.Steps)
	}
	if len(specs) != len(progress.Steps) {
		t.Errorf("%d specs for %d steps", len(specs), len(progress.Steps))
	}
	for _, sp := range sequence {
		if sp.run == nil {
			t.Errorf("step %s has no body", sp.name)
		}
	}
}

func TestReworkSequence(t *testing.T) {
	want := []string{StepConnect, provisioning.StepFlush, provisioning.StepTPMInfo, provisioning.StepEKCerts,
		provisioning.StepEK, provisioning.StepEKCheck, StepClaim, provisioning.StepClear, provisioning.StepIAK,
		provisioning.StepIDevID, provisioning.StepEnroll, provisioning.StepActivate, provisioning.StepCertify,
		provisioning.StepIssue, provisioning.StepPersist, provisioning.StepNVWrite, provisioning.StepReadBack, StepRecord}
	if got := names(reworkSequence); !slices.Equal(got, want) {
		t.Errorf("rework sequence %v, want %v", got, want)
	}
}

// Exactly the steps whose side effect outlives a crash are bracketed in the journal.
func TestDurableSteps(t *testing.T) {
	var got []string
	for _, sp := range sequence {
		if sp.durable {
			got = append(got, sp.name)
		}
	}
	want := []string{provisioning.StepClear, provisioning.StepIssue, provisioning.StepPersist, provisioning.StepNVWrite}
	if !slices.Equal(got, want) {
		t.Errorf("durable steps %v, want %v", got, want)
	}
}
