# tpmline: make run (the operator app on simulated boards) and make test (the whole suite).
GO ?= go
FUZZTIME ?= 3s
export CGO_ENABLED = 1

.PHONY: run test suite vet unit race fuzz clockcheck interop build bench soak

# Two station binaries from one source (docs/benchmarks.md, "A whole station provision process"):
# bin/station is the headless build (-tags headless) a line's test executive runs once per board: no
# terminal UI, no in-process simulator (cgo, libcrypto), no Prometheus client, no in-process CA, no PDF
# writer, so a process starts in about two thirds of the CPU time. bin/station-full is everything (what
# `go build ./cmd/station` makes); bin/station hands it, by exec, the operator terminal (`station`,
# `station tui`), `station demo`, `--tpm sim`, `--pdf` reports and --metrics-listen. bin/station is linked
# without its symbol table and DWARF (-s -w: 20 -> 14 MB): exec costs in proportion to the file's size
# here; tracebacks still work (they use the pclntab), `perf` wants a build without -s -w.
build:
	$(GO) build -o bin/ ./cmd/...
	mv -f bin/station bin/station-full
	$(GO) build -tags headless -ldflags='-s -w' -o bin/station ./cmd/station

run: build
	./bin/station demo

# staticcheck at a fixed version, built from the module proxy on first use (not a dependency of the module).
STATICCHECK = honnef.co/go/tools/cmd/staticcheck@v0.8.2
vet:
	$(GO) vet ./...
	$(GO) vet -tags headless ./cmd/station ./fixtures ./reports
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(STATICCHECK) -tags headless ./cmd/station ./fixtures ./reports

# make test does its own set-up on a fresh Debian machine (scripts/testenv.sh: the Debian packages, a
# PostgreSQL it starts and stops when none answers), then runs the suite.
test:
	scripts/testenv.sh $(MAKE) --no-print-directory suite

suite: vet unit race clockcheck fuzz interop

# Every package's tests but RACE_PKGS', which make race runs (the same tests, under the race detector).
unit:
	$(GO) test -count=1 -timeout 30m $$($(GO) list ./... | grep -vxF $(foreach p,$(RACE_PKGS),-e $(p)))

# The packages that run work concurrently (the station's slots, its journal commits made while the TPM
# works, the store under racing stations, the CA's handlers), under the race detector.
RACE_PKGS = github.com/tpmline/tpmline/station github.com/tpmline/tpmline/inventory github.com/tpmline/tpmline/provisioning/ca
race:
	$(GO) test -race -count=1 -timeout 30m $(RACE_PKGS)

# The moved-clock check: the packages that stamp or check calendar times, linked with the product clock
# (internal/clock) ten years ahead and ten years back. A test that depends on today's date fails here today.
CLOCK_PKGS = ./internal/clock/ ./provisioning/... ./reports/... ./records/ ./inventory/ ./station/... ./tui/ ./fixtures/... ./cmd/...
CLOCK_X = -ldflags=-X=github.com/tpmline/tpmline/internal/clock.shift=
clockcheck:
	$(GO) test -count=1 -timeout 30m $(CLOCK_X)+87600h $(CLOCK_PKGS)
	$(GO) test -count=1 -timeout 30m $(CLOCK_X)-87600h $(CLOCK_PKGS)

# Peers we did not write, in a module of their own (interop/stepca): a real step-ca v0.30.2 issues a
# certificate through ACME device-attest-01 to a board the station provisioned. The step-ca binary is built
# once (CGO off, minutes on 2 cores) into ~/.cache/tpmline and reused.
interop:
	cd interop/stepca && $(GO) test -count=1 -timeout 40m ./...

# Short fuzz runs of every fuzz target (seconds each); run longer with FUZZTIME=10m. A run that fails prints
# its output. An input that fails is written to the package's testdata/fuzz and is then part of the seed
# corpus, so the target is run once more: a finding fails that run too (and the suite, with the input kept
# for a regression test), while a failure of the fuzzing engine itself (a worker lost on a loaded machine)
# does not fail the suite but is printed.
fuzz:
	@set -e; log=$$(mktemp); trap 'rm -f $$log' EXIT; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; \
	    if ! $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >$$log 2>&1; then \
	      cat $$log; echo "fuzz: $$f failed; running it again (a saved failing input fails again)"; \
	      $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	    fi; \
	  done; \
	done

# Performance figures of issue 6 (docs/benchmarks.md): needs swtpm, tpm2-tools, PostgreSQL; 1-5 min on 2 cores.
# Larger runs: go run ./cmd/tpmline-bench -help (e.g. -ca-enrollments 100000 for the long memory run).
bench: build
	$(GO) test -count=1 ./bench/
	$(GO) test -count=1 -run '^$$' -bench SaltedSessions -benchtime 1x ./bench/
	$(GO) test -count=1 -run '^$$' -bench VerifyState -benchtime 1x ./inventory/
	./bin/tpmline-bench $(BENCHFLAGS)

# The chaos soak of issue 14 (package soak, docs/reliability.md): 10,000 simulated boards on 8 slots through
# the real station, upstream-ca and board-agent against a throw-away PostgreSQL, while seeded faults SIGKILL
# and restart the station, the CA and PostgreSQL and cut relay connections; then the invariants, and the
# two-CA race. Hours on 2 cores; the short version (soak.TestShortSoak) is part of make test.
# Smaller or replayed runs: make soak SOAKFLAGS="-boards 1000 -faults 10 -seed N".
SOAKFLAGS ?=
soak:
	$(GO) run ./cmd/tpmline-soak $(SOAKFLAGS)
