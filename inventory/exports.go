package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

const exportColumns = "id, batch, format, file_sha256, boards, station, created_at, pushed_at"

// RecordEKListExport records that an EK list file for a batch was written (ID, CreatedAt and PushedAt are
// filled by the store).
func (s *Store) RecordEKListExport(ctx context.Context, e EKListExport) (*EKListExport, error) {
	for _, f := range []struct{ name, v string }{{"batch", e.Batch}, {"format", e.Format}, {"station", e.Station}} {
		if err := checkText(f.name, f.v, true); err != nil {
			return nil, err
		}
	}
	sum, err := normEKHash(e.FileSHA256) // same shape: 64 hex digits
	if err != nil {
		return nil, fmt.Errorf("%w: EK list file SHA-256 %q is not 64 hex digits", ErrInvalid, e.FileSHA256)
	}
	if e.Boards < 0 {
		return nil, fmt.Errorf("%w: EK list of batch %s counts %d boards", ErrInvalid, e.Batch, e.Boards)
	}
	var out *EKListExport
	err = s.inTx(ctx, func(tx *txn) error {
		if _, err := s.getBatchTx(ctx, tx, e.Batch, false); err != nil {
			return err
		}
		now := tx.now
		var id int64
		if err := tx.GetContext(ctx, &id, s.q(`INSERT INTO ek_list_exports (batch, format, file_sha256, boards, station, created_at)
			VALUES (?, ?, ?, ?, ?, ?) RETURNING id`), e.Batch, e.Format, sum, e.Boards, e.Station, now); err != nil {
			return err
		}
		out = &EKListExport{ID: id, Batch: e.Batch, Format: e.Format, FileSHA256: sum, Boards: e.Boards,
			Station: e.Station, CreatedAt: fromNano(now)}
		return s.appendEventTx(ctx, tx, &Event{Station: e.Station, Batch: e.Batch, Kind: EventEKListExported,
			Payload: jsonPayload(map[string]any{"export_id": id, "format": e.Format, "file_sha256": sum, "boards": e.Boards})})
	})
	if err != nil {
		return nil, fmt.Errorf("recording the EK list export of batch %s: %w", e.Batch, err)
	}
	return out, nil
}

// MarkEKListPushed records that export id was delivered to the upstream CA.
func (s *Store) MarkEKListPushed(ctx context.Context, id int64) (*EKListExport, error) {
	var out *EKListExport
	err := s.inTx(ctx, func(tx *txn) error {
		var r exportRow
		err := tx.GetContext(ctx, &r, s.q("SELECT "+exportColumns+" FROM ek_list_exports WHERE id = ?"+s.d.forUpdate), id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: no EK list export %d", ErrExportNotFound, id)
		}
		if err != nil {
			return err
		}
		now := tx.now
		if _, err := tx.ExecContext(ctx, s.q("UPDATE ek_list_exports SET pushed_at = ? WHERE id = ?"), now, id); err != nil {
			return err
		}
		r.PushedAt = sql.NullInt64{Int64: now, Valid: true}
		out = r.export()
		return s.appendEventTx(ctx, tx, &Event{Station: r.Station, Batch: r.Batch, Kind: EventEKListPushed,
			Payload: jsonPayload(map[string]any{"export_id": id, "file_sha256": r.FileSHA256})})
	})
	if err != nil {
		return nil, fmt.Errorf("marking EK list export %d pushed: %w", id, err)
	}
	return out, nil
}

// ListEKListExports returns the EK list exports of batch ("" for all), oldest first.
func (s *Store) ListEKListExports(ctx context.Context, batch string) ([]*EKListExport, error) {
	query, args := "SELECT "+exportColumns+" FROM ek_list_exports", []any{}
	if batch != "" {
		query += " WHERE batch = ?"
		args = append(args, batch)
	}
	var rows []exportRow
	if err := s.r.SelectContext(ctx, &rows, s.q(query+" ORDER BY id"), args...); err != nil {
		return nil, fmt.Errorf("listing EK list exports: %w", err)
	}
	out := make([]*EKListExport, len(rows))
	for i := range rows {
		out[i] = rows[i].export()
	}
	return out, nil
}
