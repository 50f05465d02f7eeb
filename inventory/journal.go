package inventory

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tpmline/tpmline/records"
)

// boardEvent is the audit event of a change to board b.
func boardEvent(b *boardRow, kind string, p map[string]any) *Event {
	if p == nil {
		p = map[string]any{}
	}
	p["attempt"] = b.Attempt
	return &Event{Station: b.Station, Batch: b.Batch, Serial: b.Serial, Kind: kind, Payload: jsonPayload(p)}
}

// onActiveBoard runs fn on the locked, in-progress board serial in one transaction.
func (s *Store) onActiveBoard(ctx context.Context, serial, what string, fn func(tx *txn, b *boardRow, now int64) error) error {
	err := s.inTx(ctx, func(tx *txn) error {
		b, err := s.activeBoardTx(ctx, tx, serial)
		if err != nil {
			return err
		}
		return fn(tx, b, tx.now)
	})
	if err != nil {
		return fmt.Errorf("%s for board %s: %w", what, serial, err)
	}
	return nil
}

// op is how the store applies one records.Op: its argument checks and its writes inside the transaction.
type op struct {
	what  string
	check func() error // argument checks, before the transaction
	apply func(ctx context.Context, s *Store, tx *txn, b *boardRow, now int64) error
}

// Journal applies ops, in order, to the in-progress board serial in one transaction: all or none.
func (s *Store) Journal(ctx context.Context, serial string, rops ...records.Op) error {
	ops := make([]op, len(rops))
	for i, r := range rops {
		o, err := compileOp(r)
		if err != nil {
			return err
		}
		ops[i] = o
	}
	return s.journal(ctx, serial, ops...)
}

// Op is records.Op, and the constructors below are records', kept so callers that still say
// inventory.OpKey compile while they move to records.
type Op = records.Op

var (
	OpStepStarted  = records.OpStepStarted
	OpStepFinished = records.OpStepFinished
	OpStepFailed   = records.OpStepFailed
	OpStepRan      = records.OpStepRan
	OpTPMInfo      = records.OpTPMInfo
	OpEK           = records.OpEK
	OpKey          = records.OpKey
	OpCertificate  = records.OpCertificate
	OpProvisioned  = records.OpProvisioned
	OpFailed       = records.OpFailed
)

// compileOp is the one place a records.Op becomes the store's writes.
func compileOp(r records.Op) (op, error) {
	switch r.Kind {
	case records.OpKindStepStarted:
		return opStepStarted(r.Step), nil
	case records.OpKindStepFinished:
		return opStepFinished(r.Step, r.Outcome), nil
	case records.OpKindStepFailed:
		return opStepFailed(r.Step, r.Outcome), nil
	case records.OpKindStepRan:
		return opStepRan(r.Step, r.Outcome, r.Failed), nil
	case records.OpKindTPMInfo:
		return opTPMInfo(r.TPMInfo), nil
	case records.OpKindEK:
		return opEK(r.EKCert, r.EKPub), nil
	case records.OpKindKey:
		return opKey(r.Key), nil
	case records.OpKindCertificate:
		return opCertificate(r.CertKind, r.CertDER), nil
	case records.OpKindProvisioned:
		return opProvisioned(), nil
	case records.OpKindFailed:
		return opFailed(r.Code, r.Text), nil
	}
	return op{}, fmt.Errorf("%w: journal op of unknown kind %d", ErrInvalid, r.Kind)
}

// journal applies ops, in order, to the in-progress board serial in one transaction: all or none.
func (s *Store) journal(ctx context.Context, serial string, ops ...op) error {
	if len(ops) == 0 {
		return nil
	}
	what := ops[0].what
	for i, op := range ops {
		if op.check != nil {
			if err := op.check(); err != nil {
				return err
			}
		}
		if i > 0 {
			what += ", " + op.what
		}
	}
	return s.onActiveBoard(ctx, serial, what, func(tx *txn, b *boardRow, now int64) error {
		for _, op := range ops {
			if err := op.apply(ctx, s, tx, b, now); err != nil {
				return err
			}
		}
		return nil
	})
}

// StepStarted journals that step is about to run its side effect on board serial, and makes it the
// board's current step. It returns the journal entry id.
func (s *Store) StepStarted(ctx context.Context, serial, step string) (int64, error) {
	var id int64
	err := s.journal(ctx, serial, stepStarted(step, &id))
	return id, err
}

// opStepStarted is StepStarted as an Op.
func opStepStarted(step string) op { return stepStarted(step, nil) }

func stepStarted(step string, id *int64) op {
	return op{what: "journaling step " + step, check: func() error { return checkText("step", step, true) },
		apply: func(ctx context.Context, s *Store, tx *txn, b *boardRow, now int64) error {
			var jid int64
			if err := tx.GetContext(ctx, &jid, s.q(`INSERT INTO steps (board_id, attempt, step, phase, started_at)
				VALUES (?, ?, ?, 'started', ?) RETURNING id`), b.ID, b.Attempt, step, now); err != nil {
				return err
			}
			if id != nil {
				*id = jid
			}
			if _, err := tx.ExecContext(ctx, s.q("UPDATE boards SET current_step = ?, updated_at = ? WHERE id = ?"), step, now, b.ID); err != nil {
				return err
			}
			b.CurrentStep = step
			return s.appendEventTx(ctx, tx, boardEvent(b, EventStepStarted, map[string]any{"step": step, "journal_id": jid,
				"started_at": now}))
		}}
}

// StepFinished journals that step completed on board serial.
func (s *Store) StepFinished(ctx context.Context, serial, step string, o StepOutcome) error {
	return s.journal(ctx, serial, opStepFinished(step, o))
}

// StepFailed journals that step failed on board serial. The board stays in progress: the station decides
// whether to retry the step or MarkFailed.
func (s *Store) StepFailed(ctx context.Context, serial, step string, o StepOutcome) error {
	return s.journal(ctx, serial, opStepFailed(step, o))
}

// opStepFinished is StepFinished as an Op.
func opStepFinished(step string, o StepOutcome) op {
	return finishStep(step, PhaseDone, EventStepDone, o)
}

// opStepFailed is StepFailed as an Op.
func opStepFailed(step string, o StepOutcome) op {
	return finishStep(step, PhaseFailed, EventStepFailed, o)
}

// OpStepRan journals a step that already ran (started o.Duration ago and done, or failed, now): the
// station's steps that change nothing durable (reads, transient keys) are journaled once they ran. The
// rows and events are those of OpStepStarted then OpStepFinished (or OpStepFailed), written with one insert
// and one board update instead of two each.
func opStepRan(step string, o StepOutcome, failed bool) op {
	phase, kind := PhaseDone, EventStepDone
	if failed {
		phase, kind = PhaseFailed, EventStepFailed
	}
	done := finishStep(step, phase, kind, o)
	return op{what: "journaling step " + step,
		check: func() error { return errors.Join(checkText("step", step, true), done.check()) },
		apply: func(ctx context.Context, s *Store, tx *txn, b *boardRow, now int64) error {
			started, finished := span(o, tx)
			d := o.Duration
			var jid int64
			if err := tx.GetContext(ctx, &jid, s.q(`INSERT INTO steps (board_id, attempt, step, phase, started_at, finished_at,
				duration_ns, tpm_time_ns, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
				b.ID, b.Attempt, step, phase, started, finished, int64(d), int64(o.TPMTime), o.Detail); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.q("UPDATE boards SET current_step = ?, updated_at = ? WHERE id = ?"), step, now, b.ID); err != nil {
				return err
			}
			b.CurrentStep = step
			if err := s.appendEventTx(ctx, tx, boardEvent(b, EventStepStarted, map[string]any{"step": step, "journal_id": jid,
				"started_at": started})); err != nil {
				return err
			}
			return s.appendEventTx(ctx, tx, boardEvent(b, kind, map[string]any{"step": step, "journal_id": jid,
				"duration_ns": int64(d), "tpm_time_ns": int64(o.TPMTime), "detail": o.Detail,
				"started_at": started, "finished_at": finished}))
		}}
}

func finishStep(step, phase, kind string, o StepOutcome) op {
	return op{what: "journaling step " + step,
		check: func() error {
			if err := checkFreeText("step detail", o.Detail); err != nil {
				return err
			}
			if o.Duration < 0 || o.TPMTime < 0 {
				return fmt.Errorf("%w: negative duration for step %s", ErrInvalid, step)
			}
			return nil
		},
		apply: func(ctx context.Context, s *Store, tx *txn, b *boardRow, now int64) error {
			var open struct {
				ID        int64 `db:"id"`
				StartedAt int64 `db:"started_at"`
			}
			err := tx.GetContext(ctx, &open, s.q(`SELECT id, started_at FROM steps
				WHERE board_id = ? AND attempt = ? AND step = ? AND phase = 'started' ORDER BY id DESC LIMIT 1`), b.ID, b.Attempt, step)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: step %s was not started in attempt %d", ErrInvalid, step, b.Attempt)
			}
			if err != nil {
				return err
			}
			d := o.Duration
			if d == 0 {
				d = time.Duration(now - open.StartedAt)
			}
			// A step whose start was journaled ahead of it (while the TPM finished the step before) gets the
			// time it really began.
			started, finished := open.StartedAt, now
			if !o.Started.IsZero() {
				started, finished = span(o, tx)
				started = max(started, open.StartedAt)
			}
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE steps SET phase = ?, started_at = ?, finished_at = ?, duration_ns = ?,
				tpm_time_ns = ?, detail = ? WHERE id = ?`), phase, started, finished, int64(d), int64(o.TPMTime), o.Detail, open.ID); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.q("UPDATE boards SET updated_at = ? WHERE id = ?"), now, b.ID); err != nil {
				return err
			}
			return s.appendEventTx(ctx, tx, boardEvent(b, kind, map[string]any{"step": step, "journal_id": open.ID,
				"duration_ns": int64(d), "tpm_time_ns": int64(o.TPMTime), "detail": o.Detail,
				"started_at": started, "finished_at": finished}))
		}}
}

// ListSteps returns the journal of board serial, every attempt, in order.
func (s *Store) ListSteps(ctx context.Context, serial string) ([]Step, error) {
	var rows []stepRow
	if err := s.r.SelectContext(ctx, &rows, s.q(`SELECT st.id, st.attempt, st.step, st.phase, st.started_at, st.finished_at,
		st.duration_ns, st.tpm_time_ns, st.detail FROM steps st JOIN boards b ON b.id = st.board_id
		WHERE b.serial = ? ORDER BY st.attempt, st.started_at, st.id`), serial); err != nil {
		return nil, fmt.Errorf("reading the journal of board %s: %w", serial, err)
	}
	out := make([]Step, len(rows))
	for i := range rows {
		out[i] = rows[i].step()
	}
	return out, nil
}

// SetBoardTPMInfo records what the board's TPM reports about itself.
func (s *Store) SetBoardTPMInfo(ctx context.Context, serial string, info TPMInfo) error {
	return s.journal(ctx, serial, opTPMInfo(info))
}

// opTPMInfo is SetBoardTPMInfo as an Op.
func opTPMInfo(info TPMInfo) op {
	return op{what: "recording TPM info",
		check: func() error {
			for _, f := range []struct{ name, v string }{{"TPM manufacturer", info.Manufacturer}, {"TPM vendor", info.Vendor},
				{"TPM firmware", info.Firmware}} {
				if err := checkText(f.name, f.v, false); err != nil {
					return err
				}
			}
			return nil
		},
		apply: func(ctx context.Context, s *Store, tx *txn, b *boardRow, now int64) error {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE boards SET tpm_manufacturer = ?, tpm_vendor = ?, tpm_firmware = ?,
				updated_at = ? WHERE id = ?`), info.Manufacturer, info.Vendor, info.Firmware, now, b.ID); err != nil {
				return err
			}
			return s.appendEventTx(ctx, tx, boardEvent(b, EventBoardTPMInfo, map[string]any{
				"manufacturer": info.Manufacturer, "vendor": info.Vendor, "firmware": info.Firmware}))
		}}
}

// SetBoardEK records the board's EK certificate (may be empty when the TPM has none) and EK public key.
// The public key must hash (EKPubHash) to the EK the board was claimed with.
func (s *Store) SetBoardEK(ctx context.Context, serial string, ekCert, ekPublic []byte) error {
	return s.journal(ctx, serial, opEK(ekCert, ekPublic))
}

// opEK is SetBoardEK as an Op.
func opEK(ekCert, ekPublic []byte) op {
	return op{what: "recording the EK",
		check: func() error {
			if len(ekPublic) == 0 {
				return fmt.Errorf("%w: EK public key is empty", ErrInvalid)
			}
			return nil
		},
		apply: func(ctx context.Context, s *Store, tx *txn, b *boardRow, now int64) error {
			got, err := EKPubHash(ekPublic)
			if err != nil {
				return fmt.Errorf("%w: EK public key: %v", ErrInvalid, err)
			}
			if got != b.EKPubSHA256.String {
				return fmt.Errorf("%w: EK public key hashes to %s but the board was claimed with EK %s", ErrInvalid,
					short(got), short(b.EKPubSHA256.String))
			}
			if _, err := tx.ExecContext(ctx, s.q("UPDATE boards SET ek_cert = ?, ek_public = ?, updated_at = ? WHERE id = ?"),
				nilIfEmpty(ekCert), ekPublic, now, b.ID); err != nil {
				return err
			}
			b.EKPublic = ekPublic
			certSum := sha256.Sum256(ekCert)
			// ek_public_sha256 hashes the stored bytes themselves, whatever EKPubHash is defined over, so the
			// replay can check the ek_public column.
			pubSum := sha256.Sum256(ekPublic)
			p := map[string]any{"ek_pub_sha256": b.EKPubSHA256.String, "ek_cert_len": len(ekCert),
				"ek_public_sha256": hex.EncodeToString(pubSum[:])}
			if len(ekCert) > 0 {
				p["ek_cert_sha256"] = hex.EncodeToString(certSum[:])
			}
			return s.appendEventTx(ctx, tx, boardEvent(b, EventBoardEK, p))
		}}
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// SaveKey records a key created in the board's TPM for the current attempt (again for the same kind
// replaces it: a step re-run after a restart).
func (s *Store) SaveKey(ctx context.Context, serial string, k Key) error {
	return s.journal(ctx, serial, opKey(k))
}

// opKey is SaveKey as an Op.
func opKey(k Key) op {
	return op{what: "saving the " + string(k.Kind) + " key",
		check: func() error {
			if err := checkKind(k.Kind); err != nil {
				return err
			}
			if len(k.Public) == 0 || len(k.Name) == 0 {
				return fmt.Errorf("%w: %s key needs its public area and Name", ErrInvalid, k.Kind)
			}
			return nil
		},
		apply: func(ctx context.Context, s *Store, tx *txn, b *boardRow, now int64) error {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO keys (board_id, attempt, kind, public, handle, name, created_at)
				VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (board_id, attempt, kind) DO UPDATE SET
				public = excluded.public, handle = excluded.handle, name = excluded.name, created_at = excluded.created_at`),
				b.ID, b.Attempt, string(k.Kind), k.Public, int64(k.Handle), k.Name, now); err != nil {
				return err
			}
			tpmtPub := sha256.Sum256(k.Public) // of the TPMT_PUBLIC bytes, not a key identity (EKPubHash is one)
			return s.appendEventTx(ctx, tx, boardEvent(b, EventKeySaved, map[string]any{"kind": string(k.Kind),
				"handle": fmt.Sprintf("%#x", k.Handle), "name": hex.EncodeToString(k.Name),
				"tpmt_public_sha256": hex.EncodeToString(tpmtPub[:])}))
		}}
}

// SaveCertificate records the certificate the CA issued for the board's kind key in the current attempt.
// der must parse as an X.509 certificate; its serial number and notAfter are recorded alongside.
func (s *Store) SaveCertificate(ctx context.Context, serial string, kind KeyKind, der []byte) (*Certificate, error) {
	var c Certificate
	if err := s.journal(ctx, serial, certificateOp(kind, der, &c)); err != nil {
		return nil, err
	}
	return &c, nil
}

// opCertificate is SaveCertificate as an Op.
func opCertificate(kind KeyKind, der []byte) op { return certificateOp(kind, der, nil) }

func certificateOp(kind KeyKind, der []byte, out *Certificate) op {
	var cert *x509.Certificate
	return op{what: "saving the " + string(kind) + " certificate",
		check: func() (err error) {
			if err := checkKind(kind); err != nil {
				return err
			}
			if cert, err = x509.ParseCertificate(der); err != nil {
				return fmt.Errorf("%w: %s certificate does not parse: %v", ErrInvalid, kind, err)
			}
			return nil
		},
		apply: func(ctx context.Context, s *Store, tx *txn, b *boardRow, now int64) error {
			c := Certificate{Kind: kind, DER: der, SerialHex: hex.EncodeToString(cert.SerialNumber.Bytes()),
				NotAfter: cert.NotAfter.UTC(), Attempt: b.Attempt, CreatedAt: fromNano(now)}
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO certificates (board_id, attempt, kind, der, serial_hex, not_after, created_at)
				VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (board_id, attempt, kind) DO UPDATE SET
				der = excluded.der, serial_hex = excluded.serial_hex, not_after = excluded.not_after, created_at = excluded.created_at`),
				b.ID, b.Attempt, string(kind), der, c.SerialHex, c.NotAfter.Unix(), now); err != nil {
				return err
			}
			if out != nil {
				*out = c
			}
			sum := sha256.Sum256(der)
			return s.appendEventTx(ctx, tx, boardEvent(b, EventCertSaved, map[string]any{"kind": string(kind),
				"serial_hex": c.SerialHex, "not_after": c.NotAfter.Format(time.RFC3339), "sha256": hex.EncodeToString(sum[:])}))
		}}
}

// ListKeys returns the keys of board serial, every attempt, oldest first.
func (s *Store) ListKeys(ctx context.Context, serial string) ([]Key, error) {
	var rows []keyRow
	if err := s.r.SelectContext(ctx, &rows, s.q(`SELECT k.kind, k.public, k.handle, k.name, k.attempt, k.created_at
		FROM keys k JOIN boards b ON b.id = k.board_id WHERE b.serial = ? ORDER BY k.attempt, k.kind`), serial); err != nil {
		return nil, fmt.Errorf("reading the keys of board %s: %w", serial, err)
	}
	out := make([]Key, len(rows))
	for i, r := range rows {
		out[i] = Key{Kind: KeyKind(r.Kind), Public: r.Public, Handle: uint32(r.Handle), Name: r.Name,
			Attempt: r.Attempt, CreatedAt: fromNano(r.CreatedAt)}
	}
	return out, nil
}

// ListCertificates returns the certificates of board serial, every attempt, oldest first.
func (s *Store) ListCertificates(ctx context.Context, serial string) ([]Certificate, error) {
	var rows []certRow
	if err := s.r.SelectContext(ctx, &rows, s.q(`SELECT c.kind, c.der, c.serial_hex, c.not_after, c.attempt, c.created_at
		FROM certificates c JOIN boards b ON b.id = c.board_id WHERE b.serial = ? ORDER BY c.attempt, c.kind`), serial); err != nil {
		return nil, fmt.Errorf("reading the certificates of board %s: %w", serial, err)
	}
	out := make([]Certificate, len(rows))
	for i, r := range rows {
		out[i] = Certificate{Kind: KeyKind(r.Kind), DER: r.DER, SerialHex: r.SerialHex,
			NotAfter: time.Unix(r.NotAfter, 0).UTC(), Attempt: r.Attempt, CreatedAt: fromNano(r.CreatedAt)}
	}
	return out, nil
}

// MarkProvisioned records board serial as provisioned. It refuses (ErrIncomplete) unless the current
// attempt has both keys and both certificates recorded and the EK public key is on record.
func (s *Store) MarkProvisioned(ctx context.Context, serial string) (*Board, error) {
	var out *Board
	if err := s.journal(ctx, serial, provisionedOp(&out)); err != nil {
		return nil, err
	}
	return out, nil
}

// opProvisioned is MarkProvisioned as an Op.
func opProvisioned() op { return provisionedOp(nil) }

func provisionedOp(out **Board) op {
	return op{what: "marking provisioned",
		apply: func(ctx context.Context, s *Store, tx *txn, b *boardRow, now int64) error {
			var missing []string
			if len(b.EKPublic) == 0 {
				missing = append(missing, "EK public key")
			}
			for _, t := range []struct{ table, what string }{{"keys", "key"}, {"certificates", "certificate"}} {
				var kinds []string
				if err := tx.SelectContext(ctx, &kinds, s.q("SELECT kind FROM "+t.table+" WHERE board_id = ? AND attempt = ?"),
					b.ID, b.Attempt); err != nil {
					return err
				}
				for _, k := range []KeyKind{KindIAK, KindIDevID} {
					if !contains(kinds, string(k)) {
						missing = append(missing, k.Display()+" "+t.what)
					}
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("%w: attempt %d has no %s; finish those steps first", ErrIncomplete, b.Attempt, strings.Join(missing, ", "))
			}
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE boards SET state = 'provisioned', reason_code = '', reason_text = '',
				updated_at = ? WHERE id = ?`), now, b.ID); err != nil {
				return err
			}
			b.State, b.UpdatedAt = string(StateProvisioned), now
			if out != nil {
				*out = b.board()
			}
			return s.appendEventTx(ctx, tx, boardEvent(b, EventBoardProvisioned, map[string]any{"ek_pub_sha256": b.EKPubSHA256.String}))
		}}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// MarkFailed ends the board's attempt as failed with a reason code (machine-readable) and text (for the
// operator). A later ClaimBoard retries it.
func (s *Store) MarkFailed(ctx context.Context, serial, code, text string) error {
	return s.journal(ctx, serial, opFailed(code, text))
}

// opFailed is MarkFailed as an Op.
func opFailed(code, text string) op {
	return op{what: "marking failed",
		check: func() error {
			if err := checkText("reason code", code, true); err != nil {
				return err
			}
			return checkFreeText("reason text", text)
		},
		apply: func(ctx context.Context, s *Store, tx *txn, b *boardRow, now int64) error {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE boards SET state = 'failed', reason_code = ?, reason_text = ?,
				updated_at = ? WHERE id = ?`), code, text, now, b.ID); err != nil {
				return err
			}
			b.State = string(StateFailed)
			return s.appendEventTx(ctx, tx, boardEvent(b, EventBoardFailed, map[string]any{"reason_code": code,
				"reason_text": text, "step": b.CurrentStep}))
		}}
}

// MarkStopped quarantines board serial, whatever its state (a suspected clone, a QA hold): only a
// rework claims it again.
func (s *Store) MarkStopped(ctx context.Context, serial, code, text string) error {
	if err := checkText("reason code", code, true); err != nil {
		return err
	}
	if err := checkFreeText("reason text", text); err != nil {
		return err
	}
	err := s.inTx(ctx, func(tx *txn) error {
		b, err := s.boardTx(ctx, tx, "serial = ?", serial)
		if err != nil {
			return err
		}
		if b == nil {
			return fmt.Errorf("%w: no board %s", ErrBoardNotFound, serial)
		}
		now := tx.now
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE boards SET state = 'stopped', reason_code = ?, reason_text = ?,
			updated_at = ? WHERE id = ?`), code, text, now, b.ID); err != nil {
			return err
		}
		return s.appendEventTx(ctx, tx, boardEvent(b, EventBoardStopped, map[string]any{"reason_code": code,
			"reason_text": text, "previous_state": b.State, "step": b.CurrentStep}))
	})
	if err != nil {
		return fmt.Errorf("stopping board %s: %w", serial, err)
	}
	return nil
}

// MaxRetireReason bounds the reason given for an RMA or a deprovision.
const MaxRetireReason = 256

// RetireBoard takes a board out of service after the line: kind is EventBoardRMA (returned for repair)
// or EventBoardDeprovisioned (retired). The board is stopped with reason code records.ReasonRMA or
// records.ReasonDeprovisioned and the operator's reason as its text, in one event by station; a rework
// claim (same serial, same EK) provisions it again. A board in progress is refused: its station finishes
// or stops it first.
func (s *Store) RetireBoard(ctx context.Context, serial, station, kind, reason string) (*Board, error) {
	code := map[string]string{EventBoardRMA: records.ReasonRMA, EventBoardDeprovisioned: records.ReasonDeprovisioned}[kind]
	if code == "" {
		return nil, fmt.Errorf("%w: %q is not a way to retire a board", ErrInvalid, kind)
	}
	if err := checkText("station", station, true); err != nil {
		return nil, err
	}
	// The reason is typed by an operator and printed on screens and reports: one line of printable text.
	if strings.TrimSpace(reason) == "" || len(reason) > MaxRetireReason || !utf8.ValidString(reason) ||
		strings.IndexFunc(reason, unicode.IsControl) >= 0 {
		return nil, fmt.Errorf("%w: the reason for board %s must be one line of printable text, 1 to %d bytes", ErrInvalid, serial, MaxRetireReason)
	}
	var out *Board
	err := s.inTx(ctx, func(tx *txn) error {
		b, err := s.boardTx(ctx, tx, "serial = ?", serial)
		if err != nil {
			return err
		}
		if b == nil {
			return fmt.Errorf("%w: no board %s in this inventory; check the serial", ErrBoardNotFound, serial)
		}
		if b.State == string(StateInProgress) {
			return fmt.Errorf("%w: board %s is in progress at %s slot %d; let it finish or stop it first",
				ErrBoardInProgressElsewhere, serial, b.Station, b.Slot)
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE boards SET state = 'stopped', reason_code = ?, reason_text = ?,
			updated_at = ? WHERE id = ?`), code, reason, tx.now, b.ID); err != nil {
			return err
		}
		ev := boardEvent(b, kind, map[string]any{"reason_code": code, "reason_text": reason, "previous_state": b.State,
			"previous_reason_code": b.ReasonCode})
		ev.Station = station
		if err := s.appendEventTx(ctx, tx, ev); err != nil {
			return err
		}
		r, err := s.boardTx(ctx, tx, "id = ?", b.ID)
		if err != nil {
			return err
		}
		out = r.board()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("retiring board %s: %w", serial, err)
	}
	return out, nil
}
