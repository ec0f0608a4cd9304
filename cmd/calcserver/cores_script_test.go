package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// TestBenchCoresScriptMeasures runs scripts/bench-cores.sh (make bench-cores) small:
// 10 jobs of 100ms on 2 cores, once per mode. It checks what holds on any machine,
// however busy: the script builds, runs and parses the release binaries' access log,
// every job is measured, and no job held its core for less than WorkTime (the script
// itself exits 1 then). How close the holds come to WorkTime is the benchmark's
// business, not this test's.
func TestBenchCoresScriptMeasures(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	cmd := exec.Command("bash", filepath.Join(svctest.ModuleRoot(t), "scripts", "bench-cores.sh"))
	cmd.Env = append(os.Environ(), "JOBS=10", "CORES=2", "WORKTIME=100ms", "MODES=sleep burn", "RUNS=1",
		"PORT="+strconv.Itoa(port))
	var stderr svctest.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench-cores.sh: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	t.Logf("bench-cores.sh:\n%s", out)

	modes := map[string]bool{}
	for line := range strings.Lines(string(out)) {
		// | mode | run | jobs | min hold (ms) | p50 hold (ms) | p99 hold (ms) | …
		f := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(f) < 9 || strings.TrimSpace(f[1]) != "1" {
			continue
		}
		mode := strings.TrimSpace(f[0])
		num := func(i int) float64 {
			t.Helper()
			v, err := strconv.ParseFloat(strings.TrimSpace(f[i]), 64)
			if err != nil {
				t.Fatalf("%s: column %d of %q: %v", mode, i+1, line, err)
			}
			return v
		}
		jobs, minHold, p50, p99, rate := num(2), num(3), num(4), num(5), num(7)
		if jobs != 10 {
			t.Errorf("%s: %v jobs measured, want 10", mode, jobs)
		}
		if minHold < 100 || p50 < minHold || p99 < p50 {
			t.Errorf("%s: holds min %v ms, p50 %v ms, p99 %v ms: want 100 ≤ min ≤ p50 ≤ p99", mode, minHold, p50, p99)
		}
		if rate <= 0 {
			t.Errorf("%s: %v jobs/s", mode, rate)
		}
		modes[mode] = true
	}
	if !modes["sleep"] || !modes["burn"] || len(modes) != 2 {
		t.Fatalf("measured modes %v, want sleep and burn", modes)
	}
}
