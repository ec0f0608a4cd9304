package main

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
)

// TestDocsNameEveryFlag keeps the README's gameday sections true: a flag that `run`, `scale` or
// `check` defines but its section does not show does not exist for users. The flags are
// whatever the command prints for -h.
func TestDocsNameEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"run", "check", "scale"} {
		t.Run("gameday "+cmd, func(t *testing.T) {
			_, section, ok := strings.Cut(string(readme), "\n### `gameday "+cmd+"`\n")
			if !ok {
				t.Fatalf("README.md has no ### `gameday %s` section", cmd)
			}
			if end := strings.Index(section, "\n### "); end >= 0 {
				section = section[:end]
			}
			var stderr strings.Builder
			run([]string{cmd, "-h"}, env{ctx: context.Background(), stdout: io.Discard, stderr: &stderr})
			var names []string
			for line := range strings.SplitSeq(stderr.String(), "\n") {
				if f, ok := strings.CutPrefix(line, "  -"); ok {
					names = append(names, strings.Fields(f)[0])
				}
			}
			if len(names) < 5 {
				t.Fatalf("found only %v in %s -h:\n%s", names, cmd, stderr.String())
			}
			for _, n := range names {
				// A table row: "| `-rate N` | default | meaning |".
				if !strings.Contains(section, "| `-"+n+"`") && !strings.Contains(section, "| `-"+n+" ") {
					t.Errorf("README.md's gameday %s section has no table row for -%s", cmd, n)
				}
			}
		})
	}
}
