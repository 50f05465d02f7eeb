package records

import (
	"encoding/json"
	"time"
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

// Display is the kind as people write it.
func (k KeyKind) Display() string {
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

// NewBatch is what opening a batch needs.
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

// BatchSummary is a batch with its board counts as the inventory keeps them. Done is Counts().Done (every
// board that reached an end, refusals included); show a batch's numbers through Counts, never these fields.
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
	EKPubSHA256 string // lowercase hex SHA-256 of the EK's DER SubjectPublicKeyInfo (inventory.EKPubHash)
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

// Event is one audit record. The store that appends it fills Seq, PrevHash and Hash (and Time when zero).
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

// ChainStatus is what verifying the audit chain found (the inventory's VerifyChain), when it verifies.
type ChainStatus struct {
	// Head is the hash of the last event in scope (the batch's last event, or the chain head), the genesis
	// hash (64 zeros) when there is none; Count is the number of events in scope.
	Head  string
	Count int64
	// LastSeq is the seq of the last event in scope.
	LastSeq int64
	// ChainSeq and ChainHead are the whole chain's last seq and hash.
	ChainSeq  int64
	ChainHead string
}
