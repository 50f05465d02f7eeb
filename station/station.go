// Package station owns the use case: batches, the per-board step machine of DESIGN.md ("The per-board
// flow"), slots running in parallel, resume after a crash, and the audit events every step leaves. It
// consumes small interfaces (the inventory, the CA, a way to open a board's TPM) that cmd wires to the real
// implementations; it never imports tview, sqlx or gofpdf.
package station

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/inventory"
	"github.com/tpmline/tpmline/provisioning"
)

// Inventory is what the station needs of the inventory store (*inventory.Store implements it).
type Inventory interface {
	GetBatch(ctx context.Context, id string) (*inventory.Batch, error)
	ClaimBoard(ctx context.Context, req inventory.ClaimRequest) (*inventory.Board, error)
	GetBoardBySerial(ctx context.Context, serial string) (*inventory.Board, error)
	ListCertificates(ctx context.Context, serial string) ([]inventory.Certificate, error)
	MarkFailed(ctx context.Context, serial, code, text string) error
	MarkStopped(ctx context.Context, serial, code, text string) error
	AppendEvent(ctx context.Context, e inventory.Event) (*inventory.Event, error)
	// Journal applies several journal writes in one transaction.
	Journal(ctx context.Context, serial string, ops ...inventory.Op) error
}

var _ Inventory = (*inventory.Store)(nil)

// Opener reaches a board's TPM from a --tpm address (fixtures.Open in production).
type Opener func(addr string) (transport.TPMCloser, error)

// TimedTPM is a transport that knows how long the TPM itself spent in commands (fixtures.Recorder).
type TimedTPM interface {
	transport.TPM
	TPMTime() time.Duration
}

// Config wires a station.
type Config struct {
	StationID string
	Inventory Inventory
	CA        provisioning.CA
	Open      Opener
	// Timed wraps a transport so the station can journal TPM command time (fixtures.NewRecorder).
	Timed func(transport.TPM) TimedTPM
	// Profiles by product name; a product without one uses Default (DefaultProfile when nil).
	Profiles map[string]*Profile
	Default  *Profile
	// OnEvent receives every state change (the UI's feed). It must not block.
	OnEvent func(Event)
	Now     func() time.Time
	// Fault, when set, is called at every step boundary ("step", "before"|"after"); crash tests use it to
	// kill the process there. Production wiring leaves it nil.
	Fault func(step, phase string)
}

// Station provisions boards.
type Station struct {
	cfg Config
	mu  sync.Mutex
	// busy holds the slots running a board, so one slot never runs two boards at once.
	busy map[int]string
}

// New checks the wiring and returns a station.
func New(cfg Config) (*Station, error) {
	switch {
	case cfg.StationID == "":
		return nil, errors.New("station: no station ID (set station_id in the config or --station-id)")
	case cfg.Inventory == nil:
		return nil, errors.New("station: no inventory")
	case cfg.CA == nil:
		return nil, errors.New("station: no CA client")
	case cfg.Open == nil:
		return nil, errors.New("station: no TPM opener")
	}
	if cfg.Default == nil {
		cfg.Default = DefaultProfile()
	}
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	return &Station{cfg: cfg, busy: map[int]string{}}, nil
}

// ID is the station's identity.
func (s *Station) ID() string { return s.cfg.StationID }

// Profile returns the profile for a product.
func (s *Station) Profile(product string) *Profile {
	if p, ok := s.cfg.Profiles[product]; ok {
		return p
	}
	return s.cfg.Default
}

// Job is one board to provision.
type Job struct {
	Batch  string
	Serial string
	Slot   int
	TPM    string // --tpm address
	Rework bool
	// Supervisor is who authorised a rework (badge ID); it goes into the audit trail.
	Supervisor string
}

// Steps is the per-board flow in order; the UI draws its progress bar over it.
var Steps = []string{
	StepConnect, provisioning.StepFlush, provisioning.StepTPMInfo, provisioning.StepEKCerts, provisioning.StepEK,
	provisioning.StepEKCheck, provisioning.StepIAK, provisioning.StepIDevID, StepClaim, provisioning.StepClear,
	provisioning.StepEnroll, provisioning.StepActivate, provisioning.StepCertify, provisioning.StepIssue,
	provisioning.StepPersist, provisioning.StepNVWrite, provisioning.StepReadBack, StepRecord,
}

// Station-only steps.
const (
	StepConnect = "connect"
	StepClaim   = "inventory-check"
	StepRecord  = "record"
)

// StepIndex is the position of step in Steps, or -1.
func StepIndex(step string) int {
	for i, s := range Steps {
		if s == step {
			return i
		}
	}
	return -1
}

// EventKind says what happened in an Event.
type EventKind string

// Event kinds.
const (
	EvStarted    EventKind = "started"
	EvStep       EventKind = "step"
	EvStepDone   EventKind = "step-done"
	EvPassed     EventKind = "passed"
	EvFailed     EventKind = "failed"
	EvSlotIdle   EventKind = "slot-idle"
	EvBatchEvent EventKind = "batch"
)

// Event is one state change for the UI.
type Event struct {
	Time    time.Time
	Kind    EventKind
	Slot    int
	Serial  string
	Batch   string
	Step    string
	Elapsed time.Duration
	// Failure is set on EvFailed.
	Failure *Failure
	Message string
}

func (s *Station) emit(e Event) {
	if s.cfg.OnEvent == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = s.cfg.Now()
	}
	s.cfg.OnEvent(e)
}

// Outcome is how a board ended.
type Outcome struct {
	Serial   string
	Batch    string
	State    inventory.BoardState
	Failure  *Failure // nil when provisioned
	Duration time.Duration
	TPMTime  time.Duration
	// JournalTime is the time spent committing the board's journal (the inventory's durable writes).
	JournalTime time.Duration
	Steps       []StepTime
	// IAKCertSerial and IDevIDCertSerial are the issued certificates' serial numbers (hex).
	IAKCertSerial    string
	IDevIDCertSerial string
	EKPubSHA256      string
	Already          bool // the board was already provisioned and the TPM still matches
}

// StepTime is one step's wall time and TPM time.
type StepTime struct {
	Step     string        `json:"step"`
	Duration time.Duration `json:"duration_ns"`
	TPMTime  time.Duration `json:"tpm_time_ns"`
	Start    time.Time     `json:"-"` // for the journal, which may record the step later than it ran
}

// acquire marks a slot busy.
func (s *Station) acquire(slot int, serial string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if other, ok := s.busy[slot]; ok {
		return fmt.Errorf("slot %d is busy with board %s", slot, other)
	}
	s.busy[slot] = serial
	return nil
}

func (s *Station) release(slot int) {
	s.mu.Lock()
	delete(s.busy, slot)
	s.mu.Unlock()
}

// Batches is what the station needs of the inventory for batch handling (the operator terminal and QA
// views go through the station, never the store).
type Batches interface {
	OpenBatch(ctx context.Context, nb inventory.NewBatch) (*inventory.Batch, error)
	CloseBatch(ctx context.Context, id string) (*inventory.Batch, error)
	ListBatches(ctx context.Context, state string) ([]inventory.BatchSummary, error)
}

var _ Batches = (*inventory.Store)(nil)

// OpenBatch opens a batch at this station; the product must have a profile (or be "default").
func (s *Station) OpenBatch(ctx context.Context, nb inventory.NewBatch) (*inventory.Batch, error) {
	if _, ok := s.cfg.Profiles[nb.Product]; !ok && nb.Product != s.cfg.Default.Name {
		return nil, fmt.Errorf("no profile for product %q: add its profile to the station config", nb.Product)
	}
	if nb.WorkOrder == "" {
		nb.WorkOrder = nb.ID
	}
	nb.Station = s.cfg.StationID
	b, ok := s.cfg.Inventory.(Batches)
	if !ok {
		return nil, errors.New("station: the inventory cannot open batches")
	}
	return b.OpenBatch(ctx, nb)
}

// CloseBatch closes a batch.
func (s *Station) CloseBatch(ctx context.Context, id string) (*inventory.Batch, error) {
	b, ok := s.cfg.Inventory.(Batches)
	if !ok {
		return nil, errors.New("station: the inventory cannot close batches")
	}
	return b.CloseBatch(ctx, id)
}

// ListBatches lists batches with their counts ("open", "closed" or "" for all).
func (s *Station) ListBatches(ctx context.Context, state string) ([]inventory.BatchSummary, error) {
	b, ok := s.cfg.Inventory.(Batches)
	if !ok {
		return nil, errors.New("station: the inventory cannot list batches")
	}
	return b.ListBatches(ctx, state)
}

// GetBatch returns one batch.
func (s *Station) GetBatch(ctx context.Context, id string) (*inventory.Batch, error) {
	return s.cfg.Inventory.GetBatch(ctx, id)
}

// Board returns a board's record.
func (s *Station) Board(ctx context.Context, serial string) (*inventory.Board, error) {
	return s.cfg.Inventory.GetBoardBySerial(ctx, serial)
}

// InProgress is what reconciling needs of the inventory.
type InProgress interface {
	ListInProgress(ctx context.Context, station string) ([]*inventory.Board, error)
}

var _ InProgress = (*inventory.Store)(nil)

// ReasonInterrupted is a board the station stopped working on (crash, power loss) whose slot no longer
// holds a TPM the station can reach; scanning it again resumes it.
const ReasonInterrupted = "interrupted"

// Reconcile runs at start-up over every board this station left in progress. A board whose slot still has
// a TPM address is resumed there (same slot, same attempt: see Provision for why every step is safe to
// repeat); the others are marked failed with ReasonInterrupted and the step they stopped in, so no board
// stays half-done without a state and a reason. It returns the outcomes of the resumed boards.
func (s *Station) Reconcile(ctx context.Context, slots map[int]string) ([]*Outcome, error) {
	ip, ok := s.cfg.Inventory.(InProgress)
	if !ok {
		return nil, errors.New("station: the inventory cannot list boards in progress")
	}
	boards, err := ip.ListInProgress(ctx, s.cfg.StationID)
	if err != nil {
		return nil, fmt.Errorf("listing boards left in progress: %w", err)
	}
	var outs []*Outcome
	for _, b := range boards {
		addr, ok := slots[b.Slot]
		if !ok {
			text := fmt.Sprintf("the station stopped while board %s was in step %s and its slot %d has no TPM now", b.Serial, b.CurrentStep, b.Slot)
			if err := s.cfg.Inventory.MarkFailed(ctx, b.Serial, ReasonInterrupted, text); err != nil {
				return outs, fmt.Errorf("board %s: %w", b.Serial, err)
			}
			s.emit(Event{Kind: EvFailed, Slot: b.Slot, Serial: b.Serial, Batch: b.Batch,
				Failure: &Failure{Code: ReasonInterrupted, Text: text, Next: "put the board in a slot and scan it again to resume"}})
			continue
		}
		outs = append(outs, s.Provision(ctx, Job{Batch: b.Batch, Serial: b.Serial, Slot: b.Slot, TPM: addr}))
	}
	return outs, nil
}
