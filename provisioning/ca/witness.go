package ca

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/reports/signed"
)

// Witness sentinels of the store.
var (
	// ErrWitnessFork: the station already had a different hash witnessed at this seq; its chain was
	// rewritten since.
	ErrWitnessFork = errors.New("a different chain head is witnessed at this seq")
	// ErrWitnessRollback: the checkpoint is behind the station's last witnessed head; its chain went
	// back (a cut tail, an older database put back).
	ErrWitnessRollback = errors.New("checkpoint is behind the last witnessed head")
)

// WitnessedHead is one stored checkpoint.
type WitnessedHead struct {
	Station    string
	Seq        int64
	Hash       string
	SignedAt   time.Time
	ReceivedAt time.Time
	Checkpoint []byte
	Signature  []byte
}

// AddWitnessedHead stores h unless it contradicts what the station had witnessed before: the same seq
// with another hash (ErrWitnessFork) or a seq below the highest (ErrWitnessRollback). The same head again
// is accepted and changes nothing.
func (s *Store) AddWitnessedHead(ctx context.Context, h *WitnessedHead) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		var last struct {
			Seq  int64  `db:"seq"`
			Hash string `db:"hash"`
		}
		err := tx.GetContext(ctx, &last, s.q(`SELECT seq, hash FROM ca_witnessed_heads WHERE station = ?
			ORDER BY seq DESC LIMIT 1`), h.Station)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case last.Seq == h.Seq && last.Hash == h.Hash:
			return nil
		case last.Seq == h.Seq:
			return fmt.Errorf("%w: seq %d was witnessed as %s, now %s", ErrWitnessFork, h.Seq, last.Hash, h.Hash)
		case h.Seq < last.Seq:
			return fmt.Errorf("%w: seq %d, last witnessed seq %d", ErrWitnessRollback, h.Seq, last.Seq)
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO ca_witnessed_heads (station, seq, hash, signed_at, received_at, checkpoint, signature)
			VALUES (?, ?, ?, ?, ?, ?, ?)`), h.Station, h.Seq, h.Hash, ms(h.SignedAt), ms(h.ReceivedAt), h.Checkpoint, h.Signature)
		return mapDBError(err)
	})
}

// WitnessedHeads returns station's heads, highest seq first, at most n.
func (s *Store) WitnessedHeads(ctx context.Context, station string, n int) ([]WitnessedHead, error) {
	var rows []struct {
		Seq        int64  `db:"seq"`
		Hash       string `db:"hash"`
		SignedAt   int64  `db:"signed_at"`
		ReceivedAt int64  `db:"received_at"`
		Checkpoint []byte `db:"checkpoint"`
		Signature  []byte `db:"signature"`
	}
	if err := s.db.SelectContext(ctx, &rows, s.q(`SELECT seq, hash, signed_at, received_at, checkpoint, signature
		FROM ca_witnessed_heads WHERE station = ? ORDER BY seq DESC LIMIT ?`), station, n); err != nil {
		return nil, fmt.Errorf("reading the witnessed heads of %s: %w", station, err)
	}
	out := make([]WitnessedHead, len(rows))
	for i, r := range rows {
		out[i] = WitnessedHead{Station: station, Seq: r.Seq, Hash: r.Hash, SignedAt: fromMS(r.SignedAt),
			ReceivedAt: fromMS(r.ReceivedAt), Checkpoint: r.Checkpoint, Signature: r.Signature}
	}
	return out, nil
}

// Witness takes a station's checkpoint (POST provisioning.PathWitness) and answers the station's heads.
// The checks, in order, each a refusal with nothing stored:
//
//   - the request has both a checkpoint and a signature, or neither (neither only lists);
//   - the checkpoint is a canonical provisioning.Checkpoint body (format line, positive seq, 64-digit
//     lowercase hex hash, RFC 3339 time);
//   - it names the station the TLS client certificate names;
//   - the signature is a valid reports/signed signature over the body;
//   - the signing certificate is the TLS client certificate itself, so only that station's key signs
//     its heads;
//   - the head does not contradict an earlier one of the station (ErrWitnessFork, ErrWitnessRollback).
func (v *Verifier) Witness(ctx context.Context, station string, cs *tls.ConnectionState, req *provisioning.WitnessRequest) (*provisioning.WitnessResponse, error) {
	invalid := func(format string, a ...any) error {
		return provisioning.Errorf(provisioning.CodeCheckpointInvalid, format, a...)
	}
	if (len(req.Checkpoint) == 0) != (len(req.Signature) == 0) {
		return nil, provisioning.Errorf(provisioning.CodeBadRequest, "a witness request carries a checkpoint and its signature, or neither")
	}
	if len(req.Checkpoint) > 0 {
		cp, err := provisioning.ParseCheckpoint(req.Checkpoint)
		if err != nil {
			return nil, invalid("%s", printable(err.Error()))
		}
		if cp.Station != station {
			return nil, invalid("the checkpoint is station %s's; this connection is station %s's", printable(cp.Station), station)
		}
		ver, err := signed.Verify(req.Checkpoint, req.Signature, nil)
		if err != nil {
			return nil, invalid("the checkpoint's signature does not verify: %s", printable(err.Error()))
		}
		if cs == nil || len(cs.PeerCertificates) == 0 || !bytes.Equal(ver.Signer().Raw, cs.PeerCertificates[0].Raw) {
			return nil, invalid("the checkpoint is not signed with this station's client certificate")
		}
		err = v.Store.AddWitnessedHead(ctx, &WitnessedHead{Station: station, Seq: cp.Seq, Hash: cp.Hash, SignedAt: cp.Time,
			ReceivedAt: v.now(), Checkpoint: req.Checkpoint, Signature: req.Signature})
		switch {
		case errors.Is(err, ErrWitnessFork), errors.Is(err, ErrWitnessRollback):
			v.log().Warn("witness refused", "station", station, "seq", cp.Seq, "err", err)
			return nil, provisioning.Errorf(provisioning.CodeWitnessConflict, "%s", printable(err.Error()))
		case err != nil:
			return nil, err
		}
	}
	heads, err := v.Store.WitnessedHeads(ctx, station, provisioning.MaxWitnessedHeads)
	if err != nil {
		return nil, err
	}
	res := &provisioning.WitnessResponse{Heads: []provisioning.WitnessedHead{}}
	for _, h := range heads {
		res.Heads = append(res.Heads, provisioning.WitnessedHead{Seq: h.Seq, Hash: h.Hash, SignedAt: h.SignedAt, ReceivedAt: h.ReceivedAt})
	}
	return res, nil
}
