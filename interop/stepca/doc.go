// Package stepca proves tpmline's IAK certificates against a relying party we did not write: a real
// step-ca (github.com/smallstep/certificates, the version tool/go.mod pins) serving ACME device-attest-01
// with the "tpm" attestation format. It is a module of its own so that the main module never depends on
// step-ca and its `go test ./...` never builds it; `make test` runs it with
//
//	cd interop/stepca && go test -count=1 ./...
//
// The step-ca binary is built once per machine by build.sh into $XDG_CACHE_HOME/tpmline (a cold build takes
// minutes on 2 cores) and reused.
package stepca
