// Package svctest starts real redis-server, memcached, mariadbd and postgres processes
// on free loopback ports, so tests and benchmarks exercise the same servers production
// uses instead of fakes. It is a regular package, not a _test file, so a benchmark
// command can reuse it; the Redis, Memcached, MariaDB, Postgres and RedisCluster
// wrappers tie a process to a test's lifetime.
package svctest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// startAttempts bounds how often a start picks a new port after losing the race for
	// the one it picked to another process.
	startAttempts = 5
	// restartBindWindow is how long Restart keeps retrying its fixed port, because the
	// port of a killed process may still be held for a moment.
	restartBindWindow = 10 * time.Second
	// stopGrace is how long Stop waits after SIGTERM before it resorts to SIGKILL.
	stopGrace = 10 * time.Second
	// pollInterval is the pause between readiness probes; a server cannot signal that
	// it is ready, so it has to be asked.
	pollInterval = 25 * time.Millisecond
	// probeTimeout bounds a single readiness probe, so a server that accepts but never
	// answers cannot stall the wait past its deadline.
	probeTimeout = time.Second
	// waitDelay bounds how long Wait lingers for output pipes held open by a grandchild
	// after the process itself has exited.
	waitDelay = 2 * time.Second
	// tailSize is how much of a process's output is kept for error messages.
	tailSize = 8 << 10
)

// errAddrInUse marks a start that failed because the port was taken, so the caller
// knows that trying again with another port (or later, in Restart) can succeed.
var errAddrInUse = errors.New("svctest: address already in use")

// Proc is one service process. Its exported fields describe where it listens; they do
// not change across Restart.
type Proc struct {
	Name string // "redis", "memcached", "mariadb", "postgres", "dynalite" or "mongod"
	Addr string // "127.0.0.1:PORT"
	Port int
	Dir  string // its data directory

	bin     string
	argsFor func(port int) []string
	// probe reports nil once the server on addr answers and is the process with the
	// given pid; a server that answers as another process is a stranger that won the
	// race for the port.
	probe func(ctx context.Context, addr string, pid int) error
	wait  time.Duration // readiness deadline for one launch
	// setup, if set, adjusts each launch's command before it starts, such as the
	// user it runs as.
	setup func(cmd *exec.Cmd)
	// stopSignal asks the server to shut down cleanly; SIGTERM when zero.
	stopSignal syscall.Signal
	// tree marks a server whose work is done by child processes (PostgreSQL's
	// backends, one per connection): Kill, Pause and Resume signal them too, so that
	// a crash or a freeze takes the whole server, as it would the machine it runs on.
	tree bool

	mu  sync.Mutex
	cur *run
}

// run is one launch of a Proc's binary. A Restart makes a new run, so the output tail in
// an error message belongs to the launch that failed.
type run struct {
	cmd  *exec.Cmd
	out  *Tail
	done chan struct{} // closed once cmd.Wait has returned
	err  error         // cmd.Wait's result; read only after done is closed
}

// Running reports whether the process of the latest start is still alive.
func (p *Proc) Running() bool {
	r := p.current()
	if r == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// Exited reports nil while the process of the latest start runs. Once it has ended, for
// whatever reason, it says how, with the tail of the process's output: a test that
// shares one server among many calls it to tell a crashed server from a failing test.
func (p *Proc) Exited() error {
	r := p.current()
	if r == nil {
		return errors.New("svctest: " + p.Name + " was never started")
	}
	select {
	case <-r.done:
	default:
		return nil
	}
	status := "exited normally"
	if r.err != nil {
		status = r.err.Error()
	}
	return p.errorf(r, "%s", status)
}

// Output returns the last few kilobytes the process of the latest start wrote to its
// stdout and stderr, which for mariadbd is its error log.
func (p *Proc) Output() string {
	r := p.current()
	if r == nil {
		return ""
	}
	return r.out.String()
}

// Kill sends SIGKILL and waits for the process to be gone, which simulates a crash: the
// server gets no chance to flush or say goodbye. Killing a stopped process is a no-op.
func (p *Proc) Kill() error {
	r := p.current()
	if r == nil {
		return nil
	}
	if err := p.signalRun(r, syscall.SIGKILL); err != nil {
		return p.errorf(r, "kill: %w", err)
	}
	<-r.done // bounded: the process is gone and waitDelay caps the pipe copying
	return nil
}

// Stop asks the process to exit with SIGTERM and waits up to 10 s before it kills it, so
// a server gets to shut down cleanly. Stopping a stopped process is a no-op.
func (p *Proc) Stop() error {
	r := p.current()
	if r == nil {
		return nil
	}
	select {
	case <-r.done:
		return nil
	default:
	}
	sig := p.stopSignal
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	if err := r.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return p.errorf(r, "%v: %w", sig, err)
	}
	_ = p.signalRun(r, syscall.SIGCONT) // a paused process handles the signal only once continued
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-r.done:
		return nil
	case <-t.C:
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	return p.errorf(r, "did not exit within %v of SIGTERM; killed it", stopGrace)
}

// Pause freezes the process with SIGSTOP: it keeps its port and its connections but
// answers nothing, like a hung server or a network partition. Resume undoes it.
func (p *Proc) Pause() error { return p.signal(syscall.SIGSTOP) }

// Resume continues a paused process.
func (p *Proc) Resume() error { return p.signal(syscall.SIGCONT) }

func (p *Proc) signal(sig syscall.Signal) error {
	r := p.current()
	if r == nil {
		return errors.New("svctest: " + p.Name + " was never started")
	}
	if err := p.signalRun(r, sig); err != nil {
		return p.errorf(r, "%v: %w", sig, err)
	}
	return nil
}

// signalRun sends sig to r's process and, for a tree, to its children. The parent
// of a tree is stopped first, so that it cannot fork a child the signal misses while
// its children are listed, and gets sig last; unless sig stops or kills it, it is
// then continued. A process that is already gone is no error.
func (p *Proc) signalRun(r *run, sig syscall.Signal) error {
	proc := r.cmd.Process
	send := func(s syscall.Signal) error {
		if err := proc.Signal(s); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return err
		}
		return nil
	}
	if !p.tree {
		return send(sig)
	}
	if err := send(syscall.SIGSTOP); err != nil {
		return err
	}
	for _, pid := range children(proc.Pid) {
		_ = syscall.Kill(pid, sig) // it may have exited since it was listed
	}
	if sig != syscall.SIGSTOP {
		if err := send(sig); err != nil {
			return err
		}
	}
	if sig != syscall.SIGSTOP && sig != syscall.SIGKILL {
		return send(syscall.SIGCONT)
	}
	return nil
}

// Restart starts the process again with the same port, arguments and data directory,
// stopping it first if it still runs, and waits until it is ready. The port is fixed, so
// a bind failure is retried for a few seconds while the old socket lingers.
func (p *Proc) Restart() error {
	if err := p.Stop(); err != nil {
		return err
	}
	deadline := time.Now().Add(restartBindWindow)
	for {
		err := p.launch()
		if err == nil || !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			return err
		}
		// Nothing signals when the kernel lets go of the port; back off and try again.
		time.Sleep(250 * time.Millisecond)
	}
}

func (p *Proc) current() *run {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// start launches p on a fresh port from pickPort, retrying with a new port when another
// process grabs the chosen one between the probe and the server's bind.
func (p *Proc) start(pickPort func() (int, error)) error {
	var err error
	for range startAttempts {
		var port int
		port, err = pickPort()
		if err != nil {
			return fmt.Errorf("svctest: %s: %w", p.Name, err)
		}
		p.Port = port
		p.Addr = net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
		err = p.launch()
		if err == nil || !errors.Is(err, errAddrInUse) {
			return err
		}
	}
	return err
}

// launch starts the binary on p.Port and waits until it answers. A launch that does not
// become ready is killed, so a failed start leaves no process behind.
func (p *Proc) launch() error {
	r := &run{out: &Tail{}, done: make(chan struct{})}
	r.cmd = exec.Command(p.bin, p.argsFor(p.Port)...)
	r.cmd.Dir = p.Dir
	r.cmd.Stdout = r.out
	r.cmd.Stderr = r.out
	r.cmd.WaitDelay = waitDelay
	if p.setup != nil {
		p.setup(r.cmd)
	}
	if err := Spawn(r.cmd); err != nil {
		return p.errorf(r, "start: %w", err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	p.mu.Lock()
	p.cur = r
	p.mu.Unlock()

	if err := p.waitReady(r); err != nil {
		_ = r.cmd.Process.Kill()
		<-r.done
		return err
	}
	return nil
}

// runCmd starts cmd like launch does and waits for it to end, for the short-lived helper
// commands (mariadb-install-db, redis-cli --cluster create).
func runCmd(cmd *exec.Cmd) error {
	if err := Spawn(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// waitReady probes the server until it answers as r's process, r exits, or p.wait passes.
func (p *Proc) waitReady(r *run) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.wait)
	defer cancel()
	// A probe stuck on a stranger that holds the port must end as soon as our process
	// exits, so the start can move on to another port.
	go func() {
		select {
		case <-r.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	var last error
	for {
		select {
		case <-r.done:
			return p.exitError(r)
		case <-ctx.Done():
			select {
			case <-r.done:
				return p.exitError(r)
			default:
			}
			return p.errorf(r, "not ready within %v; last probe: %v", p.wait, last)
		case <-t.C:
		}
		pctx, pcancel := context.WithTimeout(ctx, probeTimeout)
		last = p.probe(pctx, p.Addr, r.cmd.Process.Pid)
		pcancel()
		if last == nil {
			return nil
		}
		t.Reset(pollInterval)
	}
}

// exitError explains why r exited before it was ready, marking a lost port so the
// caller can retry.
func (p *Proc) exitError(r *run) error {
	if r.out.contains("in use") {
		return p.errorf(r, "exited (%v): %w", r.err, errAddrInUse)
	}
	return p.errorf(r, "exited before it was ready: %v", r.err)
}

// errorf formats an error that names the service, binary and port and carries the tail
// of the process's output, which usually says what went wrong.
func (p *Proc) errorf(r *run, format string, args ...any) error {
	var out string
	if s := strings.TrimSpace(r.out.String()); s != "" {
		out = "\n--- output tail ---\n" + s
	}
	return fmt.Errorf("svctest: %s (%s, port %d): %w%s", p.Name, p.bin, p.Port, fmt.Errorf(format, args...), out)
}

// freePort returns a loopback port that was free a moment ago (FreePort).
func freePort() (int, error) { return FreePort(nil) }

// FreePort returns a port nobody listened on a moment ago, on any interface, from
// below the kernel's ephemeral range (ip_local_port_range): a port from that range can
// be handed to an outgoing connection while its server is down for a restart, which
// then cannot bind it again, and a client that dials a down server on such a port can
// even be connected to itself (the kernel may pick the same port as its local one).
// Another process may still take the port before the server binds it, which the
// callers handle by retrying. A port in taken is never returned.
func FreePort(taken map[int]bool) (int, error) {
	lo, hi := 16384, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 2048 {
				hi = v
				lo = max(1024, v/2)
			}
		}
	}
	for range 200 {
		p := lo + rand.IntN(hi-lo)
		if taken[p] {
			continue
		}
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("svctest: no free port found in %d..%d after 200 tries", lo, hi-1)
}

// lookBin finds a server binary on PATH, falling back to the Debian locations because
// sbin directories are often missing from a non-login PATH.
func lookBin(name string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
		path := filepath.Join(dir, name)
		if fi, err := os.Stat(path); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", fmt.Errorf("svctest: %s not found on PATH, in /usr/sbin or /usr/bin (run scripts/deps.sh)", name)
}

// isRoot reports whether we run as root, where memcached and mariadbd refuse to start
// unless told explicitly to run as root.
func isRoot() bool { return os.Geteuid() == 0 }

// Tail keeps the last 8 KiB written to it, for error messages about a process. It is
// safe for concurrent use, because exec copies stdout and stderr from separate goroutines.
type Tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *Tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - tailSize; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *Tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

func (t *Tail) contains(s string) bool { return strings.Contains(t.String(), s) }

// deadlineConn dials addr and ends the connection's pending I/O when ctx is done, so a
// probe against a server that accepts but never answers returns in time.
func deadlineConn(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	return &ctxConn{Conn: c, stop: stop}, nil
}

// ctxConn is a net.Conn whose Close also drops deadlineConn's watch on the context.
type ctxConn struct {
	net.Conn
	stop func() bool
}

func (c *ctxConn) Close() error {
	c.stop()
	return c.Conn.Close()
}
