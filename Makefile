# Convenience targets; scripts/test.sh is what CI runs.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build test run bench load fuzz deps lint clean release gameday-ceiling bench-hit bench-cores bench-server fleet-bench

build:
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/calcserver ./cmd/calcserver
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o bin/gameday ./cmd/gameday

# bin/calcserver and bin/calcserver.sha256; with BUCKET=... (PREFIX, CONFIG, AWS, OUT) also
# uploads them and the server.ini for the EC2 user data. See scripts/release.sh.
release:
	VERSION='$(VERSION)' bash scripts/release.sh

test:
	bash scripts/test.sh

deps:
	bash scripts/deps.sh

lint:
	gofmt -l . | (! grep .)
	go vet ./...
	go tool staticcheck ./...

run:
	go run ./cmd/calcserver -port 8080

bench: bench-hit bench-cores bench-server
	go test -run '^$$' -bench . -benchmem -count 6 ./internal/calc ./internal/queue ./internal/server ./internal/logging

# The /calc hit path of the release binary, logging to a file, next to a bare net/http
# server, under wrk (see BENCHMARKS.md).
bench-hit:
	bash scripts/bench-hit.sh

# How exactly the simulated cores keep WorkTime, sleeping and burning: the release binary
# sent 62 one-second jobs at once on 2 cores, measured from its access log (see BENCHMARKS.md).
bench-cores:
	bash scripts/bench-cores.sh

# Overload (503s and /healthcheck under a burst), coalescing and memory of the release
# binary, next to a bare net/http server where it applies (see BENCHMARKS.md).
bench-server:
	bash scripts/bench-server.sh

# Load runs with real backends (needs what scripts/deps.sh installs), at a constant arrival
# rate on gameday's pacer; see BENCHMARKS.md.
load:
	go test -run '^$$' -bench 'LoadHit|Outage' -benchtime 1x -count 5 ./cmd/calcserver

# Miss throughput of 1, 2, 4 and 8 calcservers behind nginx against linear, and the
# shared cache across them (gameday scale), written into BENCHMARKS.md.
fleet-bench:
	bash scripts/fleet-bench.sh

# How fast one gameday process goes, next to wrk, against a cache-hit-only calcserver.
gameday-ceiling:
	bash scripts/gameday-ceiling.sh

# Every fuzz target, 30s each (scripts/test.sh runs them 10s each).
fuzz:
	bash scripts/fuzz.sh 30s

clean:
	rm -rf bin
