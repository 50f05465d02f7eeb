//go:build headless

package reports

import (
	"errors"
	"io"
)

// ErrNoPDF is WritePDF's answer in the headless station (bin/station, -tags headless), which leaves gofpdf
// out: its package inits (gob, xml, the image decoders) cost every process start. That binary hands a
// command asking for a PDF to station-full, so only a caller that did not ask first meets this.
var ErrNoPDF = errors.New("report PDF: this binary (the headless station) has no PDF writer; run the command with station-full")

// WritePDF fails with ErrNoPDF in this build; pdf.go is the writer.
func WritePDF(io.Writer, BatchInfo, BoardSource, AuditInfo, Options) error { return ErrNoPDF }
