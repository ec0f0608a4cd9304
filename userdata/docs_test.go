//go:build linux

package userdata_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeDocumentsEverySetting keeps "Deploy on EC2" true: every setting the user data
// and the release script read from the environment is in the README with its default.
func TestReadmeDocumentsEverySetting(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	// A setting is a line "NAME=${NAME:-default}" or "NAME=${NAME-default}".
	setting := regexp.MustCompile(`(?m)^([A-Z][A-Z0-9_]*)=\$\{([A-Z][A-Z0-9_]*):?-`)
	for _, file := range []string{"userdata/user-data.sh", "scripts/release.sh"} {
		b, err := os.ReadFile(filepath.Join(repo, file))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range setting.FindAllStringSubmatch(string(b), -1) {
			if m[1] == m[2] {
				names = append(names, m[1])
			}
		}
		if len(names) < 5 {
			t.Fatalf("%s: found only the settings %v", file, names)
		}
		for _, n := range names {
			if !strings.Contains(string(readme), "| `"+n+"` |") {
				t.Errorf("README.md has no table row for %s's setting %s", file, n)
			}
		}
	}
}
