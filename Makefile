# tpmline: make run (the operator app on simulated boards) and make test (the whole suite).
GO ?= go
FUZZTIME ?= 3s
export CGO_ENABLED = 1

.PHONY: run test vet race fuzz build bench

build:
	$(GO) build -o bin/ ./cmd/...

run: build
	./bin/station demo

vet:
	$(GO) vet ./...

test: vet
	$(GO) test -count=1 -timeout 30m ./...
	$(MAKE) race
	$(MAKE) fuzz

# The packages that run work concurrently (the station's slots, its journal commits made while the TPM
# works, the store under racing stations, the CA's handlers) again under the race detector.
race:
	$(GO) test -race -count=1 -timeout 30m ./station/ ./inventory/ ./provisioning/ca/

# Short fuzz runs of every fuzz target (seconds each); run longer with FUZZTIME=10m.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >/dev/null || { $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; exit 1; }; \
	  done; \
	done

# Performance figures of issue 6 (docs/benchmarks.md): needs swtpm, tpm2-tools, PostgreSQL; 1-5 min on 2 cores.
# Larger runs: go run ./cmd/tpmline-bench -help (e.g. -ca-enrollments 100000 for the long memory run).
bench: build
	$(GO) test -count=1 ./bench/
	./bin/tpmline-bench $(BENCHFLAGS)
