// Package reports owns the files tpmline hands to people and to other systems: the batch audit report
// (PDF for people, CSV and JSON for machines), the per-batch EK list export (CSV and JSON), and the
// detached signature (.sig) that the station's key puts on each of them.
//
// It depends on the standard library and gofpdf only. It defines its own input types (BatchInfo,
// BoardRow, AuditInfo, EKListHeader, EKListEntry); the station maps its inventory onto them. File
// formats are documented in docs/reports.md and docs/ek-list.md.
package reports
