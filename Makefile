# Convenience targets; scripts/test.sh is what CI runs.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build test run bench load fuzz deps lint clean release gameday-ceiling bench-hit

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

bench: bench-hit
	go test -run '^$$' -bench . -benchmem -count 6 ./internal/calc ./internal/server ./internal/logging

# The /calc hit path of the release binary, logging to a file, next to a bare net/http
# server, under wrk (see BENCHMARKS.md).
bench-hit:
	bash scripts/bench-hit.sh

# Load runs with real backends (needs what scripts/deps.sh installs); see BENCHMARKS.md.
load:
	go test -run '^$$' -bench 'LoadHit|Outage' -benchtime 1x -count 5 ./cmd/calcserver

# How fast one gameday process goes, next to wrk, against a cache-hit-only calcserver.
gameday-ceiling:
	bash scripts/gameday-ceiling.sh

fuzz:
	go test -fuzz FuzzParse -fuzztime 30s ./internal/config
	go test -fuzz FuzzInputKey -fuzztime 30s ./internal/server

clean:
	rm -rf bin
