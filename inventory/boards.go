package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

const boardColumns = `id, serial, ek_pub_sha256, batch, state, current_step, reason_code, reason_text,
	tpm_manufacturer, tpm_vendor, tpm_firmware, ek_cert, ek_public, station, slot, attempt, rework_count,
	created_at, updated_at`

// ClaimBoard is the inventory check of the per-board flow and the claim of the board for one station slot,
// in one transaction. The rules, in order:
//
//   - the batch must exist and be open;
//   - an EK already bound to another serial is refused with *EKBoundError (ErrEKBoundToOtherSerial), even
//     in a rework: a TPM does not move between boards;
//   - a serial bound to another EK is refused with *SerialBoundError (ErrSerialBoundToOtherEK) unless
//     Rework is set, which rebinds the serial to the new EK (the TPM was replaced); this is checked
//     before the holder below, because a second TPM presenting a known serial is the finding that matters;
//   - a board in progress is held by its station and slot: anyone else gets *InProgressError
//     (ErrBoardInProgressElsewhere); the holder resumes it (same attempt);
//   - a provisioned board is refused with ErrAlreadyProvisioned, a stopped one with ErrBoardStopped,
//     unless Rework is set (new attempt, rework count +1);
//   - a failed board is retried (new attempt);
//   - an unknown serial with an unknown EK becomes a new board, in progress, attempt 1.
//
// Unique constraints on serial and EK hash back the rules when stations race: the loser's insert fails,
// its transaction runs again and returns the precise error above. Every claim and every refusal is an
// audit event.
func (s *Store) ClaimBoard(ctx context.Context, req ClaimRequest) (*Board, error) {
	if err := checkText("serial", req.Serial, true); err != nil {
		return nil, err
	}
	if err := checkText("batch", req.Batch, true); err != nil {
		return nil, err
	}
	if err := checkText("station", req.Station, true); err != nil {
		return nil, err
	}
	ek, err := normEKHash(req.EKPubSHA256)
	if err != nil {
		return nil, fmt.Errorf("claiming board %s: %w", req.Serial, err)
	}
	if req.Slot < 0 {
		return nil, fmt.Errorf("%w: slot %d is negative", ErrInvalid, req.Slot)
	}
	req.EKPubSHA256 = ek
	var out *Board
	err = s.inTx(ctx, func(tx *txn) error {
		b, err := s.claimTx(ctx, tx, req)
		out = b
		return err
	})
	return out, err
}

func (s *Store) claimTx(ctx context.Context, tx *txn, req ClaimRequest) (*Board, error) {
	batch, err := s.getBatchTx(ctx, tx, req.Batch, false)
	if err != nil {
		return nil, err
	}
	if batch.State != "open" {
		return nil, fmt.Errorf("%w: batch %s is closed; open a new batch for board %s", ErrBatchClosed, req.Batch, req.Serial)
	}
	now := tx.now
	if err := s.touchStation(ctx, tx, req.Station, now); err != nil {
		return nil, err
	}
	owner, err := s.boardTx(ctx, tx, "ek_pub_sha256 = ?", req.EKPubSHA256)
	if err != nil {
		return nil, err
	}
	if owner != nil && owner.Serial != req.Serial {
		return nil, s.refuseTx(ctx, tx, req, &EKBoundError{Serial: req.Serial, EKPubSHA256: req.EKPubSHA256, OtherSerial: owner.Serial})
	}
	b := owner
	if b == nil {
		if b, err = s.boardTx(ctx, tx, "serial = ?", req.Serial); err != nil {
			return nil, err
		}
	}
	if b == nil {
		var id int64
		if err := tx.GetContext(ctx, &id, s.q(`INSERT INTO boards
			(serial, ek_pub_sha256, batch, state, station, slot, attempt, rework_count, created_at, updated_at)
			VALUES (?, ?, ?, 'in_progress', ?, ?, 1, 0, ?, ?) RETURNING id`),
			req.Serial, req.EKPubSHA256, req.Batch, req.Station, req.Slot, now, now); err != nil {
			return nil, fmt.Errorf("inserting board %s: %w", req.Serial, err)
		}
		return s.afterClaimTx(ctx, tx, req, EventBoardClaimed, nil)
	}

	heldElsewhere := b.State == string(StateInProgress) && (b.Station != req.Station || b.Slot != req.Slot)
	newEK := b.EKPubSHA256.Valid && b.EKPubSHA256.String != req.EKPubSHA256
	switch {
	case newEK && !req.Rework:
		return nil, s.refuseTx(ctx, tx, req, &SerialBoundError{Serial: req.Serial, EKPubSHA256: req.EKPubSHA256, BoundEK: b.EKPubSHA256.String})
	case heldElsewhere:
		return nil, s.refuseTx(ctx, tx, req, &InProgressError{Serial: b.Serial, Station: b.Station, Slot: b.Slot})
	case newEK:
		// Rework after a TPM replacement: the serial takes the new EK and forgets the old TPM's facts;
		// the old EK, keys, certificates and journal stay in the log and the attempt-numbered tables.
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE boards SET ek_pub_sha256 = ?, ek_cert = NULL, ek_public = NULL,
			tpm_manufacturer = '', tpm_vendor = '', tpm_firmware = '', state = 'in_progress', current_step = '',
			reason_code = '', reason_text = '', batch = ?, station = ?, slot = ?, attempt = attempt + 1,
			rework_count = rework_count + 1, updated_at = ? WHERE id = ?`),
			req.EKPubSHA256, req.Batch, req.Station, req.Slot, now, b.ID); err != nil {
			return nil, fmt.Errorf("reworking board %s: %w", req.Serial, err)
		}
		return s.afterClaimTx(ctx, tx, req, EventBoardReworked, map[string]any{"old_ek_pub_sha256": b.EKPubSHA256.String,
			"previous_state": b.State, "previous_batch": b.Batch})
	case b.State == string(StateInProgress):
		// The holder itself, after a restart: same attempt, the journal tells where it stopped.
		if _, err := tx.ExecContext(ctx, s.q("UPDATE boards SET ek_pub_sha256 = ?, updated_at = ? WHERE id = ?"),
			req.EKPubSHA256, now, b.ID); err != nil {
			return nil, fmt.Errorf("resuming board %s: %w", req.Serial, err)
		}
		return s.afterClaimTx(ctx, tx, req, EventBoardResumed, map[string]any{"current_step": b.CurrentStep})
	case b.State == string(StateProvisioned) && !req.Rework:
		return nil, s.refuseTx(ctx, tx, req, fmt.Errorf("%w: board %s (EK %s) was provisioned at %s in batch %s; run a rework to provision it again",
			ErrAlreadyProvisioned, b.Serial, short(req.EKPubSHA256), fromNano(b.UpdatedAt).Format("2006-01-02 15:04:05Z"), b.Batch))
	case b.State == string(StateStopped) && !req.Rework:
		return nil, s.refuseTx(ctx, tx, req, fmt.Errorf("%w: board %s was stopped (%s: %s); only a rework may take it again",
			ErrBoardStopped, b.Serial, b.ReasonCode, b.ReasonText))
	}
	// A retry of a failed board, or a rework of a provisioned, stopped or failed one with the same EK.
	kind, rework := EventBoardRetried, 0
	if req.Rework {
		kind, rework = EventBoardReworked, 1
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE boards SET ek_pub_sha256 = ?, state = 'in_progress', current_step = '',
		reason_code = '', reason_text = '', batch = ?, station = ?, slot = ?, attempt = attempt + 1,
		rework_count = rework_count + ?, updated_at = ? WHERE id = ?`),
		req.EKPubSHA256, req.Batch, req.Station, req.Slot, rework, now, b.ID); err != nil {
		return nil, fmt.Errorf("claiming board %s again: %w", req.Serial, err)
	}
	return s.afterClaimTx(ctx, tx, req, kind, map[string]any{"previous_state": b.State, "previous_batch": b.Batch,
		"previous_reason_code": b.ReasonCode})
}

// afterClaimTx reads the claimed board back and records the claim event.
func (s *Store) afterClaimTx(ctx context.Context, tx *txn, req ClaimRequest, kind string, extra map[string]any) (*Board, error) {
	r, err := s.boardTx(ctx, tx, "serial = ?", req.Serial)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("board %s vanished while being claimed", req.Serial)
	}
	p := map[string]any{"ek_pub_sha256": req.EKPubSHA256, "slot": req.Slot, "attempt": r.Attempt,
		"rework": req.Rework, "rework_count": r.ReworkCount}
	for k, v := range extra {
		p[k] = v
	}
	if err := s.appendEventTx(ctx, tx, &Event{Station: req.Station, Batch: req.Batch, Serial: req.Serial,
		Kind: kind, Payload: jsonPayload(p)}); err != nil {
		return nil, err
	}
	return r.board(), nil
}

// refuseTx records a refused claim in the audit log and returns the refusal, which the transaction helper
// commits (the event must survive) before handing the error back.
func (s *Store) refuseTx(ctx context.Context, tx *txn, req ClaimRequest, refusal error) error {
	p := map[string]any{"ek_pub_sha256": req.EKPubSHA256, "slot": req.Slot, "rework": req.Rework, "error": refusal.Error()}
	var ekb *EKBoundError
	var sb *SerialBoundError
	var ip *InProgressError
	switch {
	case errors.As(refusal, &ekb):
		p["reason"], p["other_serial"] = "ek_bound_to_other_serial", ekb.OtherSerial
	case errors.As(refusal, &sb):
		p["reason"], p["bound_ek_pub_sha256"] = "serial_bound_to_other_ek", sb.BoundEK
	case errors.As(refusal, &ip):
		p["reason"], p["holder_station"], p["holder_slot"] = "in_progress_elsewhere", ip.Station, ip.Slot
	case errors.Is(refusal, ErrAlreadyProvisioned):
		p["reason"] = "already_provisioned"
	case errors.Is(refusal, ErrBoardStopped):
		p["reason"] = "stopped"
	}
	if err := s.appendEventTx(ctx, tx, &Event{Station: req.Station, Batch: req.Batch, Serial: req.Serial,
		Kind: EventClaimRefused, Payload: jsonPayload(p)}); err != nil {
		return err
	}
	return &keepError{refusal}
}

// boardTx reads one board inside a write transaction, locking its row on PostgreSQL so the decision made
// from it holds until commit. nil, nil when there is none.
func (s *Store) boardTx(ctx context.Context, tx *txn, where string, arg any) (*boardRow, error) {
	var r boardRow
	err := tx.GetContext(ctx, &r, s.q("SELECT "+boardColumns+" FROM boards WHERE "+where+s.d.forUpdate), arg)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading board where %s %v: %w", where, arg, err)
	}
	return &r, nil
}

// activeBoardTx locks the board serial and checks that it is in progress.
func (s *Store) activeBoardTx(ctx context.Context, tx *txn, serial string) (*boardRow, error) {
	b, err := s.boardTx(ctx, tx, "serial = ?", serial)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("%w: no board %s; claim it first", ErrBoardNotFound, serial)
	}
	if b.State != string(StateInProgress) {
		return nil, fmt.Errorf("%w: board %s is %s; claim it again to change its record", ErrNotInProgress, serial, b.State)
	}
	return b, nil
}

// GetBoardBySerial returns the board or ErrBoardNotFound.
func (s *Store) GetBoardBySerial(ctx context.Context, serial string) (*Board, error) {
	return s.getBoard(ctx, "serial = ?", serial, "serial "+serial)
}

// GetBoardByEKHash returns the board whose EK public key hashes to ekPubSHA256, or ErrBoardNotFound.
func (s *Store) GetBoardByEKHash(ctx context.Context, ekPubSHA256 string) (*Board, error) {
	ek, err := normEKHash(ekPubSHA256)
	if err != nil {
		return nil, err
	}
	return s.getBoard(ctx, "ek_pub_sha256 = ?", ek, "EK "+short(ek))
}

func (s *Store) getBoard(ctx context.Context, where string, arg any, what string) (*Board, error) {
	var r boardRow
	err := s.r.GetContext(ctx, &r, s.q("SELECT "+boardColumns+" FROM boards WHERE "+where), arg)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no board with %s", ErrBoardNotFound, what)
	}
	if err != nil {
		return nil, fmt.Errorf("reading board with %s: %w", what, err)
	}
	return r.board(), nil
}

// ListBoards calls fn for every board of batch ("" for every board) in the order they were first
// claimed, streaming rows from the database rather than holding them, and stops at the first error fn
// returns (which it returns). fn may call other Store methods.
func (s *Store) ListBoards(ctx context.Context, batch string, fn func(*Board) error) error {
	query, args := "SELECT "+boardColumns+" FROM boards", []any{}
	if batch != "" {
		query += " WHERE batch = ?"
		args = append(args, batch)
	}
	rows, err := s.r.QueryxContext(ctx, s.q(query+" ORDER BY id"), args...)
	if err != nil {
		return fmt.Errorf("listing boards of batch %q: %w", batch, err)
	}
	defer rows.Close()
	for rows.Next() {
		var r boardRow
		if err := rows.StructScan(&r); err != nil {
			return fmt.Errorf("reading board: %w", err)
		}
		if err := fn(r.board()); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing boards of batch %q: %w", batch, err)
	}
	return nil
}

// ListInProgress returns the boards station holds in progress, for crash recovery: the journal
// (ListSteps) says which step each one was in.
func (s *Store) ListInProgress(ctx context.Context, station string) ([]*Board, error) {
	var rows []boardRow
	if err := s.r.SelectContext(ctx, &rows, s.q("SELECT "+boardColumns+
		" FROM boards WHERE station = ? AND state = 'in_progress' ORDER BY slot, id"), station); err != nil {
		return nil, fmt.Errorf("listing boards in progress at %s: %w", station, err)
	}
	out := make([]*Board, len(rows))
	for i := range rows {
		out[i] = rows[i].board()
	}
	return out, nil
}
