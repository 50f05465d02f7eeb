// The inventory claim: the one-EK-one-serial rule, enforced by the store's unique constraints. The claim
// is sent once the EK is known and checked, and runs while the TPM derives the IAK and IDevID (transient
// keys: nothing durable happens to the board); its answer is awaited, as the inventory-check step, before
// anything leaves the station or changes the TPM for good. A rework awaits it first: its clear needs the
// object slots the new keys would hold.

package station

import (
	"errors"

	"github.com/tpmline/tpmline/records"
)

type claimResult struct {
	board *records.Board
	err   error
}

// startClaim sends the claim in the background; the inventory-check step collects its answer.
func (r *run) startClaim() {
	s, job := r.s, r.job
	ekHash := r.ekIdentity // set by the ek-check step
	r.out.EKPubSHA256 = ekHash
	claimed := make(chan claimResult, 1)
	r.claimTried = true
	go func() {
		b, err := s.cfg.Inventory.ClaimBoard(r.ctx, records.ClaimRequest{Serial: job.Serial, EKPubSHA256: ekHash,
			Batch: job.Batch, Station: s.cfg.StationID, Slot: job.Slot, Rework: job.Rework})
		claimed <- claimResult{b, err}
	}()
	r.claiming = claimed
}

// awaitClaim is the inventory-check step: it waits for the claim's answer. A board the inventory calls
// provisioned whose TPM still matches ends the run as a success (errAlready).
func (r *run) awaitClaim() error {
	res := <-r.claiming
	r.claiming = nil
	var err error
	r.board, err = res.board, res.err
	if errors.Is(err, records.ErrAlreadyProvisioned) {
		// Reading the persisted keys takes object slots the new transient keys hold (3 in all).
		_ = errors.Join(r.idevid.Flush(r.tpm), r.iak.Flush(r.tpm))
		r.iak, r.idevid = nil, nil
		if ok := r.alreadyProvisioned(); ok {
			return errAlready
		}
	}
	return err
}

var errAlready = errors.New("already provisioned and the TPM matches")

// claimGranted runs once the board has its inventory row: from here on the run journals.
func (r *run) claimGranted() {
	r.claimed = true
	if r.job.Rework {
		r.note(records.Event{Kind: "board.rework_authorised", Payload: payload(map[string]any{"supervisor": r.job.Supervisor,
			"slot": r.job.Slot, "attempt": r.board.Attempt})})
	}
	// The steps that ran before the board had a row, and what they found, are journaled with the next
	// commit.
	r.queuePre()
}
