package station

import (
	"testing"

	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/station/progress"
)

// The terminal draws step names from station/progress, which cannot import provisioning; the flow runs
// provisioning's. They must be the same strings.
func TestProgressStepNamesAreProvisionings(t *testing.T) {
	for _, c := range []struct{ progress, provisioning string }{
		{progress.StepFlush, provisioning.StepFlush}, {progress.StepTPMInfo, provisioning.StepTPMInfo},
		{progress.StepEKCerts, provisioning.StepEKCerts}, {progress.StepEK, provisioning.StepEK},
		{progress.StepEKCheck, provisioning.StepEKCheck}, {progress.StepClear, provisioning.StepClear},
		{progress.StepIAK, provisioning.StepIAK}, {progress.StepIDevID, provisioning.StepIDevID},
		{progress.StepEnroll, provisioning.StepEnroll}, {progress.StepActivate, provisioning.StepActivate},
		{progress.StepCertify, provisioning.StepCertify}, {progress.StepIssue, provisioning.StepIssue},
		{progress.StepPersist, provisioning.StepPersist}, {progress.StepNVWrite, provisioning.StepNVWrite},
		{progress.StepReadBack, provisioning.StepReadBack},
	} {
		if c.progress != c.provisioning {
			t.Errorf("progress names step %q, provisioning %q", c.progress, c.provisioning)
		}
	}
}
