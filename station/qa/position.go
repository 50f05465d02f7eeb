package qa

import (
	"context"
	"fmt"
	"strings"

	"github.com/tpmline/tpmline/records"
	"github.com/tpmline/tpmline/reports"
)

// EventSource streams a batch's audit events in chain order (cmd/station adapts the inventory's
// ListEvents).
type EventSource func(ctx context.Context, batch string, fn func(*records.Event) error) error

// Position is where a report stands in its batch's audit trail today.
type Position struct {
	// Prefix is true when the batch's trail still holds the report's last event, with the report's hash,
	// at the report's position: the report is the batch as it was at that point.
	Prefix bool
	// Since is the number of the batch's events after the report's position (when Prefix).
	Since int64
	// Why says what differs when the trail does not hold the report's position.
	Why string
}

// ReportPosition checks a report made while its batch went on: the batch's trail today must still hold,
// as its rep.Audit.EventCount-th event, an event with the report's chain head and (for reports that record
// it) the report's chain seq. The trail is hash-chained, so that event's hash covers every event before it:
// an edited, removed or recomputed event of the covered prefix changes it (and the chain's own check,
// VerifyChain, fails on an edit that is not recomputed). Events after it are the batch going on, not
// tampering. The report's boards are not compared here; the byte comparison (CompareReportJSON) does that
// while the batch has not moved.
func ReportPosition(ctx context.Context, events EventSource, rep *reports.Report) (*Position, error) {
	want := rep.Audit.EventCount
	var n int64
	var at *records.Event
	err := events(ctx, rep.Batch.ID, func(e *records.Event) error {
		n++
		if n == want {
			c := *e
			at = &c
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case want == 0:
		// A report of a batch without events covers nothing but the (genesis) head.
		if rep.Audit.ChainHead != strings.Repeat("0", 64) {
			return &Position{Why: "the report has no events but a chain head that is not the genesis hash"}, nil
		}
		return &Position{Prefix: true, Since: n}, nil
	case at == nil:
		return &Position{Why: fmt.Sprintf("the report covers %d events of batch %s; the inventory has only %d", want, rep.Batch.ID, n)}, nil
	case at.Hash != rep.Audit.ChainHead:
		return &Position{Why: fmt.Sprintf("event %d of batch %s (seq %d) has hash %s in the inventory, the report %s", want, rep.Batch.ID,
			at.Seq, shortHash(at.Hash), shortHash(rep.Audit.ChainHead))}, nil
	case rep.Audit.ChainSeq != 0 && at.Seq != rep.Audit.ChainSeq:
		return &Position{Why: fmt.Sprintf("event %d of batch %s is at seq %d in the inventory, the report says %d", want, rep.Batch.ID,
			at.Seq, rep.Audit.ChainSeq)}, nil
	}
	return &Position{Prefix: true, Since: n - want}, nil
}

func shortHash(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}
