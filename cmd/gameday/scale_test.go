package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/unicorn-rentals/unicorn/internal/gameday/bench"
)

// TestScale measures fleets of 1 and 2 calcservers behind nginx (building calcserver
// from this repository, as a user's run does): two rows near linear, answers spread
// over both instances, and every shared-cache ask a hit; the JSON holds the same.
func TestScale(t *testing.T) {
	jsonPath := t.TempDir() + "/scale.json"
	var stdout, stderr bytes.Buffer
	code := runScale(context.Background(), []string{
		"-instances", "1,2", "-cores", "1", "-work-time", "50ms", "-duration", "4s",
		"-shared-keys", "5", "-json", jsonPath,
	}, &stdout, &stderr)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"| instances | capacity/s |",
		"\n| 1 | 20 | 25 | ",
		"\n| 2 | 40 | 50 | ",
		"5 keys, each computed on one instance, asked of the 1 others directly: 5 of 5 answers were hits, 0 wrong, 0 errors.",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	var res bench.ScaleResult
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("-json: %v\n%s", err, b)
	}
	if len(res.Rows) != 2 || res.Shared == nil || res.Shared.Hits != 5 {
		t.Fatalf("-json: %s", b)
	}
	if two := res.Rows[1]; two.MinShare < 0.3 || two.MaxShare > 0.7 {
		t.Errorf("2 instances: shares %.2f–%.2f of the answers; want both near half", two.MinShare, two.MaxShare)
	}
}

func TestScaleProblems(t *testing.T) {
	res := bench.ScaleResult{
		Rows: []bench.ScaleRow{
			{Instances: 1, Capacity: 20, Correct: 19.5, Ratio: 0.975},
			{Instances: 2, Capacity: 40, Correct: 30, Ratio: 0.75},
			{Instances: 4, Capacity: 80, Correct: 80, Ratio: 1, Wrong: 2},
		},
		Shared: &bench.SharedCheck{Instances: 4, Keys: 2, Asked: 6, Hits: 5, Errors: 1},
	}
	got := strings.Join(scaleProblems(res, 0.1), "\n")
	for _, want := range []string{
		"2 instances: 30.0 correct/s is 0.750× linear (40/s): outside -tolerance 0.1",
		"4 instances: 2 wrong answers",
		"shared cache: 5 of 6 asks on other instances were hits (0 wrong, 1 errors)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "1 instances") {
		t.Errorf("1 instance at 0.975× is within 0.1:\n%s", got)
	}
	res.Rows, res.Shared = res.Rows[:1], nil
	if p := scaleProblems(res, 0.1); len(p) != 0 {
		t.Errorf("problems %v, want none", p)
	}
}

func TestScaleUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-instances", "1,x"}, `-instances: "x" is not a fleet size (1..64)`},
		{[]string{"-instances", "0"}, `-instances: "0" is not a fleet size`},
		{[]string{"-duration", "3s"}, "-duration 3s: must be at least 4s"},
		{[]string{"-overload", "0.5"}, "-overload 0.5: must be at least 1"},
		{[]string{"-tolerance", "0"}, "-tolerance 0: must be between 0 and 1"},
		{[]string{"-rounds", "0"}, "-rounds 0: must be 1..100"},
		{[]string{"-cores", "1024", "-work-time", "1ms", "-instances", "64"}, "more than 1000000"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		var stdout, stderr bytes.Buffer
		if code := runScale(context.Background(), tc.args, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
