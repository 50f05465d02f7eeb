// Package bench is tpmline's performance benchmark suite (issue 6): station overhead against the TPM's
// own command time, the station against the tpm2-tools shop-floor script, parallel slots under a real
// chip's latency profile, the upstream CA's enrollment capacity, report generation, and inventory
// lookups. Every figure is printed with the ratio or target it is judged by, all measured in the same
// run on the same machine; cmd/tpmline-bench runs it and writes the table of docs/benchmarks.md.
//
// Nothing here asserts on wall time in `make test`: the package's tests check the load generator's
// software TPM model for correctness only.
package bench
