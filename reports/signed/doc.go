// Package signed owns the files tpmline exchanges with the upstream CA and signs: the per-batch EK list
// (CSV and JSON, docs/ek-list.md), the EK identity it carries (EKPublicSHA256), and the detached
// signature (.sig) the station's key puts on an EK list or a batch report, with the bounds a reader
// holds a hostile file to.
//
// It depends on the standard library only, so the CA links it without the PDF library that package
// reports (the batch audit report) needs.
package signed
