//go:build tools

// Package tools pins modules the packages import before every package exists, so that go.mod stays tidy
// while the tree is being built.
package tools

import (
	_ "github.com/gdamore/tcell/v2"
	_ "github.com/google/go-tpm-tools/simulator"
	_ "github.com/google/go-tpm/tpm2"
	_ "github.com/google/go-tpm/tpm2/transport"
	_ "github.com/google/go-tpm/tpm2/transport/linuxtpm"
	_ "github.com/google/go-tpm/tpm2/transport/linuxudstpm"
	_ "github.com/jmoiron/sqlx"
	_ "github.com/jung-kurt/gofpdf"
	_ "github.com/lib/pq"
	_ "github.com/rivo/tview"
	_ "modernc.org/sqlite"
)
