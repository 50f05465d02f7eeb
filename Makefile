# tpmline: make run (the operator app on simulated boards) and make test (the whole suite).
GO ?= go
FUZZTIME ?= 3s
export CGO_ENABLED = 1

.PHONY: run test vet fuzz build bench

build:
	$(GO) build -o bin/ ./cmd/...

run: build
	./bin/station demo

vet:
	$(GO) vet ./...

test: vet
	$(GO) test -count=1 -timeout 30m ./...
	$(MAKE) fuzz

# Short fuzz runs of every fuzz target (seconds each); run longer with FUZZTIME=10m.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >/dev/null || { $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; exit 1; }; \
	  done; \
	done

# Performance figures of issue 6 (docs/benchmarks.md): needs swtpm, tpm2-tools, PostgreSQL; ~5 min on 2 cores.
# Larger runs: go run ./cmd/tpmline-bench -help (e.g. -ca-enrollments 100000 for the long memory run).
bench: build
	$(GO) test -count=1 ./bench/
	./bin/tpmline-bench $(BENCHFLAGS)
