package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/gameday/bench"
)

// TestBench runs a short bench of none, memory and redis end to end: calcserver built
// from the repository, a real redis-server, the same keys for each.
func TestBench(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	var stdout, stderr bytes.Buffer
	begin := time.Now()
	code := runBench(context.Background(), []string{
		"-strategies", "none,memory,redis",
		"-duration", "3s", "-rate", "150", "-work-time", "20ms",
		"-keys", "100", "-unique", "0", "-seed", "42",
		"-out", out,
	}, &stdout, &stderr)
	t.Logf("took %v; stderr:\n%s", time.Since(begin), stderr.String())
	if code != 0 {
		t.Fatalf("exit %d", code)
	}

	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var results []bench.Result
	if err := json.Unmarshal(b, &results); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if len(results) != 3 {
		t.Fatalf("results.json has %d objects, want 3", len(results))
	}
	by := map[string]bench.Result{}
	for i, want := range []string{"none", "memory", "redis"} {
		r := results[i]
		if r.Strategy != want || r.Status != bench.StatusOK {
			t.Errorf("result %d: %q %s %s", i, r.Strategy, r.Status, r.Reason)
		}
		if r.Wrong != 0 || r.Requests == 0 || r.Correct == 0 || r.Seed != 42 || len(r.Series) < 2 {
			t.Errorf("%s: %d requests, %d correct, %d wrong, seed %d, %d seconds of series",
				r.Strategy, r.Requests, r.Correct, r.Wrong, r.Seed, len(r.Series))
		}
		if got := float64(r.Correct) / 3; r.CorrectPerSec != got {
			t.Errorf("%s: correct/s %v, want %v", r.Strategy, r.CorrectPerSec, got)
		}
		if r.Latency.P50 <= 0 || r.Latency.P99 < r.Latency.P50 {
			t.Errorf("%s: latency %+v", r.Strategy, r.Latency)
		}
		by[r.Strategy] = r
	}
	// One core at 20 ms computes at most 50 keys a second (concurrent requests for one
	// key share a job); a cache answers the repeats at once.
	for _, s := range []string{"memory", "redis"} {
		if by[s].CorrectPerSec <= by["none"].CorrectPerSec {
			t.Errorf("%s: %.1f correct/s, not more than none's %.1f", s, by[s].CorrectPerSec, by["none"].CorrectPerSec)
		}
		if by[s].Score <= by["none"].Score {
			t.Errorf("%s: score %.0f, not more than none's %.0f", s, by[s].Score, by["none"].Score)
		}
	}

	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(md, stdout.Bytes()) {
		t.Error("stdout is not results.md")
	}
	rows := tableRows(t, string(md))
	if len(rows) != 3 {
		t.Fatalf("results.md has %d rows, want 3:\n%s", len(rows), md)
	}
	for i, s := range []string{"none", "memory", "redis"} {
		if cells := strings.Split(rows[i], "|"); len(cells) != 10 || strings.TrimSpace(cells[1]) != s {
			t.Errorf("row %d: %q", i, rows[i])
		}
	}

	for _, c := range []string{bench.ChartCorrectPerSec, bench.ChartScore, bench.ChartAnswers} {
		if err := bench.CheckChart(filepath.Join(out, c+".svg")); err != nil {
			t.Error(err)
		}
	}
}

// tableRows returns the rows under the results table's header.
func tableRows(t *testing.T, md string) []string {
	t.Helper()
	_, after, ok := strings.Cut(md, bench.TableHeader+"\n")
	if !ok {
		t.Fatalf("results.md has no table header:\n%s", md)
	}
	lines := strings.Split(after, "\n")[1:] // below the |---| line
	var rows []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "|") {
			break
		}
		rows = append(rows, l)
	}
	return rows
}

// TestBenchUsage rejects bad command lines with exit 2 and a message naming the
// problem, before starting anything.
func TestBenchUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-strategies", "none,postgres"}, `unknown strategy "postgres"`},
		{[]string{"-strategies", "redis,redis"}, `strategy "redis" named twice`},
		{[]string{"-rate", "0"}, "-rate 0: must be positive"},
		{[]string{"-duration", "-1s"}, "-duration -1s: must be positive"},
		{[]string{"-work-mode", "spin"}, `-work-mode "spin"`},
		{[]string{"-seed", "0"}, "-seed 0"},
		{[]string{"-charts", "gif"}, `-charts "gif"`},
		{[]string{"-instances", "0"}, "-instances 0: must be 1..64"},
		{[]string{"-no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		var stdout, stderr bytes.Buffer
		code := runBench(context.Background(), tc.args, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("%v: stdout %q", tc.args, stdout.String())
		}
	}
}

// TestBenchMissingCalcserver fails with exit 1 when -calcserver names no file.
func TestBenchMissingCalcserver(t *testing.T) {
	var stdout, stderr bytes.Buffer
	out := filepath.Join(t.TempDir(), "out")
	code := runBench(context.Background(), []string{"-calcserver", filepath.Join(t.TempDir(), "nope"), "-out", out}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "-calcserver") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("-out created: %v", err)
	}
}

// TestBenchDocs keeps the README's bench section true: it names every flag.
func TestBenchDocs(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n### `gameday bench`\n")
	if !ok {
		t.Fatal("README.md has no ### `gameday bench` section")
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var f benchFlags
	benchFlagSet(&f, io.Discard).VisitAll(func(fl *flag.Flag) {
		if !strings.Contains(section, "`-"+fl.Name) {
			t.Errorf("README.md's bench section does not document -%s", fl.Name)
		}
	})
	for _, s := range bench.AllStrategies() {
		if !strings.Contains(section, "`"+s+"`") {
			t.Errorf("README.md's bench section does not name strategy %s", s)
		}
	}
}
