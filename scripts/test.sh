#!/usr/bin/env bash
# Runs the whole test suite the way CI does: installs what the tests need when it is
# missing, then lint, the race-enabled tests and a short run of every fuzz target.
# Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
	echo "scripts/test.sh: Go 1.26 or newer is required (https://go.dev/doc/install)" >&2
	exit 1
fi

bash scripts/deps.sh

# Every file the repository holds (tracked or new, not ignored); without git, every file.
files() {
	if git rev-parse --git-dir >/dev/null 2>&1; then
		git ls-files --cached --others --exclude-standard
	else
		find . -type f -not -path './.git/*' | sed 's|^\./||'
	fi
}

echo "== gofmt"
mapfile -t gofiles < <(files | grep '\.go$')
unformatted=$(gofmt -l "${gofiles[@]}")
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
echo "== shellcheck"
# Shell scripts: *.sh, and files whose first line starts a shell (.ci/run).
scripts=()
while IFS= read -r f; do
	[ -f "$f" ] || continue
	case "$f" in
	*.sh) scripts+=("$f") ;;
	*) if head -n1 "$f" | grep -Eq '^#!.*[/ ](ba|da|k)?sh( |$)'; then scripts+=("$f"); fi ;;
	esac
done < <(files)
shellcheck "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts"
echo "== go vet"
go vet ./...
echo "== staticcheck"
go tool staticcheck ./...
echo "== go test -race"
go test -race -count=1 -timeout 20m "$@" ./...
# Every fuzz target for a bounded time (FUZZTIME, default 10s; make fuzz gives 30s):
# a few minutes in all, compiling included. The seed corpora already ran above.
echo "== fuzz"
bash scripts/fuzz.sh "${FUZZTIME:-10s}"
