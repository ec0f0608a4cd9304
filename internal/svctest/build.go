package svctest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BuildStatic builds the command pkg (a path relative to the module root, such as
// "./cmd/calcserver") the way a release does — CGO_ENABLED=0, -trimpath, stripped, with
// version stamped — into a temporary directory of t, and returns the binary's path. A
// failed build is fatal.
func BuildStatic(t testing.TB, pkg, version string) string {
	t.Helper()
	root := ModuleRoot(t)
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("svctest: go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// ModuleRoot is the directory of the module's go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// moduleRoot is ModuleRoot for code that has no test to fail, such as StartDynalite.
func moduleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("svctest: go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(b))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("svctest: not inside the module")
	}
	return filepath.Dir(mod), nil
}
