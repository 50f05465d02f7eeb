package ca

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"math"
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
	return s.addHead(ctx, h, false)
}

// EnrollmentHeadSkew is how much later than a witnessed head an enrollment's head behind it may be
// signed and still count as late rather than as a chain gone back (AddEnrollmentHead).
const EnrollmentHeadSkew = time.Minute

// AddEnrollmentHead stores h, a head sent with an enrollment, under the same fork check, but with the
// rollback check an enrollment's head allows: a station enrolls several boards at once (and several
// station processes may share one inventory), so the head read for one can reach the CA after a later
// head sent for another, and reading a head and stamping its time are not one step. A head behind a
// witnessed one is taken when it was signed no more than EnrollmentHeadSkew after that one (it was read
// before it and arrived late); signed later still, it is a chain gone back (ErrWitnessRollback). A chain
// put back within the skew is not refused here; `station audit verify` against the CA still finds it.
func (s *Store) AddEnrollmentHead(ctx context.Context, h *WitnessedHead) error {
	return s.addHead(ctx, h, true)
}

func (s *Store) addHead(ctx context.Context, h *WitnessedHead, late bool) error {
	if late && s.engine == "postgres" {
		return s.addEnrollmentHeadPG(ctx, h)
	}
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		if err := checkHead(ctx, s, tx, h, late); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q(qHeadInsert), h.Station, h.Seq, h.Hash, ms(h.SignedAt), ms(h.ReceivedAt), h.Checkpoint, h.Signature)
		return mapDBError(err)
	})
	return s.afterHead(ctx, h, late, err)
}

// addEnrollmentHeadPG is addHead for an enrollment's head on PostgreSQL: checks and insert in one statement
// (qPGEnrollmentHead), one round trip and no wait for the WAL flush instead of a transaction of five
// round trips and a synchronous commit on round 1 of every enrollment.
func (s *Store) addEnrollmentHeadPG(ctx context.Context, h *WitnessedHead) error {
	var row struct {
		headConflict
		Inserted bool `db:"inserted"`
	}
	err := s.db.GetContext(ctx, &row, s.q(qPGEnrollmentHead), h.Station, h.Seq, h.Hash, ms(h.SignedAt), ms(h.ReceivedAt),
		h.Checkpoint, h.Signature, rollbackBound(h, true))
	if err == nil && !row.Inserted {
		err = row.verdict(h, true)
		if err == nil {
			err = fmt.Errorf("storing the witnessed head at seq %d: nothing stored and no conflict", h.Seq)
		}
	}
	return s.afterHead(ctx, h, true, mapDBError(err))
}

// afterHead finishes addHead: the same head again is nothing to do, and the loser of two requests that
// carried the same seq at once (enrollments read the same head) checks again against the winner's row.
func (s *Store) afterHead(ctx context.Context, h *WitnessedHead, late bool, err error) error {
	if errors.Is(err, errHeadKnown) {
		return nil
	}
	if errors.Is(err, errUnique) {
		err = s.inTx(ctx, func(tx *sqlx.Tx) error { return checkHead(ctx, s, tx, h, late) })
		if errors.Is(err, errHeadKnown) {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("storing the witnessed head at seq %d raced another request; retry", h.Seq)
		}
	}
	return err
}

// errHeadKnown: the very head is already stored; nothing to do.
var errHeadKnown = errors.New("head already witnessed")

// headConflict is what the store holds against a new head: the hash witnessed at its seq, and the highest
// head above it that the rollback rule counts (rollbackBound).
type headConflict struct {
	SameHash      sql.NullString `db:"same_hash"`
	AheadSeq      sql.NullInt64  `db:"ahead_seq"`
	AheadSignedAt sql.NullInt64  `db:"ahead_signed_at"`
}

// rollbackBound: a head above h counts against it when it was signed before this (milliseconds). For a
// head sent to the witness every head above counts; for an enrollment's, only one signed more than
// EnrollmentHeadSkew before h.
func rollbackBound(h *WitnessedHead, late bool) int64 {
	if !late {
		return math.MaxInt64
	}
	return ms(h.SignedAt.Add(-EnrollmentHeadSkew))
}

// verdict is the witness rule over what the store holds: the very head again (errHeadKnown), another hash
// at its seq (ErrWitnessFork), a counted head above it (ErrWitnessRollback), or nil.
func (c *headConflict) verdict(h *WitnessedHead, late bool) error {
	if c.SameHash.Valid {
		if c.SameHash.String == h.Hash {
			return errHeadKnown
		}
		return fmt.Errorf("%w: seq %d was witnessed as %s, now %s", ErrWitnessFork, h.Seq, c.SameHash.String, h.Hash)
	}
	if c.AheadSeq.Valid {
		if late {
			return fmt.Errorf("%w: seq %d signed %s, over %s after seq %d was signed %s", ErrWitnessRollback, h.Seq,
				h.SignedAt.UTC().Format(time.RFC3339Nano), EnrollmentHeadSkew, c.AheadSeq.Int64, fromMS(c.AheadSignedAt.Int64).UTC().Format(time.RFC3339Nano))
		}
		return fmt.Errorf("%w: seq %d, last witnessed seq %d", ErrWitnessRollback, h.Seq, c.AheadSeq.Int64)
	}
	return nil
}

func checkHead(ctx context.Context, s *Store, tx *sqlx.Tx, h *WitnessedHead, late bool) error {
	var c headConflict
	if err := tx.GetContext(ctx, &c, s.q(qHeadConflict), h.Station, h.Seq, h.Station, h.Seq, rollbackBound(h, late)); err != nil {
		return err
	}
	return c.verdict(h, late)
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
	if (len(req.Checkpoint) == 0) != (len(req.Signature) == 0) {
		return nil, provisioning.Errorf(provisioning.CodeBadRequest, "a witness request carries a checkpoint and its signature, or neither")
	}
	if len(req.Checkpoint) > 0 {
		if err := v.takeHead(ctx, station, cs, req, false); err != nil {
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

// takeHead checks a signed checkpoint (the checks Witness lists) and stores it, under the enrollment
// rollback rule (Store.AddEnrollmentHead) when late.
func (v *Verifier) takeHead(ctx context.Context, station string, cs *tls.ConnectionState, req *provisioning.WitnessRequest, late bool) error {
	invalid := func(format string, a ...any) error {
		return provisioning.Errorf(provisioning.CodeCheckpointInvalid, format, a...)
	}
	cp, err := provisioning.ParseCheckpoint(req.Checkpoint)
	if err != nil {
		return invalid("%s", printable(err.Error()))
	}
	if cp.Station != station {
		return invalid("the checkpoint is station %s's; this connection is station %s's", printable(cp.Station), station)
	}
	ver, err := signed.Verify(req.Checkpoint, req.Signature, nil)
	if err != nil {
		return invalid("the checkpoint's signature does not verify: %s", printable(err.Error()))
	}
	if cs == nil || len(cs.PeerCertificates) == 0 || !bytes.Equal(ver.Signer().Raw, cs.PeerCertificates[0].Raw) {
		return invalid("the checkpoint is not signed with this station's client certificate")
	}
	h := &WitnessedHead{Station: station, Seq: cp.Seq, Hash: cp.Hash, SignedAt: cp.Time,
		ReceivedAt: v.now(), Checkpoint: req.Checkpoint, Signature: req.Signature}
	if late {
		err = v.Store.AddEnrollmentHead(ctx, h)
	} else {
		err = v.Store.AddWitnessedHead(ctx, h)
	}
	switch {
	case errors.Is(err, ErrWitnessFork), errors.Is(err, ErrWitnessRollback):
		v.log().Warn("witness refused", "station", station, "seq", cp.Seq, "err", err)
		return provisioning.Errorf(provisioning.CodeWitnessConflict, "%s", printable(err.Error()))
	case err != nil:
		return v.internal("storing the witnessed head", err)
	}
	return nil
}

// EnrollmentHead takes the audit chain head an enrollment request carries (provisioning.EnrollRequest
// AuditHead), before the enrollment itself is checked: the checks are Witness's, with the enrollment
// rollback rule of Store.AddEnrollmentHead, and a refused head refuses the enrollment (a station whose
// chain forked or went back is issued nothing more until its operator has looked). A request without a
// head, from a station built before heads rode with enrollments, is let through unless
// RequireAuditHead is set.
func (v *Verifier) EnrollmentHead(ctx context.Context, station string, cs *tls.ConnectionState, req *provisioning.EnrollRequest) error {
	head := req.AuditHead
	if head == nil || (len(head.Checkpoint) == 0 && len(head.Signature) == 0) {
		if v.RequireAuditHead {
			return provisioning.Errorf(provisioning.CodeCheckpointInvalid, "board %q: this CA requires the station's signed audit chain head with each enrollment; upgrade the station", printable(req.Serial))
		}
		return nil
	}
	if len(head.Checkpoint) == 0 || len(head.Signature) == 0 {
		return provisioning.Errorf(provisioning.CodeBadRequest, "board %q: audit_head carries a checkpoint and its signature, or is left out", printable(req.Serial))
	}
	if len(head.Checkpoint)+len(head.Signature) > provisioning.MaxWitnessRequestBytes {
		return provisioning.Errorf(provisioning.CodeTooLarge, "board %q: audit_head is over %d bytes", printable(req.Serial), provisioning.MaxWitnessRequestBytes)
	}
	return v.takeHead(ctx, station, cs, head, true)
}
