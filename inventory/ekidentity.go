package inventory

import (
	"context"
	"database/sql"
	"fmt"
)

// recomputeEKIdentities sets ek_pub_sha256 of every board whose EK public area is stored to EKPubHash of
// it (migration 0002). An EK public area the station stored but that is no longer a usable key fails the
// migration: the inventory would otherwise hold two kinds of identity.
func recomputeEKIdentities(ctx context.Context, s *Store, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, "SELECT id, ek_public FROM boards WHERE ek_public IS NOT NULL")
	if err != nil {
		return err
	}
	type fix struct {
		id int64
		ek string
	}
	var fixes []fix
	for rows.Next() {
		var id int64
		var pub []byte
		if err := rows.Scan(&id, &pub); err != nil {
			rows.Close()
			return err
		}
		ek, err := EKPubHash(pub)
		if err != nil {
			rows.Close()
			return fmt.Errorf("board id %d: stored EK public area: %w", id, err)
		}
		fixes = append(fixes, fix{id, ek})
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, f := range fixes {
		if _, err := tx.ExecContext(ctx, s.q("UPDATE boards SET ek_pub_sha256 = ? WHERE id = ?"), f.ek, f.id); err != nil {
			return fmt.Errorf("board id %d: %w", f.id, err)
		}
	}
	return nil
}
