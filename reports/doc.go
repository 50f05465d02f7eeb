// Package reports owns the batch audit report tpmline hands to people and to other systems: PDF for people,
// CSV and JSON for machines. The files the CA reads too (the EK list export and the detached signatures
// on both) are in the subpackage reports/signed, which does not link gofpdf.
//
// It depends on the standard library, gofpdf and reports/signed only (built with the headless tag, for the
// headless station, not on gofpdf: pdf_headless.go). It defines its own input types
// (BatchInfo, BoardRow, AuditInfo); the station maps its inventory onto them. File formats are documented
// in docs/reports.md and docs/ek-list.md.
package reports
