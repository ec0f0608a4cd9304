# shellcheck shell=bash
# Helpers the benchmark scripts source from the repository root: a work directory that
# goes away on exit with the servers started in it, release builds, and waiting for a
# server to answer.

# work_dir sets dir to a new temporary directory and pids to an empty list of
# background processes, and has the exit stop every process still in pids and remove
# dir.
work_dir() {
	dir=$(mktemp -d)
	pids=()
	trap cleanup_work_dir EXIT
}

cleanup_work_dir() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf -- "$dir"
}

# stop_pid PID sends SIGTERM to PID, one of pids, waits for it to exit (calcserver
# flushes its log as it shuts down) and takes it out of pids.
stop_pid() {
	local p keep=()
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	pids=("${keep[@]}")
}

# build_release PKG... builds each command PKG (such as cmd/calcserver) as a release
# does, static, -trimpath and stripped, into $dir under the last element of its path.
build_release() {
	local pkg
	for pkg; do
		CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dir/$(basename "$pkg")" "./$pkg"
	done
}

# wait_for URL [FILE] polls URL for up to 10 s until it answers. If it does not, it
# prints FILE (such as the server's stderr) and exits 1.
wait_for() {
	for _ in $(seq 100); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return
		sleep 0.1
	done
	echo "$(basename "$0" .sh): $1 does not answer" >&2
	[ -z "${2:-}" ] || cat -- "$2" >&2
	exit 1
}
