package inventory

import (
	"database/sql"
	"encoding/json"
	"time"

	"github.com/tpmline/tpmline/internal/tpmwire"
)

// BoardState is where a board stands.
type BoardState string

// Board states.
const (
	StateInProgress  BoardState = "in_progress"
	StateProvisioned BoardState = "provisioned"
	StateFailed      BoardState = "failed"
	StateStopped     BoardState = "stopped"
)

// KeyKind names the two device identity keys (TCG "TPM 2.0 Keys for Device Identity and Attestation").
type KeyKind string

// Key kinds.
const (
	KindIAK    KeyKind = "iak"
	KindIDevID KeyKind = "idevid"
)

// display is the kind as people write it.
func (k KeyKind) display() string {
	switch k {
	case KindIAK:
		return "IAK"
	case KindIDevID:
		return "IDevID"
	}
	return string(k)
}

// Step phases in the journal.
const (
	PhaseStarted = "started"
	PhaseDone    = "done"
	PhaseFailed  = "failed"
)

// EKPubHash is the inventory's EK identity (column ek_pub_sha256), the one tpmline shows and exchanges
// everywhere: tpmwire.EKIdentity, the lowercase hex SHA-256 of the DER SubjectPublicKeyInfo of the key in
// ekPublic, a marshalled TPMT_PUBLIC as passed to SetBoardEK. It is what `openssl pkey -pubin -outform DER
// | sha256sum` prints for the EK, and what EK lists and reports carry. Until migration 0002 the column
// held SHA-256 of the TPMT_PUBLIC bytes instead (see ekidentity.go).
func EKPubHash(ekPublic []byte) (string, error) { return tpmwire.EKIdentity(ekPublic) }

// NewBatch is what OpenBatch needs.
type NewBatch struct {
	ID        string
	Product   string
	WorkOrder string
	Quantity  int
	Operator  string
	Station   string
}

// Batch is a production batch.
type Batch struct {
	ID        string
	Product   string
	WorkOrder string
	Quantity  int
	Operator  string
	Station   string
	State     string // "open" or "closed"
	OpenedAt  time.Time
	ClosedAt  time.Time // zero while open
}

// BatchSummary is a batch with its board counts. Done counts every board that reached an end state.
type BatchSummary struct {
	Batch
	Done       int
	Passed     int
	Failed     int
	Stopped    int
	InProgress int
	// Refused counts boards turned away before they had a record: a claim refused by the one-EK-one-serial
	// rule (a clone or a swapped part; payloads are compact JSON with sorted keys, so the reason is
	// matched as text in both engines), or a board the station refused before its inventory check
	// (EventBoardRefused). They are no boards of the batch, but QA counts them.
	Refused int
}

// ClaimRequest asks to provision (or rework) the board Serial whose TPM has the EK EKPubSHA256.
type ClaimRequest struct {
	Serial      string
	EKPubSHA256 string // lowercase hex, see EKPubHash
	Batch       string
	Station     string
	Slot        int
	// Rework lets a known serial take a new EK (its TPM was replaced) and lets a provisioned or stopped
	// board be provisioned again. It never lets an EK move to another serial.
	Rework bool
}

// Board is one board's record.
type Board struct {
	ID              int64
	Serial          string
	EKPubSHA256     string // empty until known
	Batch           string
	State           BoardState
	CurrentStep     string
	ReasonCode      string
	ReasonText      string
	TPMManufacturer string
	TPMVendor       string
	TPMFirmware     string
	EKCert          []byte
	EKPublic        []byte
	Station         string
	Slot            int
	Attempt         int // 1 on the first claim, +1 on every retry, resume or rework
	ReworkCount     int
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// TPMInfo is what the TPM says about itself.
type TPMInfo struct {
	Manufacturer string
	Vendor       string
	Firmware     string
}

// StepOutcome closes a journal entry. Duration is measured by the caller (monotonic clock); when zero the
// store uses the wall-clock time between StepStarted and now.
type StepOutcome struct {
	Duration time.Duration
	TPMTime  time.Duration // time spent inside TPM commands
	Detail   string
	// Started is when the step began, by the product clock (clock.Now, with its monotonic reading). The
	// store places the step at its own time of the commit minus what has elapsed since, so a step journaled
	// later than it ran keeps its place in time. Zero: the step ended at the commit.
	Started time.Time
}

// span is where a step journaled by tx sits in time: [start, end] in unix nanoseconds of the store's clock.
func (o StepOutcome) span(tx *txn) (start, end int64) {
	if o.Started.IsZero() {
		return tx.now - int64(o.Duration), tx.now
	}
	start = tx.now - int64(tx.mono.Sub(o.Started))
	return start, min(start+int64(o.Duration), tx.now)
}

// Step is one journal entry.
type Step struct {
	ID         int64
	Attempt    int
	Step       string
	Phase      string
	StartedAt  time.Time
	FinishedAt time.Time // zero while started
	Duration   time.Duration
	TPMTime    time.Duration
	Detail     string
}

// Key is a device key created in the board's TPM.
type Key struct {
	Kind      KeyKind
	Public    []byte // TPM2B_PUBLIC contents as the TPM returned them
	Handle    uint32 // persistent handle
	Name      []byte // TPM Name of the key
	Attempt   int
	CreatedAt time.Time
}

// Certificate is a certificate the CA issued for one of the board's keys.
type Certificate struct {
	Kind      KeyKind
	DER       []byte
	SerialHex string
	NotAfter  time.Time
	Attempt   int
	CreatedAt time.Time
}

// Event is one audit record. AppendEvent fills Seq, PrevHash and Hash (and Time when zero).
type Event struct {
	Seq      int64
	Time     time.Time
	Station  string
	Batch    string
	Serial   string
	Kind     string
	Payload  json.RawMessage // compact JSON; nil is stored as {}
	PrevHash string          // hex
	Hash     string          // hex
}

// EKListExport records an EK list file written (and perhaps pushed to the CA) for a batch.
type EKListExport struct {
	ID         int64
	Batch      string
	Format     string
	FileSHA256 string
	Boards     int
	Station    string
	CreatedAt  time.Time
	PushedAt   time.Time // zero until pushed
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
	Refused    int `db:"refused"`
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
