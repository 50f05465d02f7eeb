//go:build headless

package main

// The headless station: `go build -tags headless` makes bin/station, the binary a line's test executive
// runs once per board. It links neither the operator terminal (tview, tcell), nor the in-process TPM
// simulator (cgo and libcrypto), nor the Prometheus client (with protobuf and procfs), nor the in-process
// CA, nor the PDF writer (gofpdf): each of them initialises at every process start whether the command
// uses it or not (docs/benchmarks.md, "A whole station provision process"). What needs them runs in
// bin/station-full, the same source without the tag, which this binary hands the command to by exec: the
// operator terminal (`station`, `station tui`), the demo, a `--tpm sim` board, a `--pdf` report and
// --metrics-listen.

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/tpmline/tpmline/station"
)

// fullBinary is the complete station, built beside this one by make build.
const fullBinary = "station-full"

// metricsListen is the global --metrics-listen flag; a command given one runs in station-full.
var metricsListen string

// cmdTUI and cmdDemo run in station-full.
func cmdTUI(context.Context, *globals, *flag.FlagSet, []string) error  { return execFull(os.Args[1:]) }
func cmdDemo(context.Context, *globals, *flag.FlagSet, []string) error { return execFull(os.Args[1:]) }

// withMetrics passes events on: without --metrics-listen there is nothing to count, and with it main
// has already handed the command to station-full.
func withMetrics(onEvent func(station.Event)) (func(station.Event), error) {
	if metricsListen != "" {
		return nil, usagef("--metrics-listen is served by %s; run the command with it", fullBinary)
	}
	return onEvent, nil
}

// execFull replaces this process with station-full running the same arguments: beside this binary
// first, then on PATH.
func execFull(args []string) error {
	path := ""
	if self, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(self), fullBinary); isExecutable(p) {
			path = p
		}
	}
	if path == "" {
		p, err := exec.LookPath(fullBinary)
		if err != nil {
			return refusef("this command needs %s (the operator terminal, the demo, the simulator, PDF reports and the metrics endpoint), which is not beside this station nor on PATH; build both with make build", fullBinary)
		}
		path = p
	}
	err := syscall.Exec(path, append([]string{path}, args...), os.Environ())
	return refusef("starting %s: %v", path, err)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// forwardIfNeeded hands the whole command to station-full when it asks for what only that binary has.
func forwardIfNeeded(args []string) error {
	if needsFull(args) {
		return execFull(args)
	}
	return nil
}
