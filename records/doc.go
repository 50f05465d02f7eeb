// Package records owns the domain records every part of the station shares: batches, boards, their
// states and journal steps, device keys and certificates, audit events and their kinds, EK list exports,
// the journal writes a station asks for (Op), and the error kinds and sentinels the inventory answers with.
//
// It imports the standard library only, so the operator terminal, the reports and the use cases speak of
// a board without linking a SQL driver or a TPM stack; package inventory stores these records.
package records
