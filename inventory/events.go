package inventory

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"

	"github.com/tpmline/tpmline/records"
)

// Event kinds: see package records.
const (
	EventBatchOpened        = records.EventBatchOpened
	EventBatchClosed        = records.EventBatchClosed
	EventBoardClaimed       = records.EventBoardClaimed
	EventBoardResumed       = records.EventBoardResumed
	EventBoardRetried       = records.EventBoardRetried
	EventBoardReworked      = records.EventBoardReworked
	EventClaimRefused       = records.EventClaimRefused
	EventBoardRefused       = records.EventBoardRefused
	EventBoardTPMInfo       = records.EventBoardTPMInfo
	EventBoardEK            = records.EventBoardEK
	EventStepStarted        = records.EventStepStarted
	EventStepDone           = records.EventStepDone
	EventStepFailed         = records.EventStepFailed
	EventKeySaved           = records.EventKeySaved
	EventCertSaved          = records.EventCertSaved
	EventBoardProvisioned   = records.EventBoardProvisioned
	EventBoardFailed        = records.EventBoardFailed
	EventBoardStopped       = records.EventBoardStopped
	EventEKListExported     = records.EventEKListExported
	EventEKListPushed       = records.EventEKListPushed
	EventBoardRMA           = records.EventBoardRMA
	EventBoardDeprovisioned = records.EventBoardDeprovisioned
	EventEKIdentityMigrated = records.EventEKIdentityMigrated
)

// storeKinds are the kinds only the store appends, each with the row change it records.
var storeKinds = map[string]bool{
	EventBatchOpened: true, EventBatchClosed: true, EventBoardClaimed: true, EventBoardResumed: true,
	EventBoardRetried: true, EventBoardReworked: true, EventClaimRefused: true, EventBoardTPMInfo: true,
	EventBoardEK: true, EventStepStarted: true, EventStepDone: true, EventStepFailed: true, EventKeySaved: true,
	EventCertSaved: true, EventBoardProvisioned: true, EventBoardFailed: true, EventBoardStopped: true,
	EventEKListExported: true, EventEKListPushed: true, EventBoardRMA: true, EventBoardDeprovisioned: true,
	EventEKIdentityMigrated: true,
}

// GenesisHash is the prev_hash of the first event.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// eventHashDomain separates these hashes from any other SHA-256 use.
const eventHashDomain = "tpmline/inventory/event/v1"

// EventHash is the hash the chain stores for e: SHA-256 over a canonical encoding of (prev_hash, seq,
// time, station, batch, serial, kind, payload). Integers are 8-byte big-endian (time in unix nanoseconds,
// UTC); every string is preceded by its length as a 4-byte big-endian integer, so no two different
// events encode alike. Reports use it to check an exported chain without the database.
func EventHash(e *Event) string {
	h := sha256.New()
	writeString(h, eventHashDomain)
	writeString(h, e.PrevHash)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(e.Seq))
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(e.Time.UTC().UnixNano()))
	h.Write(n[:])
	for _, s := range []string{e.Station, e.Batch, e.Serial, e.Kind, string(e.Payload)} {
		writeString(h, s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func writeString(h hash.Hash, s string) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(s)))
	h.Write(n[:])
	h.Write([]byte(s))
}

// jsonPayload marshals the store's own event payloads (map keys come out sorted).
func jsonPayload(v map[string]any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		// Only strings, numbers and bools go in; keep the event rather than lose it.
		return json.RawMessage(fmt.Sprintf(`{"marshal_error":%q}`, err.Error()))
	}
	return b
}

// AppendEvent adds e to the audit chain and returns it with Seq, Time, PrevHash and Hash filled in.
// Kind is required; Payload must be JSON (stored compacted, {} when empty).
func (s *Store) AppendEvent(ctx context.Context, e Event) (*Event, error) {
	if err := checkText("event kind", e.Kind, true); err != nil {
		return nil, err
	}
	if storeKinds[e.Kind] {
		// The replay takes these as the store's own writes; appended from outside they would be state
		// without a row behind it.
		return nil, fmt.Errorf("%w: event kind %s is written by the inventory itself", ErrInvalid, e.Kind)
	}
	for name, v := range map[string]string{"event station": e.Station, "event batch": e.Batch, "event serial": e.Serial} {
		if err := checkText(name, v, false); err != nil {
			return nil, err
		}
	}
	var out *Event
	err := s.inTx(ctx, func(tx *txn) error {
		ev := e
		if err := s.appendEventTx(ctx, tx, &ev); err != nil {
			return err
		}
		out = &ev
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("appending %s event: %w", e.Kind, err)
	}
	return out, nil
}

// appendEventTx assigns e the next seq after the chain head, links and hashes it, and moves the head, all
// inside tx. The head row is locked (PostgreSQL) or the writer is exclusive (SQLite), so appenders on every
// station queue here; callers take this lock last, after their own rows, so lock order never cycles.
func (s *Store) appendEventTx(ctx context.Context, tx *txn, e *Event) error {
	if len(bytes.TrimSpace(e.Payload)) == 0 {
		e.Payload = json.RawMessage("{}")
	} else {
		var buf bytes.Buffer
		if err := json.Compact(&buf, e.Payload); err != nil {
			return fmt.Errorf("%w: event payload is not JSON: %v", ErrInvalid, err)
		}
		e.Payload = buf.Bytes()
	}
	if tx.head == nil {
		var head chainHead
		if err := tx.GetContext(ctx, &head, s.q("SELECT seq, hash FROM chain_head WHERE id = 1"+s.d.forUpdate)); err != nil {
			return fmt.Errorf("reading the audit chain head: %w", err)
		}
		tx.head = &head
	}
	head := tx.head
	if e.Time.IsZero() {
		e.Time = fromNano(tx.now)
	}
	e.Time = fromNano(e.Time.UTC().UnixNano())
	e.Seq = head.Seq + 1
	e.PrevHash = head.Hash
	e.Hash = EventHash(e)
	// Written with the transaction's other events right before commit (flushHead).
	tx.events = append(tx.events, e)
	head.Seq, head.Hash, tx.headMoved = e.Seq, e.Hash, true
	return nil
}

// EventFilter selects events; empty fields match everything.
type EventFilter struct {
	Batch  string
	Serial string
}

// ListEvents calls fn for each matching event in seq order, streaming, and stops at the first error fn
// returns (which it returns).
func (s *Store) ListEvents(ctx context.Context, f EventFilter, fn func(*Event) error) error {
	query := "SELECT seq, occurred_at, station, batch, serial, kind, payload, prev_hash, hash FROM events WHERE 1 = 1"
	var args []any
	if f.Batch != "" {
		query += " AND batch = ?"
		args = append(args, f.Batch)
	}
	if f.Serial != "" {
		query += " AND serial = ?"
		args = append(args, f.Serial)
	}
	rows, err := s.r.QueryxContext(ctx, s.q(query+" ORDER BY seq"), args...)
	if err != nil {
		return fmt.Errorf("listing events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r eventRow
		if err := rows.StructScan(&r); err != nil {
			return fmt.Errorf("reading event: %w", err)
		}
		if err := fn(r.event()); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing events: %w", err)
	}
	return nil
}

// ChainStatus is records.ChainStatus.
type ChainStatus = records.ChainStatus

// VerifyChain walks the whole audit chain in seq order and checks, for every event: that its seq follows
// the one before (a deleted event leaves a gap), that its prev_hash equals the hash of the event before
// (GenesisHash for seq 1), and that its hash equals EventHash over its stored columns (an edited row no
// longer matches). Finally the last event must be the recorded chain head (a removed tail shows). The
// first broken link is returned as a *ChainError naming the seq. The whole chain is walked even for one
// batch, because a batch's events are links of the one chain; batch only picks what Head and Count
// describe ("" for the whole chain).
func (s *Store) VerifyChain(ctx context.Context, batch string) (ChainStatus, error) {
	return s.walkChain(ctx, batch, nil)
}

// walkChain is VerifyChain calling fn with every event once its links are checked, in seq order; the
// replay folds the chain through it, so the chain is read once for both.
func (s *Store) walkChain(ctx context.Context, batch string, fn func(*Event) error) (ChainStatus, error) {
	var head struct {
		Seq  int64  `db:"seq"`
		Hash string `db:"hash"`
	}
	// The head is read first: events appended while we walk are past it and are left out.
	if err := s.r.GetContext(ctx, &head, "SELECT seq, hash FROM chain_head WHERE id = 1"); err != nil {
		return ChainStatus{}, fmt.Errorf("reading the audit chain head: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT seq, occurred_at, station, batch, serial, kind, payload, prev_hash, hash
		FROM events WHERE seq <= ? ORDER BY seq`), head.Seq)
	if err != nil {
		return ChainStatus{}, fmt.Errorf("reading the audit chain: %w", err)
	}
	defer rows.Close()
	st := ChainStatus{Head: GenesisHash, ChainSeq: head.Seq, ChainHead: head.Hash}
	wantSeq, prev := int64(1), GenesisHash
	for rows.Next() {
		var r eventRow
		// A plain Scan: sqlx's StructScan costs a reflection walk per row, which shows at millions of events.
		if err := rows.Scan(&r.Seq, &r.OccurredAt, &r.Station, &r.Batch, &r.Serial, &r.Kind, &r.Payload, &r.PrevHash, &r.Hash); err != nil {
			return st, fmt.Errorf("reading event after seq %d: %w", wantSeq-1, err)
		}
		e := r.event()
		switch {
		case e.Seq != wantSeq:
			return st, &ChainError{Seq: wantSeq, Problem: ProblemMissing,
				Detail: fmt.Sprintf("next event present is seq %d", e.Seq)}
		case e.PrevHash != prev:
			return st, &ChainError{Seq: e.Seq, Problem: ProblemWrongPrev,
				Detail: fmt.Sprintf("prev_hash %s, hash of seq %d is %s", short(e.PrevHash), e.Seq-1, short(prev))}
		}
		if got := EventHash(e); got != e.Hash {
			return st, &ChainError{Seq: e.Seq, Problem: ProblemEdited,
				Detail: fmt.Sprintf("stored hash %s, columns hash to %s", short(e.Hash), short(got))}
		}
		if batch == "" || e.Batch == batch {
			st.Count++
			st.Head = e.Hash
			st.LastSeq = e.Seq
		}
		if fn != nil {
			if err := fn(e); err != nil {
				return st, err
			}
		}
		wantSeq, prev = e.Seq+1, e.Hash
	}
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("reading the audit chain: %w", err)
	}
	last := wantSeq - 1
	switch {
	case last < head.Seq:
		return st, &ChainError{Seq: wantSeq, Problem: ProblemMissing,
			Detail: fmt.Sprintf("chain head is seq %d, events end at seq %d", head.Seq, last)}
	case prev != head.Hash:
		return st, &ChainError{Seq: head.Seq, Problem: ProblemHeadChanged,
			Detail: fmt.Sprintf("chain head records %s, last event hashes to %s", short(head.Hash), short(prev))}
	}
	return st, nil
}

// ChainHead returns the recorded head of the audit chain (the seq and hash of its last event; 0 and
// GenesisHash while it is empty) without walking the chain: what the station signs and sends with each
// enrollment. VerifyChain says whether the chain behind it holds.
func (s *Store) ChainHead(ctx context.Context) (int64, string, error) {
	var head struct {
		Seq  int64  `db:"seq"`
		Hash string `db:"hash"`
	}
	if err := s.r.GetContext(ctx, &head, "SELECT seq, hash FROM chain_head WHERE id = 1"); err != nil {
		return 0, "", fmt.Errorf("reading the audit chain head: %w", err)
	}
	return head.Seq, head.Hash, nil
}

// EventHashAt returns the stored hash of the event seq, and false when there is no such event. It reads
// the row as stored: VerifyChain says whether the chain up to it holds.
func (s *Store) EventHashAt(ctx context.Context, seq int64) (string, bool, error) {
	var h string
	err := s.r.GetContext(ctx, &h, s.q("SELECT hash FROM events WHERE seq = ?"), seq)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading event %d: %w", seq, err)
	}
	return h, true, nil
}
