// Package station owns the use case: batches, the per-board step machine of DESIGN.md ("The per-board
// flow"), slots running in parallel, resume after a crash, and the audit events every step leaves. It
// consumes small interfaces (the inventory, the CA, a way to open a board's TPM), written in package records'
// types, that cmd wires to the real implementations; it never imports inventory, tview, sqlx or gofpdf.
//
// Its subpackages: station/progress, what the operator terminal shares with the station without linking
// the TPM stack (jobs, step names, events, outcomes, failures); station/qa, the QA use cases (batch
// reports, EK lists), which link the report renderers.
package station

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpmline/tpmline/internal/clock"
	"github.com/tpmline/tpmline/provisioning"
	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station/progress"
)

// Inventory is what the station needs of the inventory store (*inventory.Store implements it; cmd/station
// checks that where it wires the two).
type Inventory interface {
	GetBatch(ctx context.Context, id string) (*records.Batch, error)
	ClaimBoard(ctx context.Context, req records.ClaimRequest) (*records.Board, error)
	GetBoardBySerial(ctx context.Context, serial string) (*records.Board, error)
	ListCertificates(ctx context.Context, serial string) ([]records.Certificate, error)
	MarkFailed(ctx context.Context, serial, code, text string) error
	MarkStopped(ctx context.Context, serial, code, text string) error
	// RetireBoard stops a board for an RMA or a deprovision (kind records.EventBoardRMA or
	// records.EventBoardDeprovisioned), in one event by station.
	RetireBoard(ctx context.Context, serial, station, kind, reason string) (*records.Board, error)
	AppendEvent(ctx context.Context, e records.Event) (*records.Event, error)
	// Journal applies several journal writes in one transaction.
	Journal(ctx context.Context, serial string, ops ...records.Op) error
}

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
	// AuditHead, when set, is asked for the inventory's audit chain head, signed with the station key, for
	// each enrollment request (provisioning.EnrollRequest AuditHead), so the CA witnesses the chain as the
	// line runs. Nil sends none (a CA may then refuse the enrollment).
	AuditHead func(ctx context.Context) (*provisioning.WitnessRequest, error)
	// KeyReady, when set, says whether the station's key (on a PKCS#11 token) still answers. It is asked
	// before each board, which a token that is away turns away unclaimed, and after a step fails, so a
	// token lost mid-board is named as the cause rather than the link the lost signature broke. Nil: the
	// key is a file.
	KeyReady func() error
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

// CheckSerial validates a scanned serial against product's profile (the terminal asks before it starts a
// board, so a bad label is refused at the scanner).
func (s *Station) CheckSerial(product, serial string) error {
	return s.Profile(product).CheckSerial(serial)
}

// The vocabulary the station shares with its terminal lives in station/progress, which links no TPM
// stack; these names are the station's API for it.
type (
	Job       = progress.Job
	EventKind = progress.EventKind
	Event     = progress.Event
	Outcome   = progress.Outcome
	StepTime  = progress.StepTime
	Failure   = progress.Failure
)

// Steps is the per-board flow in order; the UI draws its progress bar over it.
var Steps = progress.Steps

// Station-only steps.
const (
	StepConnect = progress.StepConnect
	StepClaim   = progress.StepClaim
	StepRecord  = progress.StepRecord
)

// StepIndex is the position of step in Steps, or -1.
func StepIndex(step string) int { return progress.StepIndex(step) }

// Event kinds.
const (
	EvStarted    = progress.EvStarted
	EvStep       = progress.EvStep
	EvStepDone   = progress.EvStepDone
	EvPassed     = progress.EvPassed
	EvFailed     = progress.EvFailed
	EvSlotIdle   = progress.EvSlotIdle
	EvBatchEvent = progress.EvBatchEvent
)

func (s *Station) emit(e Event) {
	if s.cfg.OnEvent == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = s.cfg.Now()
	}
	s.cfg.OnEvent(e)
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
	OpenBatch(ctx context.Context, nb records.NewBatch) (*records.Batch, error)
	CloseBatch(ctx context.Context, id string) (*records.Batch, error)
	ListBatches(ctx context.Context, state string) ([]records.BatchSummary, error)
}

// OpenBatch opens a batch at this station; the product must have a profile (or be "default").
func (s *Station) OpenBatch(ctx context.Context, nb records.NewBatch) (*records.Batch, error) {
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
func (s *Station) CloseBatch(ctx context.Context, id string) (*records.Batch, error) {
	b, ok := s.cfg.Inventory.(Batches)
	if !ok {
		return nil, errors.New("station: the inventory cannot close batches")
	}
	return b.CloseBatch(ctx, id)
}

// ListBatches lists batches with their counts ("open", "closed" or "" for all).
func (s *Station) ListBatches(ctx context.Context, state string) ([]records.BatchSummary, error) {
	b, ok := s.cfg.Inventory.(Batches)
	if !ok {
		return nil, errors.New("station: the inventory cannot list batches")
	}
	return b.ListBatches(ctx, state)
}

// GetBatch returns one batch.
func (s *Station) GetBatch(ctx context.Context, id string) (*records.Batch, error) {
	return s.cfg.Inventory.GetBatch(ctx, id)
}

// Board returns a board's record.
func (s *Station) Board(ctx context.Context, serial string) (*records.Board, error) {
	return s.cfg.Inventory.GetBoardBySerial(ctx, serial)
}

// InProgress is what reconciling needs of the records.
type InProgress interface {
	ListInProgress(ctx context.Context, station string) ([]*records.Board, error)
}

// ReasonInterrupted: see progress.ReasonInterrupted.
const ReasonInterrupted = progress.ReasonInterrupted

// Reconcile runs at start-up over every board this station left in progress. A board whose slot still has
// a TPM address is resumed there (same slot, same attempt: see Provision for why every step is safe to
// repeat); the others are marked failed with ReasonInterrupted and the step they stopped in, so no board
// stays half-done without a state and a reason. It returns the outcomes of the resumed boards; Reconciled
// has the whole report.
func (s *Station) Reconcile(ctx context.Context, slots map[int]string) ([]*Outcome, error) {
	rep, err := s.ReconcileReport(ctx, slots)
	var outs []*Outcome
	for _, r := range rep {
		if r.Resumed != nil {
			outs = append(outs, r.Resumed)
		}
	}
	return outs, err
}
