//go:build !headless

package main

// The complete station (bin/station-full, and what `go build ./cmd/station` makes): every command runs
// here, the operator terminal, the demo, the in-process simulator and the metrics endpoint included.
// headless.go is the other build.

// forwardIfNeeded: this binary has everything, so nothing is handed on.
func forwardIfNeeded([]string) error { return nil }
