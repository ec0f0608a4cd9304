package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// TestFleetBenchScriptWritesItsTable runs scripts/fleet-bench.sh (make fleet-bench)
// small, on a copy of a BENCHMARKS file: the script builds the release binaries, runs
// gameday scale, and replaces exactly what stands between its markers with the command,
// the table and the shared-cache line, leaving the rest of the file as it was.
func TestFleetBenchScriptWritesItsTable(t *testing.T) {
	bench := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	const before, after = "# Benchmarks\n\nabove\n\n", "\nbelow\n"
	old := before + "<!-- fleet-bench begin -->\nan old table\n<!-- fleet-bench end -->" + after
	if err := os.WriteFile(bench, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", filepath.Join(svctest.ModuleRoot(t), "scripts", "fleet-bench.sh"))
	cmd.Env = append(os.Environ(), "INSTANCES=1,2", "CORES=1", "WORKTIME=50ms", "DURATION=4s", "ROUNDS=1", "BENCHMARKS="+bench)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fleet-bench.sh: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bench)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	t.Logf("%s", got)
	if !strings.HasPrefix(got, before+"<!-- fleet-bench begin -->\n") || !strings.HasSuffix(got, "<!-- fleet-bench end -->"+after) {
		t.Fatalf("the text around the markers changed:\n%s", got)
	}
	for _, want := range []string{
		"`INSTANCES=1,2 CORES=1 WORKTIME=50ms DURATION=4s ROUNDS=1 make fleet-bench`",
		"exit status 0:",
		"\n| 1 | 20 | 25 | ",
		"\n| 2 | 40 | 50 | ",
		"asked of the 1 others directly: 20 of 20 answers were hits, 0 wrong, 0 errors.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the written section lacks %q", want)
		}
	}
	if strings.Contains(got, "an old table") {
		t.Error("the old table is still there")
	}
}
