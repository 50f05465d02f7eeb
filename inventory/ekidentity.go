package inventory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/tpmline/tpmline/internal/clock"
)

// recomputeEKIdentities sets ek_pub_sha256 of every board whose EK public area is stored to EKPubHash of
// it (migration 0002). An EK public area the station stored but that is no longer a usable key fails the
// migration: the inventory would otherwise hold two kinds of identity.
//
// The audit chain's claim events still carry the old identities, so for every board whose identity the
// migration changed (re-keyed, or cleared by the migration's SQL) it appends a chained
// EventEKIdentityMigrated event, old and new, in the same transaction; the replay accepts exactly that
// mapping (replay.go), so a migrated inventory verifies and an edit made after it still shows. The old
// identity is the one the chain last recorded for the board (its last claim, resume, retry or rework).
func recomputeEKIdentities(ctx context.Context, s *Store, tx *sqlx.Tx) error {
	rows, err := tx.QueryContext(ctx, "SELECT id, serial, batch, ek_public FROM boards ORDER BY id")
	if err != nil {
		return err
	}
	type fix struct {
		id            int64
		serial, batch string
		ek            string // "" when the board has no EK public area (the SQL cleared its identity)
		stored        bool
	}
	var fixes []fix
	for rows.Next() {
		var f fix
		var pub []byte
		if err := rows.Scan(&f.id, &f.serial, &f.batch, &pub); err != nil {
			rows.Close()
			return err
		}
		if pub != nil {
			if f.ek, err = EKPubHash(pub); err != nil {
				rows.Close()
				return fmt.Errorf("board id %d: stored EK public area: %w", f.id, err)
			}
			f.stored = true
		}
		fixes = append(fixes, f)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	t := &txn{Tx: tx, now: s.nowNano(), mono: clock.Now()}
	for _, f := range fixes {
		if f.stored {
			if _, err := tx.ExecContext(ctx, s.q("UPDATE boards SET ek_pub_sha256 = ? WHERE id = ?"), f.ek, f.id); err != nil {
				return fmt.Errorf("board id %d: %w", f.id, err)
			}
		}
		old, err := chainedEK(ctx, s, tx, f.serial)
		if err != nil {
			return fmt.Errorf("board %s: %w", f.serial, err)
		}
		if old == f.ek {
			continue
		}
		payload, _ := json.Marshal(map[string]string{"from_ek_pub_sha256": old, "ek_pub_sha256": f.ek, "migration": "0002"})
		if err := s.appendEventTx(ctx, t, &Event{Kind: EventEKIdentityMigrated, Batch: f.batch, Serial: f.serial, Payload: payload}); err != nil {
			return fmt.Errorf("board %s: %w", f.serial, err)
		}
	}
	return s.flushHead(ctx, t)
}

// chainedEK is the EK identity the audit chain last recorded for serial ("" when none).
func chainedEK(ctx context.Context, s *Store, tx *sqlx.Tx, serial string) (string, error) {
	var payload string
	err := tx.QueryRowContext(ctx, s.q(`SELECT payload FROM events WHERE serial = ? AND kind IN (?, ?, ?, ?)
		ORDER BY seq DESC LIMIT 1`), serial, EventBoardClaimed, EventBoardResumed, EventBoardRetried, EventBoardReworked).Scan(&payload)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading its claim event: %w", err)
	}
	var p struct {
		EK string `json:"ek_pub_sha256"`
	}
	if err := json.Unmarshal([]byte(payload), &p); err != nil {
		return "", fmt.Errorf("its claim event's payload: %w", err)
	}
	return p.EK, nil
}
