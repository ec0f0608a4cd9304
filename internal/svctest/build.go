package svctest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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

// RaceBuild is a command of this module built with -race once per test binary, for
// the tests that run it as a process of its own. The zero value is ready; declare one
// per package and call Remove from TestMain after m.Run.
type RaceBuild struct {
	once sync.Once
	path string
	err  error
}

// Path builds pkg (a path relative to the module root, such as "./cmd/calcserver")
// with go build -race into a temporary directory the first time it is called, and
// returns the binary's path; a failed build is fatal, then and on every later call.
func (b *RaceBuild) Path(t testing.TB, pkg string) string {
	t.Helper()
	b.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			b.err = err
			return
		}
		dir, err := os.MkdirTemp("", "race-build-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.Command("go", "build", "-race", "-o", b.path, pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("svctest: go build -race %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Remove deletes the binary, if one was built.
func (b *RaceBuild) Remove() {
	if b.path != "" {
		os.RemoveAll(filepath.Dir(b.path))
	}
}
