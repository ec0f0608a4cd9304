package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

const (
	// startTimeout bounds the wait for calcserver's startup line.
	startTimeout = 30 * time.Second
	// shutdownTimeout is the servers' ShutdownTimeout; stopGrace is how long stop waits
	// after SIGTERM before it kills.
	shutdownTimeout = 5 * time.Second
	stopGrace       = shutdownTimeout + 10*time.Second
)

var portRE = regexp.MustCompile(`msg="calcserver started".* port=(\d+)`)

// server is one calcserver process.
type server struct {
	cmd  *exec.Cmd
	base string        // "http://127.0.0.1:PORT"
	log  string        // its log file
	out  *svctest.Tail // its stdout and stderr
	done chan struct{}
	err  error // cmd.Wait's result, once done is closed
}

// startServer writes dir/server.ini — the common settings of o, a log file in dir, port
// 0, and extra — starts the calcserver binary with it, and waits until the startup line
// in its log names the port.
func startServer(ctx context.Context, o Options, dir, extra string) (*server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var ini strings.Builder
	fmt.Fprintf(&ini, "LogLocation = %q\nPort = 0\n", dir+string(filepath.Separator))
	fmt.Fprintf(&ini, "Cores = %d\nQueueSize = %d\nWorkTime = %v\nWorkMode = %s\n", o.Cores, o.QueueSize, o.WorkTime, o.WorkMode)
	fmt.Fprintf(&ini, "ShutdownTimeout = %v\n", shutdownTimeout)
	ini.WriteString(extra)
	cfg := filepath.Join(dir, "server.ini")
	if err := os.WriteFile(cfg, []byte(ini.String()), 0o644); err != nil {
		return nil, err
	}
	s := &server{log: filepath.Join(dir, "calcserver.log"), out: &svctest.Tail{}, done: make(chan struct{})}
	s.cmd = exec.Command(o.Calcserver, "-config", cfg)
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.WaitDelay = 2 * time.Second
	// Its own process group, so a Ctrl-C on the terminal reaches only gameday, which
	// stops the server itself; Spawn has the kernel kill it if gameday dies first.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := svctest.Spawn(s.cmd); err != nil {
		return nil, err
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()

	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		b, _ := os.ReadFile(s.log)
		if m := portRE.FindSubmatch(b); m != nil {
			s.base = "http://127.0.0.1:" + string(m[1])
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s exited: %v: %s%s", o.Calcserver, s.err, s.out, lastLines(b, 5))
		case <-ctx.Done():
			_ = s.stop()
			return nil, ctx.Err()
		case <-deadline.C:
			_ = s.stop()
			return nil, fmt.Errorf("%s logged no startup line within %v: %s%s", o.Calcserver, startTimeout, s.out, lastLines(b, 5))
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM and waits for the exit, killing the server if it takes longer than
// stopGrace.
func (s *server) stop() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("calcserver: SIGTERM: %w", err)
	}
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-s.done:
		if s.err != nil {
			return fmt.Errorf("calcserver exited after SIGTERM: %v: %s", s.err, s.out)
		}
		return nil
	case <-t.C:
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	return fmt.Errorf("calcserver did not exit within %v of SIGTERM; killed it", stopGrace)
}

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
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
