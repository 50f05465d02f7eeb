// Package clock is the product's one wall clock. Code that stamps or checks a calendar time (certificates,
// challenges, leases, journals, reports) asks clock.Now, or a Now func it was configured with that defaults to
// it, never time.Now directly; durations and deadlines may use time.Now.
//
// The moved-clock check (make clockcheck) builds the tests with
//
//	-ldflags=-X=github.com/tpmline/tpmline/internal/clock.shift=+87600h
//
// and again with -87600h, so every calendar time the code under test reads is years away from today. A test
// that mixes material made on today's real clock with code on the product's clock, or a fixed date with
// either, then fails on the day it is written instead of on the day its dates run out. Release builds never
// set shift.
package clock

import (
	"strconv"
	"time"
)

// shift is set only by the linker, for the moved-clock check. Empty means no shift.
var shift string

var offset = parseShift(shift)

func parseShift(s string) time.Duration {
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		panic("clock: bad -X shift " + s + ": " + err.Error())
	}
	return d
}

// Now is the wall clock, moved by the link-time shift when the moved-clock check set one.
func Now() time.Time { return time.Now().Add(offset) }

// Shifted reports whether this build runs on a moved clock (for tests that hand the time to an outside tool
// such as openssl, which needs -attime then).
func Shifted() bool { return offset != 0 }

// Since is the time elapsed since t, a time read from Now. (time.Since would be off by the shift: a shifted
// time carries a shifted monotonic reading too.)
func Since(t time.Time) time.Duration { return Now().Sub(t) }

// GoBuildFlags are the go build flags that give a binary built by a test the same moved clock as the test
// itself (none when the clock is not moved), so a test and the processes it starts share one clock.
func GoBuildFlags() []string {
	if shift == "" {
		return nil
	}
	return []string{"-ldflags=-X=github.com/tpmline/tpmline/internal/clock.shift=" + shift}
}

// OpenSSLAtTime is the -attime argument that makes openssl verify check validity on this clock (none when
// the clock is not moved).
func OpenSSLAtTime() []string {
	if offset == 0 {
		return nil
	}
	return []string{"-attime", strconv.FormatInt(Now().Unix(), 10)}
}
