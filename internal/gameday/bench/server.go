package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calcproc"
)

const (
	// shutdownTimeout is the servers' ShutdownTimeout; stopGrace is how long stopping
	// one waits after SIGTERM before it kills.
	shutdownTimeout = 5 * time.Second
	stopGrace       = shutdownTimeout + 10*time.Second
)

// startServer starts the calcserver binary in dir with the common settings of o and
// extra, with env added to its environment, and waits until its startup line names the
// port.
func startServer(ctx context.Context, o Options, dir, extra string, env []string) (*calcproc.Proc, error) {
	return calcproc.StartEnv(ctx, o.Calcserver, dir, serverINI(o)+extra, env)
}

// serverINI is the server.ini lines every bench server gets: o's simulated core and
// the stop timeout.
func serverINI(o Options) string {
	return fmt.Sprintf("Cores = %d\nQueueSize = %d\nWorkTime = %v\nWorkMode = %s\nShutdownTimeout = %v\n",
		o.Cores, o.QueueSize, o.WorkTime, o.WorkMode, shutdownTimeout)
}

// Module is the module path of this repository, whose cmd/calcserver BuildCalcserver
// builds.
const Module = "github.com/unicorn-rentals/unicorn"

// ModuleRoot returns the root of this repository's module if dir is inside it (walking
// up to the nearest go.mod), else "".
func ModuleRoot(dir string) string {
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			if modulePath(b) == Module {
				if fi, err := os.Stat(filepath.Join(dir, "cmd", "calcserver")); err == nil && fi.IsDir() {
					return dir
				}
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func modulePath(gomod []byte) string {
	for line := range strings.SplitSeq(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// BuildCalcserver builds root's ./cmd/calcserver with `go build` into dir and returns
// the binary's path.
func BuildCalcserver(ctx context.Context, root, dir string) (string, error) {
	out := filepath.Join(dir, "calcserver")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/calcserver")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/calcserver in %s: %v\n%s", root, err, bytes.TrimSpace(b))
	}
	return out, nil
}

// FindCalcserver looks for an installed calcserver: next to the running executable,
// then on PATH.
func FindCalcserver() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "calcserver")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath("calcserver"); err == nil {
		return p, nil
	}
	return "", errors.New("no calcserver next to this executable or on PATH (run from the repository to build it, or pass -calcserver)")
}
