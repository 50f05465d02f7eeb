// Package soak is the chaos soak of the whole line (issue 14, point 3): many slots provisioning simulated
// boards through the real station, upstream-ca and board-agent binaries against a throw-away PostgreSQL
// cluster of its own, while a seeded driver SIGKILLs and restarts the station, the CA and PostgreSQL and
// drops relay connections. When the line is done it runs `station reconcile` and `station audit verify`
// and checks the invariants the issue names against the boards' TPMs, the inventory and the CA's own
// tables. It also runs the two-CA race: two `upstream-ca serve` processes on one database, the same EK
// (and the same serial) enrolled through both at once.
//
// Processes are real so that kills are real: the binaries are built into a temporary folder with
// `go build`, and every child is started, killed and reaped here by its pid.
package soak
