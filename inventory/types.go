package inventory

import (
	"database/sql"
	"encoding/json"
	"time"

	"github.com/tpmline/tpmline/internal/tpmwire"
	"github.com/tpmline/tpmline/records"
)

// The records this package stores are package records'; these names keep callers that still say
// inventory.Board compiling while they move to records.
type (
	BoardState   = records.BoardState
	KeyKind      = records.KeyKind
	NewBatch     = records.NewBatch
	Batch        = records.Batch
	BatchSummary = records.BatchSummary
	ClaimRequest = records.ClaimRequest
	Board        = records.Board
	TPMInfo      = records.TPMInfo
	StepOutcome  = records.StepOutcome
	Step         = records.Step
	Key          = records.Key
	Certificate  = records.Certificate
	Event        = records.Event
	EKListExport = records.EKListExport
)

// Board states, key kinds and journal phases: see package records.
const (
	StateInProgress  = records.StateInProgress
	StateProvisioned = records.StateProvisioned
	StateFailed      = records.StateFailed
	StateStopped     = records.StateStopped
	KindIAK          = records.KindIAK
	KindIDevID       = records.KindIDevID
	PhaseStarted     = records.PhaseStarted
	PhaseDone        = records.PhaseDone
	PhaseFailed      = records.PhaseFailed
)

// EKPubHash is the inventory's EK identity (column ek_pub_sha256), the one tpmline shows and exchanges
// everywhere: tpmwire.EKIdentity, the lowercase hex SHA-256 of the DER SubjectPublicKeyInfo of the key in
// ekPublic, a marshalled TPMT_PUBLIC as passed to SetBoardEK. It is what `openssl pkey -pubin -outform DER
// | sha256sum` prints for the EK, and what EK lists and reports carry. Until migration 0002 the column
// held SHA-256 of the TPMT_PUBLIC bytes instead (see ekidentity.go).
func EKPubHash(ekPublic []byte) (string, error) { return tpmwire.EKIdentity(ekPublic) }

// span is where a step journaled by tx sits in time: [start, end] in unix nanoseconds of the store's clock.
func span(o StepOutcome, tx *txn) (start, end int64) {
	if o.Started.IsZero() {
		return tx.now - int64(o.Duration), tx.now
	}
	start = tx.now - int64(tx.mono.Sub(o.Started))
	return start, min(start+int64(o.Duration), tx.now)
}

// Row types: what the columns hold (times as unix nanoseconds), scanned by sqlx and turned into the types
// above.

type batchRow struct {
	ID        string        `db:"id"`
	Product   string        `db:"product"`
	WorkOrder string        `db:"work_order"`
	Quantity  int           `db:"quantity"`
	Operator  string        `db:"operator"`
	Station   string        `db:"station"`
	State     string        `db:"state"`
	OpenedAt  int64         `db:"opened_at"`
	ClosedAt  sql.NullInt64 `db:"closed_at"`
}

func (r *batchRow) batch() Batch {
	b := Batch{ID: r.ID, Product: r.Product, WorkOrder: r.WorkOrder, Quantity: r.Quantity,
		Operator: r.Operator, Station: r.Station, State: r.State, OpenedAt: fromNano(r.OpenedAt)}
	if r.ClosedAt.Valid {
		b.ClosedAt = fromNano(r.ClosedAt.Int64)
	}
	return b
}

type batchSummaryRow struct {
	batchRow
	Passed     int `db:"passed"`
	Failed     int `db:"failed"`
	Stopped    int `db:"stopped"`
	InProgress int `db:"in_progress"`
	Refused    int `db:"-"` // records.CountRefused over the batch's refusal events
}

type boardRow struct {
	ID              int64          `db:"id"`
	Serial          string         `db:"serial"`
	EKPubSHA256     sql.NullString `db:"ek_pub_sha256"`
	Batch           string         `db:"batch"`
	State           string         `db:"state"`
	CurrentStep     string         `db:"current_step"`
	ReasonCode      string         `db:"reason_code"`
	ReasonText      string         `db:"reason_text"`
	TPMManufacturer string         `db:"tpm_manufacturer"`
	TPMVendor       string         `db:"tpm_vendor"`
	TPMFirmware     string         `db:"tpm_firmware"`
	EKCert          []byte         `db:"ek_cert"`
	EKPublic        []byte         `db:"ek_public"`
	Station         string         `db:"station"`
	Slot            int            `db:"slot"`
	Attempt         int            `db:"attempt"`
	ReworkCount     int            `db:"rework_count"`
	CreatedAt       int64          `db:"created_at"`
	UpdatedAt       int64          `db:"updated_at"`
}

func (r *boardRow) board() *Board {
	return &Board{ID: r.ID, Serial: r.Serial, EKPubSHA256: r.EKPubSHA256.String, Batch: r.Batch,
		State: BoardState(r.State), CurrentStep: r.CurrentStep, ReasonCode: r.ReasonCode, ReasonText: r.ReasonText,
		TPMManufacturer: r.TPMManufacturer, TPMVendor: r.TPMVendor, TPMFirmware: r.TPMFirmware,
		EKCert: r.EKCert, EKPublic: r.EKPublic, Station: r.Station, Slot: r.Slot, Attempt: r.Attempt,
		ReworkCount: r.ReworkCount, CreatedAt: fromNano(r.CreatedAt), UpdatedAt: fromNano(r.UpdatedAt)}
}

type stepRow struct {
	ID         int64         `db:"id"`
	Attempt    int           `db:"attempt"`
	Step       string        `db:"step"`
	Phase      string        `db:"phase"`
	StartedAt  int64         `db:"started_at"`
	FinishedAt sql.NullInt64 `db:"finished_at"`
	DurationNS int64         `db:"duration_ns"`
	TPMTimeNS  int64         `db:"tpm_time_ns"`
	Detail     string        `db:"detail"`
}

func (r *stepRow) step() Step {
	st := Step{ID: r.ID, Attempt: r.Attempt, Step: r.Step, Phase: r.Phase, StartedAt: fromNano(r.StartedAt),
		Duration: time.Duration(r.DurationNS), TPMTime: time.Duration(r.TPMTimeNS), Detail: r.Detail}
	if r.FinishedAt.Valid {
		st.FinishedAt = fromNano(r.FinishedAt.Int64)
	}
	return st
}

type keyRow struct {
	Kind      string `db:"kind"`
	Public    []byte `db:"public"`
	Handle    int64  `db:"handle"`
	Name      []byte `db:"name"`
	Attempt   int    `db:"attempt"`
	CreatedAt int64  `db:"created_at"`
}

type certRow struct {
	Kind      string `db:"kind"`
	DER       []byte `db:"der"`
	SerialHex string `db:"serial_hex"`
	NotAfter  int64  `db:"not_after"`
	Attempt   int    `db:"attempt"`
	CreatedAt int64  `db:"created_at"`
}

type eventRow struct {
	Seq        int64  `db:"seq"`
	OccurredAt int64  `db:"occurred_at"`
	Station    string `db:"station"`
	Batch      string `db:"batch"`
	Serial     string `db:"serial"`
	Kind       string `db:"kind"`
	Payload    string `db:"payload"`
	PrevHash   string `db:"prev_hash"`
	Hash       string `db:"hash"`
}

func (r *eventRow) event() *Event {
	return &Event{Seq: r.Seq, Time: fromNano(r.OccurredAt), Station: r.Station, Batch: r.Batch, Serial: r.Serial,
		Kind: r.Kind, Payload: json.RawMessage(r.Payload), PrevHash: r.PrevHash, Hash: r.Hash}
}

type exportRow struct {
	ID         int64         `db:"id"`
	Batch      string        `db:"batch"`
	Format     string        `db:"format"`
	FileSHA256 string        `db:"file_sha256"`
	Boards     int           `db:"boards"`
	Station    string        `db:"station"`
	CreatedAt  int64         `db:"created_at"`
	PushedAt   sql.NullInt64 `db:"pushed_at"`
}

func (r *exportRow) export() *EKListExport {
	e := &EKListExport{ID: r.ID, Batch: r.Batch, Format: r.Format, FileSHA256: r.FileSHA256, Boards: r.Boards,
		Station: r.Station, CreatedAt: fromNano(r.CreatedAt)}
	if r.PushedAt.Valid {
		e.PushedAt = fromNano(r.PushedAt.Int64)
	}
	return e
}
