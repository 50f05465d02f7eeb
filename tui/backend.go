// Package tui owns the operator terminal: the tview screens a line operator runs all shift (sign-in, batch,
// the line view with one panel per slot, QA, help), their keys, and the pure functions that turn the
// station's events and batch counts into what is drawn. It talks to the station only through the Station
// interface it declares and the events the station feeds it (App.Event); it never imports inventory, a SQL
// driver or go-tpm: the records it shows are package records', a board's progress is station/progress.
//
// Layout: backend.go (what the terminal consumes), model.go (state derived from events, counters),
// render.go (pure text rendering), app.go (widgets and the UI loop), keys.go (key handling), screens.go
// (sign-in, batch, QA and help screens).
package tui

import (
	"context"
	"time"

	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/station/progress"
)

// Station is what the terminal needs of the station (*station.Station implements it; cmd/station checks
// that where it wires the two).
type Station interface {
	// Provision runs one board; it blocks, so the terminal calls it in a goroutine per slot.
	Provision(ctx context.Context, job progress.Job) *progress.Outcome
	OpenBatch(ctx context.Context, nb records.NewBatch) (*records.Batch, error)
	CloseBatch(ctx context.Context, id string) (*records.Batch, error)
	ListBatches(ctx context.Context, state string) ([]records.BatchSummary, error)
	GetBatch(ctx context.Context, id string) (*records.Batch, error)
	// CheckSerial refuses a scanned serial the product's profile does not accept.
	CheckSerial(product, serial string) error
	ID() string
}

// Retirer is a Station that can take a finished board out of service (*station.Station: Retire, the same
// call `station board rma` and `board deprovision` make): the rework dialog then offers RMA and
// deprovision beside the rework. It blocks; the terminal calls it in a goroutine.
type Retirer interface {
	Retire(ctx context.Context, job progress.RetireJob) (*progress.RetireOutcome, error)
}

// Fixture is the bench: the slots and how each one's board is reached.
type Fixture interface {
	// Slots lists the slot IDs in display order.
	Slots() []int
	// TPM is the --tpm address of the board now in the slot.
	TPM(slot int) string
	// NewPart readies the slot for the next board after the previous one left the fixture (a real fixture
	// has nothing to do; the demo puts a fresh simulated board in). It may block; the terminal calls it in
	// a goroutine.
	NewPart(ctx context.Context, slot int) error
}

// Cloner is a fixture that can put a copy of an already provisioned part into a slot (the demo's forced
// failure: the same TPM under a new serial). ClonePart returns a short description for the slot panel.
type Cloner interface {
	ClonePart(ctx context.Context, slot int) (string, error)
}

// ReportFunc makes the audit report of a batch and returns where it was written. It is the hook the reports
// work plugs into the QA view (Config.BatchReport).
type ReportFunc func(ctx context.Context, batchID string) (string, error)

// Config wires the terminal.
type Config struct {
	Station Station
	Fixture Fixture
	// Title names the station in the header ("demo" adds a hint that boards are simulated).
	Title string
	// Color draws with colours; false (NO_COLOR) draws with attributes only (reverse, bold).
	Color bool
	// BatchReport, when set, makes the QA view's report key produce the batch report.
	BatchReport ReportFunc
	// Operator skips the sign-in screen when set (e.g. from --operator).
	Operator string
	// Now is the clock (time.Now by default); tests pass a fixed one.
	Now func() time.Time
	// Tick is how often running slots' elapsed times are redrawn (500 ms by default; negative disables it).
	Tick time.Duration
}
