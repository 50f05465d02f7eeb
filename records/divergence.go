package records

import (
	"errors"
	"fmt"
	"strings"
)

// ErrStateDiverged: a table the station reads disagrees with the state its audit chain implies (an edit
// behind the store's back). Detail: *StateError.
var ErrStateDiverged = errors.New("inventory disagrees with its audit chain")

// What a Divergence says when one side has no row at all.
const (
	NoEvent = "(no event)" // Chained: a row the chain never wrote
	NoRow   = "(no row)"   // Stored: the chain wrote a row that is gone
)

// Divergence is one difference between a table and the state the audit chain implies.
type Divergence struct {
	Table   string // boards, batches, keys, certificates, steps, ek_list_exports
	Key     string // the row's key in that table (a serial, a batch id, serial/attempt/kind, an id)
	Field   string // the column that differs, or "row" when one side has no row
	Chained string // the value the chain implies, or NoEvent
	Stored  string // the value in the table, or NoRow
	Batch   string // the batch the row belongs to, so a batch's report can pick its own
}

// String is the one-line form `station audit verify` prints.
func (d Divergence) String() string {
	return fmt.Sprintf("%s %s %s: chained %s, stored %s", d.Table, d.Key, d.Field, quoteValue(d.Chained), quoteValue(d.Stored))
}

func quoteValue(v string) string {
	if v == NoEvent || v == NoRow {
		return v
	}
	return fmt.Sprintf("%q", v)
}

// StateError carries the divergences that make a state check fail.
type StateError struct {
	Divergences []Divergence
}

func (e *StateError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d divergence(s)", ErrStateDiverged.Error(), len(e.Divergences))
	for i, d := range e.Divergences {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(e.Divergences)-3)
			break
		}
		b.WriteString("; ")
		b.WriteString(d.String())
	}
	return b.String()
}

func (e *StateError) Unwrap() error { return ErrStateDiverged }
