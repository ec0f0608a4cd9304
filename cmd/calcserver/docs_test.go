package main

import (
	"io"
	"os"
	"strings"
	"testing"

	"github.com/unicorn-rentals/unicorn/internal/config"
)

// TestDocsNameEveryKeyAndFlag keeps the README and the example configuration true: a
// key or flag they do not show does not exist for users.
func TestDocsNameEveryKeyAndFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../configs/server.ini")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range config.Keys() {
		if !strings.Contains(string(readme), "`"+k+"`") {
			t.Errorf("README.md does not document key %s", k)
		}
		if !strings.Contains(string(example), k) {
			t.Errorf("configs/server.ini does not show key %s", k)
		}
	}
	// The flags are whatever run defines: ask it with -h.
	var names []string
	var stderr strings.Builder
	run([]string{"-h"}, env{getenv: func(string) string { return "" }, stdout: io.Discard, stderr: &stderr})
	for line := range strings.SplitSeq(stderr.String(), "\n") {
		if f, ok := strings.CutPrefix(strings.TrimSpace(line), "-"); ok {
			names = append(names, strings.Fields(f)[0])
		}
	}
	if len(names) < 5 {
		t.Fatalf("found only %v in -h output:\n%s", names, stderr.String())
	}
	for _, n := range names {
		if !strings.Contains(string(readme), "`-"+n+"`") {
			t.Errorf("README.md does not document flag -%s", n)
		}
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := config.Load("../../configs/server.ini")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if d := config.Default(); cfg.Port != d.Port || cfg.WorkTime != d.WorkTime || cfg.QueueSize != d.QueueSize || cfg.WorkMode != d.WorkMode {
		t.Fatalf("the example's values differ from the defaults it claims: %+v", cfg)
	}
}
