package qa

import (
	"context"
	"errors"
	"fmt"

	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/reports"
	"github.com/tpmline/tpmline/reports/signed"
)

// ReportOptions are the choices of a batch report beyond its files.
type ReportOptions struct {
	// AllowUnverified writes a report of a batch whose inventory disagrees with its audit chain (or whose
	// chain is broken) instead of refusing, marked unverified on every page and in the CSV and JSON, with
	// the divergences named.
	AllowUnverified bool
	// Signer, when set, signs a checkpoint of the whole audit chain (its last seq and head, as walked
	// for the verification) into the report (reports.AuditInfo Checkpoint), under the name of the
	// signer's certificate. A broken chain gets none.
	Signer *signed.Signer
}

// Verification is what replaying the audit chain against the inventory's tables found for one batch
// ("" for the whole inventory).
type Verification struct {
	Batch string
	Chain records.ChainStatus
	// ChainErr is the broken link (*records.ChainError) when the chain itself does not verify; there is
	// no replayed state then, and Divergences is empty.
	ChainErr    error
	Divergences []records.Divergence
	// WitnessChecked is how many heads witnessed by the CA were checked (VerifyWitnessed), and
	// WitnessFindings each one the local chain no longer holds.
	WitnessChecked  int
	WitnessFindings []string
}

// OK is true when the chain is intact and every table agrees with it.
func (v *Verification) OK() bool {
	return v.ChainErr == nil && len(v.Divergences) == 0 && len(v.WitnessFindings) == 0
}

// Err is the verification's failure as an error (nil when OK): the broken link, or a *records.StateError.
func (v *Verification) Err() error {
	if v.ChainErr != nil {
		return v.ChainErr
	}
	if len(v.Divergences) > 0 {
		return &records.StateError{Divergences: v.Divergences}
	}
	if len(v.WitnessFindings) > 0 {
		return fmt.Errorf("%w: %s", ErrWitnessMismatch, v.WitnessFindings[0])
	}
	return nil
}

// Lines is one line per finding, as `station audit verify` prints them.
func (v *Verification) Lines() []string {
	var out []string
	if v.ChainErr != nil {
		out = append(out, "events: "+v.ChainErr.Error())
	}
	for _, d := range v.Divergences {
		out = append(out, d.String())
	}
	return append(out, v.WitnessFindings...)
}

// maxReportDivergences is how many divergences an unverified report lists (reports bounds it at 100).
const maxReportDivergences = 99

func (v *Verification) auditInfo() reports.AuditInfo {
	a := reports.AuditInfo{EventCount: v.Chain.Count, ChainHead: v.Chain.Head, ChainSeq: v.Chain.LastSeq, ChainVerified: v.ChainErr == nil}
	if !v.OK() {
		lines := v.Lines()
		if len(lines) > maxReportDivergences {
			lines = append(lines[:maxReportDivergences:maxReportDivergences], fmt.Sprintf("and %d more", len(lines)-maxReportDivergences))
		}
		a.Unverified, a.Divergences = true, lines
	}
	return a
}

// VerifyBatch replays the inventory's audit chain and compares the state it implies with every table the
// station reads, keeping the divergences of batch ("" for all). A broken chain is a finding (ChainErr),
// not an error; an error is the inventory failing to answer.
func VerifyBatch(ctx context.Context, st Store, batch string) (*Verification, error) {
	chain, ds, err := st.VerifyState(ctx, batch)
	v := &Verification{Batch: batch, Chain: chain, Divergences: ds}
	if err != nil {
		if !errors.Is(err, records.ErrChainBroken) {
			return nil, err
		}
		v.ChainErr = err
	}
	return v, nil
}
