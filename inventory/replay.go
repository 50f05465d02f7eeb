package inventory

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tpmline/tpmline/records"
)

// Divergence and StateError are records'.
type (
	Divergence = records.Divergence
	StateError = records.StateError
)

// ErrStateDiverged is records.ErrStateDiverged.
var ErrStateDiverged = records.ErrStateDiverged

// unknown is a field the chain does not say: an event written before its payload carried it. It matches
// any stored value, so an inventory written by an older station still verifies.
const unknown = "\x00unknown"

// How a stored column is compared with the chain: as written, by the SHA-256 of its bytes (the chain
// carries digests of blobs, not blobs), or as the hex of its bytes.
const (
	asText = iota
	asSHA256
	asHex
)

// table is one table the station reads, as the replay compares it: its key columns, then the batch the row
// belongs to, then its fields, selected in that order by query.
type table struct {
	name   string
	keys   int
	fields []string
	enc    []int // per field: asText, asSHA256 or asHex
	query  string
}

// The column order of each table's fields; the replay's rows hold values in the same order.
const (
	bEK = iota
	bBatch
	bState
	bStep
	bReasonCode
	bReasonText
	bManufacturer
	bVendor
	bFirmware
	bEKCert
	bEKPublic
	bStation
	bSlot
	bAttempt
	bRework
	bCreated
	bUpdated
	bFields
)

const (
	baProduct = iota
	baWorkOrder
	baQuantity
	baOperator
	baStation
	baState
	baOpened
	baClosed
	baFields
)

const (
	kPublic = iota
	kHandle
	kName
	kCreated
	kFields
)

const (
	cDER = iota
	cSerialHex
	cNotAfter
	cCreated
	cFields
)

const (
	sBoard = iota
	sAttempt
	sStep
	sPhase
	sStarted
	sFinished
	sDuration
	sTPMTime
	sDetail
	sFields
)

const (
	xBatch = iota
	xFormat
	xFileSHA256
	xBoards
	xStation
	xCreated
	xPushed
	xFields
)

var (
	boardsTable = table{name: "boards", keys: 1,
		fields: []string{"ek_pub_sha256", "batch", "state", "current_step", "reason_code", "reason_text", "tpm_manufacturer",
			"tpm_vendor", "tpm_firmware", "ek_cert", "ek_public", "station", "slot", "attempt", "rework_count", "created_at", "updated_at"},
		enc: []int{bEKCert: asSHA256, bEKPublic: asSHA256, bUpdated: asText},
		query: `SELECT serial, batch, COALESCE(ek_pub_sha256, ''), batch, state, current_step, reason_code, reason_text,
			tpm_manufacturer, tpm_vendor, tpm_firmware, ek_cert, ek_public, station, slot, attempt, rework_count, created_at,
			updated_at FROM boards`}
	batchesTable = table{name: "batches", keys: 1,
		fields: []string{"product", "work_order", "quantity", "operator", "station", "state", "opened_at", "closed_at"},
		enc:    make([]int, baFields),
		query: `SELECT id, id, product, work_order, quantity, operator, station, state, opened_at, COALESCE(closed_at, 0)
			FROM batches`}
	keysTable = table{name: "keys", keys: 3,
		fields: []string{"public", "handle", "name", "created_at"},
		enc:    []int{kPublic: asSHA256, kName: asHex, kCreated: asText},
		query: `SELECT COALESCE(b.serial, ''), k.attempt, k.kind, COALESCE(b.batch, ''), k.public, k.handle, k.name, k.created_at
			FROM keys k LEFT JOIN boards b ON b.id = k.board_id`}
	certsTable = table{name: "certificates", keys: 3,
		fields: []string{"der", "serial_hex", "not_after", "created_at"},
		enc:    []int{cDER: asSHA256, cCreated: asText},
		query: `SELECT COALESCE(b.serial, ''), c.attempt, c.kind, COALESCE(b.batch, ''), c.der, c.serial_hex, c.not_after, c.created_at
			FROM certificates c LEFT JOIN boards b ON b.id = c.board_id`}
	stepsTable = table{name: "steps", keys: 1,
		fields: []string{"board", "attempt", "step", "phase", "started_at", "finished_at", "duration_ns", "tpm_time_ns", "detail"},
		enc:    make([]int, sFields),
		query: `SELECT st.id, COALESCE(b.batch, ''), COALESCE(b.serial, ''), st.attempt, st.step, st.phase, st.started_at,
			COALESCE(st.finished_at, 0), st.duration_ns, st.tpm_time_ns, st.detail FROM steps st LEFT JOIN boards b ON b.id = st.board_id`}
	exportsTable = table{name: "ek_list_exports", keys: 1,
		fields: []string{"batch", "format", "file_sha256", "boards", "station", "created_at", "pushed_at"},
		enc:    make([]int, xFields),
		query: `SELECT id, batch, batch, format, file_sha256, boards, station, created_at, COALESCE(pushed_at, 0)
			FROM ek_list_exports`}
	// The name tables: a row per station, operator and product the store ever recorded, and when it first
	// did (stations.last_seen_at moves on every claim and is not compared). They belong to no batch.
	stationsTable  = table{name: "stations", keys: 1, fields: []string{"created_at"}, enc: make([]int, 1), query: `SELECT id, '', created_at FROM stations`}
	operatorsTable = table{name: "operators", keys: 1, fields: []string{"created_at"}, enc: make([]int, 1), query: `SELECT id, '', created_at FROM operators`}
	productsTable  = table{name: "products", keys: 1, fields: []string{"created_at"}, enc: make([]int, 1), query: `SELECT id, '', created_at FROM products`}
	// tables is every table the station reads a report, `board show` or an EK list from, and the names
	// they carry, in the order divergences are listed. The chain itself (events, chain_head) is
	// VerifyChain's.
	tables = []*table{&batchesTable, &boardsTable, &keysTable, &certsTable, &stepsTable, &exportsTable,
		&stationsTable, &operatorsTable, &productsTable}
)

// row is one table row as the chain implies it: its batch and its fields in the table's order.
type row struct {
	batch string
	vals  []string
}

// State is the inventory as its audit chain implies it, keyed per table as Divergence.Key says.
type State struct {
	Chain  ChainStatus
	tables map[string]map[string]*row
}

// Row returns the chained value of each field of the row key in table ("boards", "B-1"), or nil when the
// chain never wrote that row. Fields the chain does not say (older events) are "".
func (st *State) Row(tableName, key string) map[string]string {
	t := tableByName(tableName)
	r := st.tables[tableName][key]
	if t == nil || r == nil {
		return nil
	}
	out := make(map[string]string, len(t.fields))
	for i, f := range t.fields {
		if v := r.vals[i]; v != unknown {
			out[f] = v
		}
	}
	return out
}

func tableByName(name string) *table {
	for _, t := range tables {
		if t.name == name {
			return t
		}
	}
	return nil
}

// payload is the union of the fields the store's own event payloads carry.
type payload struct {
	EKPubSHA256    string  `json:"ek_pub_sha256"`
	Slot           int64   `json:"slot"`
	Attempt        int64   `json:"attempt"`
	ReworkCount    int64   `json:"rework_count"`
	Step           string  `json:"step"`
	JournalID      int64   `json:"journal_id"`
	StartedAt      *int64  `json:"started_at"`
	FinishedAt     *int64  `json:"finished_at"`
	DurationNS     int64   `json:"duration_ns"`
	TPMTimeNS      int64   `json:"tpm_time_ns"`
	Detail         string  `json:"detail"`
	Manufacturer   string  `json:"manufacturer"`
	Vendor         string  `json:"vendor"`
	Firmware       string  `json:"firmware"`
	EKCertLen      int64   `json:"ek_cert_len"`
	EKCertSHA256   string  `json:"ek_cert_sha256"`
	EKPublicSHA256 *string `json:"ek_public_sha256"`
	Kind           string  `json:"kind"`
	Handle         string  `json:"handle"`
	Name           string  `json:"name"`
	PublicSHA256   string  `json:"public_sha256"`      // key_saved before migration 0002's rename
	TPMTPublic     string  `json:"tpmt_public_sha256"` // key_saved: SHA-256 of the key's TPMT_PUBLIC bytes
	SerialHex      string  `json:"serial_hex"`
	NotAfter       string  `json:"not_after"`
	SHA256         string  `json:"sha256"`
	ReasonCode     string  `json:"reason_code"`
	ReasonText     string  `json:"reason_text"`
	Product        string  `json:"product"`
	WorkOrder      string  `json:"work_order"`
	Quantity       int64   `json:"quantity"`
	Operator       string  `json:"operator"`
	ExportID       int64   `json:"export_id"`
	Format         string  `json:"format"`
	FileSHA256     string  `json:"file_sha256"`
	Boards         int64   `json:"boards"`
	FromEK         string  `json:"from_ek_pub_sha256"` // ek_identity_migrated: the identity before
	Migration      string  `json:"migration"`          // ek_identity_migrated: "0002"
}

// replayer folds events, in seq order, into the rows they imply.
type replayer struct {
	st                                           *State
	boards, batches, keys, certs, steps, exports map[string]*row
	stations, operators, products                map[string]*row
}

// named records a station, operator or product the first time an event names it, as the store's
// INSERT ... ON CONFLICT does in the event's transaction (same clock reading).
func named(m map[string]*row, id, t string) {
	if m[id] == nil {
		m[id] = &row{vals: []string{t}}
	}
}

func newReplayer() *replayer {
	r := &replayer{st: &State{tables: map[string]map[string]*row{}}}
	for _, p := range []struct {
		t *table
		m *map[string]*row
	}{{&boardsTable, &r.boards}, {&batchesTable, &r.batches}, {&keysTable, &r.keys}, {&certsTable, &r.certs},
		{&stepsTable, &r.steps}, {&exportsTable, &r.exports}, {&stationsTable, &r.stations}, {&operatorsTable, &r.operators},
		{&productsTable, &r.products}} {
		*p.m = map[string]*row{}
		r.st.tables[p.t.name] = *p.m
	}
	return r
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func optTime(p *int64) string {
	if p == nil {
		return unknown
	}
	return itoa(*p)
}

// apply folds one event. The rules mirror the store's writes (boards.go, journal.go, batches.go,
// exports.go): a change to one of those is a change here, and the tamper tests fail until both agree.
func (r *replayer) apply(e *Event) error {
	var p payload
	switch e.Kind {
	case EventClaimRefused:
		// The claim recorded its station before it was refused; nothing else changes.
		named(r.stations, e.Station, itoa(e.Time.UnixNano()))
		return nil
	case EventBoardRefused:
		return nil // no row changes
	case EventBoardClaimed, EventBoardResumed, EventBoardRetried, EventBoardReworked:
		named(r.stations, e.Station, itoa(e.Time.UnixNano()))
	}
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		return fmt.Errorf("replaying event %d (%s): payload: %w", e.Seq, e.Kind, err)
	}
	t := itoa(e.Time.UnixNano())
	board := func() *row {
		b := r.boards[e.Serial]
		if b == nil {
			// An event for a board the chain never claimed: give it a row of unknowns, so what the table
			// holds for it shows as one divergence rather than many.
			b = &row{batch: e.Batch, vals: make([]string, bFields)}
			for i := range b.vals {
				b.vals[i] = unknown
			}
			r.boards[e.Serial] = b
		}
		b.vals[bUpdated] = t
		return b
	}
	switch e.Kind {
	case EventBatchOpened:
		named(r.stations, e.Station, t)
		named(r.operators, p.Operator, t)
		named(r.products, p.Product, t)
		r.batches[e.Batch] = &row{batch: e.Batch, vals: []string{baProduct: p.Product, baWorkOrder: p.WorkOrder,
			baQuantity: itoa(p.Quantity), baOperator: p.Operator, baStation: e.Station, baState: "open", baOpened: t, baClosed: "0"}}
	case EventBatchClosed:
		if b := r.batches[e.Batch]; b != nil {
			b.vals[baState], b.vals[baClosed] = "closed", t
		}
	case EventBoardClaimed:
		r.boards[e.Serial] = &row{batch: e.Batch, vals: []string{bEK: p.EKPubSHA256, bBatch: e.Batch, bState: string(StateInProgress),
			bStation: e.Station, bSlot: itoa(p.Slot), bAttempt: itoa(p.Attempt), bRework: itoa(p.ReworkCount),
			bCreated: t, bUpdated: t}}
	case EventBoardResumed:
		board().vals[bEK] = p.EKPubSHA256
	case EventBoardRetried, EventBoardReworked:
		b := board()
		v := b.vals
		if v[bEK] != p.EKPubSHA256 {
			// A new TPM: the store forgets the old one's facts.
			v[bEKCert], v[bEKPublic], v[bManufacturer], v[bVendor], v[bFirmware] = "", "", "", "", ""
		}
		v[bEK], v[bState], v[bStep], v[bReasonCode], v[bReasonText] = p.EKPubSHA256, string(StateInProgress), "", "", ""
		v[bBatch], v[bStation], v[bSlot], v[bAttempt], v[bRework] = e.Batch, e.Station, itoa(p.Slot), itoa(p.Attempt), itoa(p.ReworkCount)
		b.batch = e.Batch
	case EventEKIdentityMigrated:
		// Migration 0002 re-keyed the board: its identity was SHA-256 of the EK's TPMT_PUBLIC, which the
		// chain holds as the hash of the EK public bytes the board recorded, and is now SHA-256 of its SPKI
		// (or cleared, for a board with no EK recorded). Exactly that mapping is taken, from the identity the
		// chain holds for the board; anything else leaves the chained identity, so the row diverges. The
		// migration changed no other column (not updated_at).
		b := r.boards[e.Serial]
		if b == nil || p.Migration != "0002" || b.vals[bEK] != p.FromEK {
			return nil
		}
		if pub := b.vals[bEKPublic]; (pub == "" && p.EKPubSHA256 != "") || (pub != "" && pub != p.FromEK) {
			return nil
		}
		b.vals[bEK] = p.EKPubSHA256
	case EventBoardTPMInfo:
		v := board().vals
		v[bManufacturer], v[bVendor], v[bFirmware] = p.Manufacturer, p.Vendor, p.Firmware
	case EventBoardEK:
		v := board().vals
		v[bEKCert] = ""
		if p.EKCertLen > 0 {
			v[bEKCert] = p.EKCertSHA256
		}
		// Events before ek_public_sha256 existed: EKPubHash was then the SHA-256 of these very bytes, and the
		// store refused an EK public key that did not hash to the claimed EK.
		v[bEKPublic] = p.EKPubSHA256
		if p.EKPublicSHA256 != nil {
			v[bEKPublic] = *p.EKPublicSHA256
		}
	case EventStepStarted:
		b := board()
		b.vals[bStep] = p.Step
		r.steps[itoa(p.JournalID)] = &row{batch: b.batch, vals: []string{sBoard: e.Serial, sAttempt: itoa(p.Attempt), sStep: p.Step,
			sPhase: PhaseStarted, sStarted: optTime(p.StartedAt), sFinished: "0", sDuration: "0", sTPMTime: "0", sDetail: ""}}
	case EventStepDone, EventStepFailed:
		board()
		s := r.steps[itoa(p.JournalID)]
		if s == nil {
			s = &row{batch: e.Batch, vals: []string{sBoard: e.Serial, sAttempt: itoa(p.Attempt), sStep: p.Step, sStarted: unknown}}
			r.steps[itoa(p.JournalID)] = s
		}
		phase := PhaseDone
		if e.Kind == EventStepFailed {
			phase = PhaseFailed
		}
		v := s.vals
		v[sPhase], v[sDuration], v[sTPMTime], v[sDetail] = phase, itoa(p.DurationNS), itoa(p.TPMTimeNS), p.Detail
		v[sFinished] = optTime(p.FinishedAt)
		if p.StartedAt != nil {
			v[sStarted] = itoa(*p.StartedAt)
		} else if v[sStarted] != unknown {
			// The store may move a step's start to when it really began; older events do not say.
			v[sStarted] = unknown
		}
	case EventKeySaved:
		h, err := strconv.ParseUint(strings.TrimPrefix(p.Handle, "0x"), 16, 32)
		handle := itoa(int64(h))
		if err != nil {
			handle = p.Handle
		}
		r.keys[e.Serial+"/"+itoa(p.Attempt)+"/"+p.Kind] = &row{batch: r.batchOf(e), vals: []string{kPublic: cmp.Or(p.TPMTPublic, p.PublicSHA256),
			kHandle: handle, kName: p.Name, kCreated: t}}
	case EventCertSaved:
		notAfter := p.NotAfter
		if na, err := time.Parse(time.RFC3339, p.NotAfter); err == nil {
			notAfter = itoa(na.Unix())
		}
		r.certs[e.Serial+"/"+itoa(p.Attempt)+"/"+p.Kind] = &row{batch: r.batchOf(e), vals: []string{cDER: p.SHA256,
			cSerialHex: p.SerialHex, cNotAfter: notAfter, cCreated: t}}
	case EventBoardProvisioned:
		v := board().vals
		v[bState], v[bReasonCode], v[bReasonText] = string(StateProvisioned), "", ""
	case EventBoardFailed:
		v := board().vals
		v[bState], v[bReasonCode], v[bReasonText] = string(StateFailed), p.ReasonCode, p.ReasonText
	case EventBoardStopped:
		v := board().vals
		v[bState], v[bReasonCode], v[bReasonText] = string(StateStopped), p.ReasonCode, p.ReasonText
	case EventBoardRMA, EventBoardDeprovisioned:
		v := board().vals
		v[bState], v[bReasonCode], v[bReasonText] = string(StateStopped), p.ReasonCode, p.ReasonText
	case EventEKListExported:
		r.exports[itoa(p.ExportID)] = &row{batch: e.Batch, vals: []string{xBatch: e.Batch, xFormat: p.Format,
			xFileSHA256: p.FileSHA256, xBoards: itoa(p.Boards), xStation: e.Station, xCreated: t, xPushed: "0"}}
	case EventEKListPushed:
		if x := r.exports[itoa(p.ExportID)]; x != nil {
			x.vals[xPushed] = t
		}
	}
	return nil
}

// batchOf is the batch of the board an event is about, as the chain has it.
func (r *replayer) batchOf(e *Event) string {
	if b := r.boards[e.Serial]; b != nil {
		return b.batch
	}
	return e.Batch
}

// Replay verifies the audit chain (VerifyChain) and folds it into the state it implies. A broken chain is
// returned as VerifyChain returns it: there is no state to trust then.
func (s *Store) Replay(ctx context.Context) (*State, error) {
	return s.replay(ctx, "")
}

// replay is Replay with the chain status (Head, Count) describing batch, as VerifyChain's does.
func (s *Store) replay(ctx context.Context, batch string) (*State, error) {
	r := newReplayer()
	chain, err := s.walkChain(ctx, batch, r.apply)
	r.st.Chain = chain
	if err != nil {
		return nil, err
	}
	return r.st, nil
}

// VerifyState replays the audit chain and compares the state it implies with every table the station
// reads (boards, batches, keys, certificates, the step journal, EK list exports) and the names they carry
// (stations, operators, products), field by field. It
// returns the chain's status and the divergences, sorted by table and key: a row no event wrote, a row an
// event wrote that is gone, and a field whose stored value is not the chained one. batch keeps only the
// divergences of that batch's rows ("" keeps all); the whole chain is replayed either way, because a
// board's history crosses batches. A broken chain is an error (*ChainError); divergences are not.
//
// The chain and the tables are read in separate statements, so run it on an inventory no station is
// writing to, or expect the rows written meanwhile to show as divergences.
func (s *Store) VerifyState(ctx context.Context, batch string) (ChainStatus, []Divergence, error) {
	st, err := s.replay(ctx, batch)
	if err != nil {
		return ChainStatus{}, nil, err
	}
	var out []Divergence
	for _, t := range tables {
		ds, err := s.compareTable(ctx, t, st.tables[t.name], batch)
		if err != nil {
			return st.Chain, nil, err
		}
		out = append(out, ds...)
	}
	return st.Chain, out, nil
}

// compareTable reads t whole and compares each row with chained, then lists the chained rows it did not
// find.
func (s *Store) compareTable(ctx context.Context, t *table, chained map[string]*row, batch string) ([]Divergence, error) {
	rows, err := s.r.QueryContext(ctx, t.query)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", t.name, err)
	}
	defer rows.Close()
	n := t.keys + 1 + len(t.fields)
	raw := make([]sql.RawBytes, n)
	dest := make([]any, n)
	for i := range raw {
		dest[i] = &raw[i]
	}
	seen := make(map[string]bool, len(chained))
	var out []Divergence
	keyParts := make([]string, t.keys)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("reading %s: %w", t.name, err)
		}
		for i := range keyParts {
			keyParts[i] = string(raw[i])
		}
		key := strings.Join(keyParts, "/")
		storedBatch := string(raw[t.keys])
		c := chained[key]
		if c == nil {
			if batch == "" || storedBatch == batch {
				out = append(out, Divergence{Table: t.name, Key: key, Field: "row", Chained: records.NoEvent, Stored: "present", Batch: storedBatch})
			}
			continue
		}
		if seen[key] {
			// A duplicate key (steps cannot have one; keys and certificates can, once a board_id is edited).
			if batch == "" || storedBatch == batch || c.batch == batch {
				out = append(out, Divergence{Table: t.name, Key: key, Field: "row", Chained: "one row", Stored: "another row", Batch: storedBatch})
			}
			continue
		}
		seen[key] = true
		if batch != "" && storedBatch != batch && c.batch != batch {
			continue
		}
		for i, f := range t.fields {
			want := c.vals[i]
			if want == unknown {
				continue
			}
			b := raw[t.keys+1+i]
			var got string
			switch t.enc[i] {
			case asSHA256:
				if len(b) > 0 {
					sum := sha256.Sum256(b)
					got = hex.EncodeToString(sum[:])
				}
			case asHex:
				got = hex.EncodeToString(b)
			default:
				got = string(b)
			}
			if got != want {
				out = append(out, Divergence{Table: t.name, Key: key, Field: f, Chained: want, Stored: got, Batch: c.batch})
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", t.name, err)
	}
	var gone []Divergence
	for key, c := range chained {
		if !seen[key] && (batch == "" || c.batch == batch) {
			gone = append(gone, Divergence{Table: t.name, Key: key, Field: "row", Chained: "present", Stored: records.NoRow, Batch: c.batch})
		}
	}
	out = append(out, gone...)
	sort.SliceStable(out, func(i, j int) bool { return lessKey(out[i].Key, out[j].Key) })
	return out, nil
}

// lessKey orders numeric keys (step and export ids) as numbers and the rest as text.
func lessKey(a, b string) bool {
	na, ea := strconv.ParseInt(a, 10, 64)
	nb, eb := strconv.ParseInt(b, 10, 64)
	if ea == nil && eb == nil {
		return na < nb
	}
	return a < b
}
