package station

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tpmline/tpmline/internal/tpmwire"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station/progress"
)

// RetireJob and RetireOutcome are package progress's, so the terminal asks for a retire without linking
// the TPM stack.
type (
	RetireJob     = progress.RetireJob
	RetireOutcome = progress.RetireOutcome
)

// Retire records why the board leaves service (the board is stopped; RetireBoard), asks the CA to revoke
// its certificates, and, when the board is on the fixture, evicts the persisted IAK and IDevID and
// undefines the certificate indices, after checking that the TPM there is the board's own (its EK
// identity). Each step's outcome is an audit event. A failed step does not undo the others: the board
// stays stopped and Retire can run again (revoking twice keeps the first record; clearing twice finds
// nothing to clear).
func (s *Station) Retire(ctx context.Context, job RetireJob) (*RetireOutcome, error) {
	if strings.TrimSpace(job.Reason) == "" {
		return nil, fmt.Errorf("board %s: give the reason (--reason) for the audit trail", job.Serial)
	}
	b, err := s.cfg.Inventory.RetireBoard(ctx, job.Serial, s.cfg.StationID, job.Kind, job.Reason)
	if err != nil {
		return nil, err
	}
	out := &RetireOutcome{Board: b}
	event := func(kind string, p map[string]any) error {
		if job.Supervisor != "" {
			p["supervisor"] = job.Supervisor
		}
		data, err := json.Marshal(p)
		if err != nil {
			return err
		}
		_, err = s.cfg.Inventory.AppendEvent(ctx, records.Event{Station: s.cfg.StationID, Batch: b.Batch, Serial: b.Serial,
			Kind: kind, Payload: data})
		return err
	}

	rv, ok := s.cfg.CA.(provisioning.Revoker)
	if !ok {
		out.RevokeErr = errors.New("this station's CA client cannot revoke; ask the CA operator (upstream-ca revoke --board)")
	} else {
		res, err := rv.RevokeBoard(ctx, &provisioning.RevokeBoardRequest{Serial: b.Serial, Reason: job.CRLReason})
		if err != nil {
			out.RevokeErr = err
		} else {
			out.Revoked, out.Already = res.Revoked, res.Already
		}
	}
	if out.RevokeErr != nil {
		err = event(records.EventBoardRevokeFailed, map[string]any{"crl_reason": job.CRLReason, "error": out.RevokeErr.Error()})
	} else {
		err = event(records.EventBoardCertsRevoked, map[string]any{"crl_reason": job.CRLReason,
			"revoked": out.Revoked, "already": out.Already})
	}
	if err != nil {
		return out, fmt.Errorf("board %s: recording the revocation: %w", b.Serial, err)
	}

	if job.TPM == "" {
		out.TPMNotReason = "the board was not on the fixture (no --tpm); its TPM still holds the old keys and certificates, which a rework clears"
	} else if err := s.clearBoardTPM(ctx, b, job.TPM); err != nil {
		out.TPMNotReason = err.Error()
	} else {
		out.TPMCleared = true
	}
	if out.TPMCleared {
		err = event(records.EventBoardTPMCleared, map[string]any{"tpm": job.TPM})
	} else {
		err = event(records.EventBoardTPMNotCleared, map[string]any{"tpm": job.TPM, "error": out.TPMNotReason})
	}
	if err != nil {
		return out, fmt.Errorf("board %s: recording the TPM clear: %w", b.Serial, err)
	}
	return out, nil
}

// clearBoardTPM opens the TPM at addr, checks it is board b's (same EK identity) and clears the device
// identity from it (provisioning.Clear).
func (s *Station) clearBoardTPM(ctx context.Context, b *records.Board, addr string) error {
	batch, err := s.cfg.Inventory.GetBatch(ctx, b.Batch)
	if err != nil {
		return fmt.Errorf("reading batch %s for the board's layout: %w", b.Batch, err)
	}
	prof := s.Profile(batch.Product)
	tpm, err := s.cfg.Open(addr)
	if err != nil {
		return fmt.Errorf("opening the TPM at %s: %w", addr, err)
	}
	defer tpm.Close()
	nameAlg, _ := prof.IAKKeyAlg().NameAlg()
	_, ekAlg, _, err := provisioning.ReadChosenEKCert(tpm, nameAlg, 0)
	if err != nil {
		return fmt.Errorf("reading the EK certificate of the TPM at %s: %w", addr, err)
	}
	ek, err := provisioning.CreateEK(tpm, ekAlg)
	if err != nil {
		return fmt.Errorf("creating the EK of the TPM at %s: %w", addr, err)
	}
	defer func() { _ = ek.Flush(tpm) }()
	id, err := tpmwire.EKIdentity(ek.PublicBytes)
	if err != nil {
		return fmt.Errorf("the EK of the TPM at %s: %w", addr, err)
	}
	if id != b.EKPubSHA256 {
		return fmt.Errorf("the TPM at %s is not board %s's (EK %.12s, the board's is %.12s); nothing was removed: put board %s on the fixture and run again",
			addr, b.Serial, id, b.EKPubSHA256, b.Serial)
	}
	if err := provisioning.Clear(tpm, prof.Layout()); err != nil {
		return fmt.Errorf("clearing the TPM at %s: %w", addr, err)
	}
	return nil
}
