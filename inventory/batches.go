package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tpmline/tpmline/records"
)

const batchColumns = "id, product, work_order, quantity, operator, station, state, opened_at, closed_at"

// OpenBatch starts a batch. Its station, operator and product are recorded on first use.
func (s *Store) OpenBatch(ctx context.Context, nb NewBatch) (*Batch, error) {
	for _, f := range []struct{ name, v string }{{"batch id", nb.ID}, {"product", nb.Product},
		{"work order", nb.WorkOrder}, {"operator", nb.Operator}, {"station", nb.Station}} {
		if err := checkText(f.name, f.v, true); err != nil {
			return nil, err
		}
	}
	if nb.Quantity < 0 {
		return nil, fmt.Errorf("%w: batch %s quantity %d is negative", ErrInvalid, nb.ID, nb.Quantity)
	}
	var out *Batch
	err := s.inTx(ctx, func(tx *txn) error {
		now := tx.now
		if _, err := s.getBatchTx(ctx, tx, nb.ID, false); err == nil {
			return fmt.Errorf("%w: batch %s was opened before; pick another batch id", ErrBatchExists, nb.ID)
		} else if !errors.Is(err, ErrBatchNotFound) {
			return err
		}
		if err := s.touchStation(ctx, tx, nb.Station, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q("INSERT INTO operators (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING"),
			nb.Operator, now); err != nil {
			return fmt.Errorf("recording operator %s: %w", nb.Operator, err)
		}
		if _, err := tx.ExecContext(ctx, s.q("INSERT INTO products (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING"),
			nb.Product, now); err != nil {
			return fmt.Errorf("recording product %s: %w", nb.Product, err)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO batches
			(id, product, work_order, quantity, operator, station, state, opened_at) VALUES (?, ?, ?, ?, ?, ?, 'open', ?)`),
			nb.ID, nb.Product, nb.WorkOrder, nb.Quantity, nb.Operator, nb.Station, now); err != nil {
			return fmt.Errorf("inserting batch %s: %w", nb.ID, err)
		}
		b, err := s.getBatchTx(ctx, tx, nb.ID, false)
		if err != nil {
			return err
		}
		out = b
		return s.appendEventTx(ctx, tx, &Event{Station: nb.Station, Batch: nb.ID, Kind: EventBatchOpened,
			Payload: jsonPayload(map[string]any{"product": nb.Product, "work_order": nb.WorkOrder,
				"quantity": nb.Quantity, "operator": nb.Operator})})
	})
	if err != nil {
		return nil, fmt.Errorf("opening batch: %w", err)
	}
	return out, nil
}

// CloseBatch closes an open batch; no board can be claimed into it afterwards. It refuses an unknown or
// already closed batch. The closing event records the batch's counts.
func (s *Store) CloseBatch(ctx context.Context, id string) (*Batch, error) {
	var out *Batch
	err := s.inTx(ctx, func(tx *txn) error {
		b, err := s.getBatchTx(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if b.State != "open" {
			return fmt.Errorf("%w: batch %s was closed at %s", ErrBatchClosed, id, b.ClosedAt.Format("2006-01-02 15:04:05Z"))
		}
		now := tx.now
		if _, err := tx.ExecContext(ctx, s.q("UPDATE batches SET state = 'closed', closed_at = ? WHERE id = ?"), now, id); err != nil {
			return fmt.Errorf("closing batch %s: %w", id, err)
		}
		var c batchSummaryRow
		if err := tx.GetContext(ctx, &c, s.q(batchSummaryQuery+" WHERE b.id = ? GROUP BY b.id"), id); err != nil {
			return fmt.Errorf("counting boards of batch %s: %w", id, err)
		}
		sum := c.summary()
		out = &sum.Batch
		return s.appendEventTx(ctx, tx, &Event{Station: b.Station, Batch: id, Kind: EventBatchClosed,
			Payload: jsonPayload(map[string]any{"quantity": sum.Quantity, "passed": sum.Passed, "failed": sum.Failed,
				"stopped": sum.Stopped, "in_progress": sum.InProgress})})
	})
	if err != nil {
		return nil, fmt.Errorf("closing batch %s: %w", id, err)
	}
	return out, nil
}

// GetBatch returns the batch id or ErrBatchNotFound.
func (s *Store) GetBatch(ctx context.Context, id string) (*Batch, error) {
	var r batchRow
	err := s.r.GetContext(ctx, &r, s.q("SELECT "+batchColumns+" FROM batches WHERE id = ?"), id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no batch %s; open it first", ErrBatchNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("reading batch %s: %w", id, err)
	}
	b := r.batch()
	return &b, nil
}

const batchSummaryQuery = `SELECT b.id, b.product, b.work_order, b.quantity, b.operator, b.station, b.state,
	b.opened_at, b.closed_at,
	COALESCE(SUM(CASE WHEN bo.state = 'provisioned' THEN 1 ELSE 0 END), 0) AS passed,
	COALESCE(SUM(CASE WHEN bo.state = 'failed' THEN 1 ELSE 0 END), 0) AS failed,
	COALESCE(SUM(CASE WHEN bo.state = 'stopped' THEN 1 ELSE 0 END), 0) AS stopped,
	COALESCE(SUM(CASE WHEN bo.state = 'in_progress' THEN 1 ELSE 0 END), 0) AS in_progress
	FROM batches b LEFT JOIN boards bo ON bo.batch = b.id`

// ListBatches returns batches with their board counts, oldest first. state "open" or "closed" filters;
// "" lists all.
func (s *Store) ListBatches(ctx context.Context, state string) ([]BatchSummary, error) {
	query, args := batchSummaryQuery, []any{}
	if state != "" {
		query += " WHERE b.state = ?"
		args = append(args, state)
	}
	var rows []batchSummaryRow
	if err := s.r.SelectContext(ctx, &rows, s.q(query+" GROUP BY b.id ORDER BY b.opened_at, b.id"), args...); err != nil {
		return nil, fmt.Errorf("listing batches: %w", err)
	}
	out := make([]BatchSummary, len(rows))
	for i := range rows {
		refused, err := s.refusalEvents(ctx, rows[i].ID)
		if err != nil {
			return nil, err
		}
		rows[i].Refused = records.CountRefused(refused)
		out[i] = rows[i].summary()
	}
	return out, nil
}

// refusalEvents are a batch's refusal events (a refused claim, a board refused before its inventory check;
// read by the batch's index, as the batch's own events); which of them count, and how often a board
// scanned twice counts, is records.CountRefused's.
func (s *Store) refusalEvents(ctx context.Context, batch string) ([]Event, error) {
	var rows []eventRow
	if err := s.r.SelectContext(ctx, &rows, s.q(`SELECT seq, occurred_at, station, batch, serial, kind, payload, prev_hash, hash
		FROM events WHERE batch = ? AND kind IN (?, ?) ORDER BY seq`), batch, EventClaimRefused, EventBoardRefused); err != nil {
		return nil, fmt.Errorf("reading the refusals of batch %s: %w", batch, err)
	}
	out := make([]Event, len(rows))
	for i := range rows {
		out[i] = *rows[i].event()
	}
	return out, nil
}

func (r *batchSummaryRow) summary() BatchSummary {
	sum := BatchSummary{Batch: r.batch(), Passed: r.Passed, Failed: r.Failed, Stopped: r.Stopped,
		InProgress: r.InProgress, Refused: r.Refused}
	sum.Done = sum.Counts().Done // the one definition of done (records.Counts)
	return sum
}

func (s *Store) getBatchTx(ctx context.Context, tx *txn, id string, lock bool) (*Batch, error) {
	query := "SELECT " + batchColumns + " FROM batches WHERE id = ?"
	if lock {
		query += s.d.forUpdate
	}
	var r batchRow
	err := tx.GetContext(ctx, &r, s.q(query), id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no batch %s; open it first", ErrBatchNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("reading batch %s: %w", id, err)
	}
	b := r.batch()
	return &b, nil
}

// touchStation records a station on first use and when it was last seen.
func (s *Store) touchStation(ctx context.Context, tx *txn, station string, now int64) error {
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO stations (id, created_at, last_seen_at) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at`), station, now, now); err != nil {
		return fmt.Errorf("recording station %s: %w", station, err)
	}
	return nil
}
