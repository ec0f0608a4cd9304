// Package calcproc runs a calcserver binary as a user runs it: a process of its own with
// a server.ini in a directory of its own, logging to a file there. gameday bench and
// serverprobe start the servers they measure with it.
package calcproc

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

// StartTimeout bounds Start's wait for the startup line.
const StartTimeout = 30 * time.Second

// LogName is the name of the log file in the server's directory.
const LogName = "calcserver.log"

var startedRE = regexp.MustCompile(`msg="calcserver started".* port=(\d+)`)

// Proc is one running calcserver process.
type Proc struct {
	cmd  *exec.Cmd
	addr string
	log  string
	out  *svctest.Tail // its stdout and stderr
	done chan struct{}
	err  error // cmd.Wait's result, once done is closed
}

// Start writes dir/server.ini — Port = 0, LogLocation dir/calcserver.log (a log left
// by an earlier server is removed first), then ini, lines of "Key = value" — and starts
// bin -config with it, in dir. It returns once the startup line in the log names the
// port. When the server exits before that, ctx ends or StartTimeout passes, Start stops
// it and returns an error with the tail of its output and its log.
//
// The server runs in a process group of its own, so that a Ctrl-C on the terminal
// reaches only the caller, which stops the server itself; the kernel kills the server
// if the caller dies first (svctest.Spawn).
func Start(ctx context.Context, bin, dir, ini string) (*Proc, error) {
	return StartEnv(ctx, bin, dir, ini, nil)
}

// StartEnv is Start with env, "KEY=value" entries, added to the server's environment
// (this process's); an entry overrides a variable of the same name.
func StartEnv(ctx context.Context, bin, dir, ini string, env []string) (*Proc, error) {
	return start(ctx, bin, dir, ini, 0, env)
}

// StartPort is StartEnv on a fixed port instead of any free one: a balancer's
// upstream list names it, so a restarted server must take its predecessor's place.
// When another process holds the port, the error wraps ErrPortInUse, so the caller
// can pick another port or, after a restart, try again a moment later.
func StartPort(ctx context.Context, bin, dir, ini string, port int, env []string) (*Proc, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("calcproc: port %d is not 1..65535", port)
	}
	return start(ctx, bin, dir, ini, port, env)
}

// ErrPortInUse marks a start that failed because another process holds the port.
var ErrPortInUse = errors.New("calcproc: port in use")

func start(ctx context.Context, bin, dir, ini string, port int, env []string) (*Proc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("calcserver directory: %w", err)
	}
	log := filepath.Join(dir, LogName)
	if err := os.Remove(log); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove the previous log: %w", err)
	}
	cfg := filepath.Join(dir, "server.ini")
	text := fmt.Sprintf("Port = %d\nLogLocation = %q\n%s\n", port, log, ini)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", cfg, err)
	}
	p := &Proc{log: log, out: &svctest.Tail{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "-config", cfg)
	p.cmd.Dir = dir
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.WaitDelay = 2 * time.Second
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := svctest.Spawn(p.cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()

	deadline := time.NewTimer(StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		b, _ := os.ReadFile(log)
		if m := startedRE.FindSubmatch(b); m != nil {
			p.addr = "127.0.0.1:" + string(m[1])
			return p, nil
		}
		select {
		case <-p.done:
			b, _ = os.ReadFile(log) // what it logged on its way out
			err := fmt.Errorf("%s -config %s exited before it started: %v\n%s%s", bin, cfg, p.err, p.out, lastLines(b, 5))
			if port != 0 && (strings.Contains(p.out.String(), "address already in use") || bytes.Contains(b, []byte("address already in use"))) {
				err = fmt.Errorf("%w: %w", ErrPortInUse, err)
			}
			return nil, err
		case <-ctx.Done():
			_ = p.Stop(0)
			return nil, ctx.Err()
		case <-deadline.C:
			_ = p.Stop(0)
			return nil, fmt.Errorf("%s logged no startup line in %s within %v\n%s%s", bin, log, StartTimeout, p.out, lastLines(b, 5))
		case <-tick.C:
		}
	}
}

// Addr is the server's address, "127.0.0.1:PORT".
func (p *Proc) Addr() string { return p.addr }

// Log is the path of the server's log file.
func (p *Proc) Log() string { return p.log }

// Pid is the server's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Alive returns nil while the server runs, and an error saying how it ended once it has
// exited, so that a caller who sees refused connections can tell a crash from its own
// mistake.
func (p *Proc) Alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("calcserver (pid %d) is gone: %v\n%s", p.Pid(), p.err, p.out)
	default:
		return nil
	}
}

// Kill sends SIGKILL and waits for the server to be gone, as a crash or a lost machine
// would end it: no drain, connections cut. Killing a server that has exited is a no-op.
func (p *Proc) Kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("calcserver (pid %d): SIGKILL: %w", p.Pid(), err)
	}
	<-p.done // bounded: the process is gone and WaitDelay caps the copying of its output
	return nil
}

// Stop sends SIGTERM and waits for the server to exit; if it has not within grace, Stop
// kills it and says so. A server that exits with an error, before or after the signal,
// makes Stop return that error.
func (p *Proc) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.exited()
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("calcserver (pid %d): SIGTERM: %w", p.Pid(), err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return p.exited()
	case <-t.C:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("calcserver (pid %d) did not exit within %v of SIGTERM; killed it\n%s", p.Pid(), grace, p.out)
}

func (p *Proc) exited() error {
	if p.err != nil {
		return fmt.Errorf("calcserver (pid %d) exited: %v\n%s", p.Pid(), p.err, p.out)
	}
	return nil
}

// lastLines is the last n lines of a log, after a newline, or "" for an empty one.
func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := string(bytes.Join(lines, []byte("\n")))
	if s == "" {
		return ""
	}
	return "\n" + s
}
