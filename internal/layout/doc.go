// Package layout holds no code: its test is the package table of the README's architecture section, the
// import rules every package keeps, checked against `go list` so a change that breaks one fails the suite.
package layout
