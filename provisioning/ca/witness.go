package ca

import (
	"bytes"
	"context"
	"crypto/tls"
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
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		if err := checkHead(ctx, s, tx, h, late); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO ca_witnessed_heads (station, seq, hash, signed_at, received_at, checkpoint, signature)
			VALUES (?, ?, ?, ?, ?, ?, ?)`), h.Station, h.Seq, h.Hash, ms(h.SignedAt), ms(h.ReceivedAt), h.Checkpoint, h.Signature)
		return mapDBError(err)
	})
	if errors.Is(err, errHeadKnown) {
		return nil
	}
	if errors.Is(err, errUnique) {
		// Two requests carried the same seq at once (enrollments read the same head): the loser checks
		// again against the row the winner stored.
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

func checkHead(ctx context.Context, s *Store, tx *sqlx.Tx, h *WitnessedHead, late bool) error {
	var same []string
	if err := tx.SelectContext(ctx, &same, s.q(`SELECT hash FROM ca_witnessed_heads WHERE station = ? AND seq = ?`), h.Station, h.Seq); err != nil {
		return err
	}
	if len(same) > 0 {
		if same[0] == h.Hash {
			return errHeadKnown
		}
		return fmt.Errorf("%w: seq %d was witnessed as %s, now %s", ErrWitnessFork, h.Seq, same[0], h.Hash)
	}
	var ahead []struct {
		Seq      int64 `db:"seq"`
		SignedAt int64 `db:"signed_at"`
	}
	cond := ""
	if late {
		cond = " AND signed_at < ?"
	}
	args := []any{h.Station, h.Seq}
	if late {
		args = append(args, ms(h.SignedAt.Add(-EnrollmentHeadSkew)))
	}
	if err := tx.SelectContext(ctx, &ahead, s.q(`SELECT seq, signed_at FROM ca_witnessed_heads WHERE station = ? AND seq > ?`+cond+`
		ORDER BY seq DESC LIMIT 1`), args...); err != nil {
		return err
	}
	if len(ahead) > 0 {
		if late {
			return fmt.Errorf("%w: seq %d signed %s, over %s after seq %d was signed %s", ErrWitnessRollback, h.Seq,
				h.SignedAt.UTC().Format(time.RFC3339Nano), EnrollmentHeadSkew, ahead[0].Seq, fromMS(ahead[0].SignedAt).UTC().Format(time.RFC3339Nano))
		}
		return fmt.Errorf("%w: seq %d, last witnessed seq %d", ErrWitnessRollback, h.Seq, ahead[0].Seq)
	}
	return nil
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
