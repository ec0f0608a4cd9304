package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calcproc"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

const (
	// shutdownTimeout is the probed server's ShutdownTimeout; stop kills it when it
	// takes stopGrace.
	shutdownTimeout = 10 * time.Second
	stopGrace       = shutdownTimeout + 5*time.Second
	// scrapeTimeout bounds one read of /metrics, /healthcheck or the pprof heap.
	scrapeTimeout = 10 * time.Second
)

var pprofRE = regexp.MustCompile(`msg="pprof listening" addr=(\S+)`)

// server is one calcserver process, started as a user starts it (calcproc), with the
// probe's view of it: its pprof listener and a scrape client.
type server struct {
	*calcproc.Proc
	pprof string // its PprofAddr, to force a garbage collection before reading the heap

	// scrape reads /metrics and the pprof heap over one keep-alive connection of its
	// own, which the server's goroutine count therefore always includes.
	scrape *http.Client
}

// startServer starts bin in dir with pprof on a free loopback port and settings (one
// "Key = value" each), waits for the startup line that names the port, and opens the
// scrape connection.
func startServer(ctx context.Context, bin, dir string, settings ...string) (*server, error) {
	ini := fmt.Sprintf("PprofAddr = 127.0.0.1:0\nShutdownTimeout = %v\n%s", shutdownTimeout, strings.Join(settings, "\n"))
	p, err := calcproc.Start(ctx, bin, dir, ini)
	if err != nil {
		return nil, err
	}
	s := &server{
		Proc: p,
		scrape: &http.Client{
			Timeout:   scrapeTimeout,
			Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true},
		},
	}
	// The pprof line comes before the startup line.
	b, _ := os.ReadFile(p.Log())
	if m := pprofRE.FindSubmatch(b); m != nil {
		s.pprof = string(m[1])
	}
	if _, err := s.metrics(ctx); err != nil { // opens the scrape connection
		_ = s.stop()
		return nil, err
	}
	return s, nil
}

// stop closes the scrape connection and stops the server (calcproc.Proc.Stop).
func (s *server) stop() error {
	s.scrape.CloseIdleConnections()
	return s.Stop(stopGrace)
}

// metrics reads /metrics into a map from series (name and labels as the server writes
// them, such as `calcserver_calc_answers_total{cache="MISS"}`) to value.
func (s *server) metrics(ctx context.Context) (map[string]float64, error) {
	b, err := s.get(ctx, "http://"+s.Addr()+"/metrics")
	if err != nil {
		return nil, err
	}
	m := make(map[string]float64)
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("calcserver /metrics at %s: series %q: %w", s.Addr(), line, err)
		}
		m[line[:i]] = v
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "calcserver_job_duration_seconds_count"} {
		if _, ok := m[name]; !ok {
			return nil, fmt.Errorf("calcserver /metrics at %s has no %s", s.Addr(), name)
		}
	}
	return m, nil
}

// gc has the server collect garbage (pprof's heap profile with gc=1), so that a heap
// figure read right after it counts live memory only.
func (s *server) gc(ctx context.Context) error {
	if s.pprof == "" {
		return fmt.Errorf("calcserver (pid %d) logged no pprof address", s.Pid())
	}
	_, err := s.get(ctx, "http://"+s.pprof+"/debug/pprof/heap?gc=1")
	return err
}

// saveHeapProfile writes the server's heap profile (after a collection) to path.
func (s *server) saveHeapProfile(ctx context.Context, path string) error {
	if s.pprof == "" {
		return fmt.Errorf("calcserver (pid %d) logged no pprof address", s.Pid())
	}
	b, err := s.get(ctx, "http://"+s.pprof+"/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write the heap profile: %w", err)
	}
	return nil
}

// usage is what the server holds at one moment.
type usage struct {
	goroutines int
	heap       float64 // go_memstats_heap_inuse_bytes
	stacks     float64 // go_memstats_stack_inuse_bytes
	rss        float64 // VmRSS, bytes
}

// usage collects garbage in the server, then reads its goroutines, heap and RSS. It
// collects twice: what sync.Pools held (net/http's buffers) survives one collection
// in the pools' victim cache.
func (s *server) usage(ctx context.Context) (usage, error) {
	for range 2 {
		if err := s.gc(ctx); err != nil {
			return usage{}, err
		}
	}
	m, err := s.metrics(ctx)
	if err != nil {
		return usage{}, err
	}
	rss, err := vmRSS(s.Pid())
	if err != nil {
		return usage{}, err
	}
	return usage{goroutines: int(m["go_goroutines"]), heap: m["go_memstats_heap_inuse_bytes"], stacks: m["go_memstats_stack_inuse_bytes"], rss: rss}, nil
}

func (s *server) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.scrape.Do(req)
	if err != nil {
		if aerr := s.Alive(); aerr != nil {
			return nil, aerr
		}
		return nil, fmt.Errorf("calcserver: GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("calcserver: GET %s: reading the body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("calcserver: GET %s: %s: %.200s", url, resp.Status, b)
	}
	return b, nil
}

// vmRSS reads the resident set size of process pid from /proc.
func vmRSS(pid int) (float64, error) {
	v, err := procStatus(pid, "VmRSS:")
	if err != nil {
		return 0, err
	}
	kb, err := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/status: VmRSS %q: %w", pid, v, err)
	}
	return kb * 1024, nil
}

// procStatus returns the value of field (such as "VmRSS:") in /proc/PID/status.
func procStatus(pid int, field string) (string, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("%s has no %s line", path, field)
}

// openFilesLimit reads the soft limit on open files of process pid from /proc.
func openFilesLimit(pid int) (int, error) {
	path := fmt.Sprintf("/proc/%d/limits", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				if f[0] == "unlimited" {
					return 1 << 30, nil
				}
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, fmt.Errorf("%s has no \"Max open files\" line", path)
}

// raiseOpenFiles raises this process's soft limit on open files to its hard limit
// and returns the new soft limit. (The Go runtime raises it too, to one below the hard
// limit; saying so here keeps the probe independent of that.)
func raiseOpenFiles() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("setrlimit RLIMIT_NOFILE to %d: %w", lim.Max, err)
		}
	}
	return lim.Cur, nil
}

// answer is one HTTP response as the probe keeps it.
type answer struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration // from writing the request to reading the whole body
}

// conn is one client connection speaking HTTP/1.1 by hand, so that the probe decides
// exactly when each connection is opened, used and closed.
type conn struct {
	c  net.Conn
	br *bufio.Reader
}

func dial(ctx context.Context, addr string) (*conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial calcserver at %s: %w", addr, err)
	}
	return &conn{c: c, br: bufio.NewReaderSize(c, 1024)}, nil
}

// get sends GET target and reads the answer, all within timeout.
func (c *conn) get(target string, timeout time.Duration) (answer, error) {
	_ = c.c.SetDeadline(time.Now().Add(timeout))
	req := "GET " + target + " HTTP/1.1\r\nHost: " + c.c.RemoteAddr().String() + "\r\nUser-Agent: serverprobe\r\n\r\n"
	start := time.Now()
	if _, err := io.WriteString(c.c, req); err != nil {
		return answer{}, fmt.Errorf("GET %s from %s: write: %w", target, c.c.RemoteAddr(), err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return answer{}, fmt.Errorf("GET %s from %s: read the answer: %w", target, c.c.RemoteAddr(), err)
	}
	var body bytes.Buffer
	_, err = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return answer{}, fmt.Errorf("GET %s from %s: read the body: %w", target, c.c.RemoteAddr(), err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: body.Bytes(), took: time.Since(start)}, nil
}

// release drops the read buffer of a connection that will stay idle, so that holding
// thousands of them costs the probe little.
func (c *conn) release() { c.br = nil }

func (c *conn) close() { _ = c.c.Close() }

// dialAll opens n connections to addr, at most par at a time.
func dialAll(ctx context.Context, addr string, n, par int) ([]*conn, error) {
	conns := make([]*conn, n)
	err := forEach(ctx, n, par, func(i int) error {
		c, err := dial(ctx, addr)
		conns[i] = c
		return err
	})
	if err != nil {
		closeAll(conns)
		return nil, err
	}
	return conns, nil
}

func closeAll(conns []*conn) {
	for _, c := range conns {
		if c != nil {
			c.close()
		}
	}
}

// forEach calls f(0..n-1) on par goroutines and returns the first error; after an
// error the remaining indexes are skipped.
func forEach(ctx context.Context, n, par int, f func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	done := make(chan struct{})
	for range min(par, n) {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range next {
				if err := f(i); err != nil {
					cancel(err)
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	for range min(par, n) {
		<-done
	}
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// pollUntil calls cond every interval until it reports true, ctx ends, or within
// passes; it returns how long that took and whether cond was met.
func pollUntil(ctx context.Context, within, interval time.Duration, cond func() (bool, error)) (time.Duration, bool, error) {
	start := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return time.Since(start), ok, err
		}
		if time.Since(start) >= within {
			return time.Since(start), false, nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), false, ctx.Err()
		case <-t.C:
		}
	}
}

// cpuTime is the CPU time process pid has spent so far: the sum over its threads of
// the first field of /proc/PID/task/TID/schedstat (nanoseconds on a CPU), which is
// precise where /proc/PID/stat counts 10 ms ticks.
func cpuTime(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", dir, err)
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue // the thread has just ended
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s/%s/schedstat: %q: %w", dir, t.Name(), b, err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// profiler is a CPU profile of the server being taken through its pprof listener.
type profiler struct {
	done chan struct{}
	body []byte
	err  error
}

// profileLead is how long startProfile gives the server to begin profiling: nothing
// signals it, so the burst has to wait a moment to be inside the profile.
const profileLead = 100 * time.Millisecond

// startProfile begins a CPU profile of the server that lasts whole seconds, at least
// one and at least d, and returns once the profile is likely running.
func (s *server) startProfile(ctx context.Context, d time.Duration) (*profiler, error) {
	if s.pprof == "" {
		return nil, fmt.Errorf("calcserver (pid %d) logged no pprof address", s.Pid())
	}
	secs := max(1, int(d.Seconds()+0.999))
	u := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.pprof, secs)
	p := &profiler{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		// Its own client: the scrape client's timeout is shorter than a profile.
		c := &http.Client{Timeout: time.Duration(secs)*time.Second + scrapeTimeout}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			p.err = err
			return
		}
		resp, err := c.Do(req)
		if err != nil {
			p.err = fmt.Errorf("GET %s: %w", u, err)
			return
		}
		defer resp.Body.Close()
		p.body, p.err = io.ReadAll(resp.Body)
		if p.err == nil && resp.StatusCode != http.StatusOK {
			p.err = fmt.Errorf("GET %s: %s: %.200s", u, resp.Status, p.body)
		}
	}()
	return p, sleep(ctx, profileLead)
}

// save waits for the profile to end and writes it to path.
func (p *profiler) save(path string) error {
	<-p.done
	if p.err != nil {
		return p.err
	}
	if err := os.WriteFile(path, p.body, 0o644); err != nil {
		return fmt.Errorf("write the CPU profile: %w", err)
	}
	return nil
}

// bareServer is internal/bareserver, the bare net/http baseline: it answers every
// request 200 with the 244-byte body of the key "testing".
type bareServer struct {
	cmd  *exec.Cmd
	addr string
	out  *svctest.Tail
	done chan struct{}
}

// startBare starts the bareserver binary bin on a free loopback port and waits until it
// accepts connections.
func startBare(ctx context.Context, bin, dir string) (*bareServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("find a free port for the baseline: %w", err)
	}
	addr := l.Addr().String()
	l.Close()
	b := &bareServer{addr: addr, out: &svctest.Tail{}, done: make(chan struct{})}
	b.cmd = exec.Command(bin, "-addr", addr)
	b.cmd.Dir = dir
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
	b.cmd.WaitDelay = 2 * time.Second
	if err := svctest.Spawn(b.cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		_ = b.cmd.Wait()
		close(b.done)
	}()
	_, ok, err := pollUntil(ctx, calcproc.StartTimeout, 10*time.Millisecond, func() (bool, error) {
		select {
		case <-b.done:
			return false, fmt.Errorf("%s -addr %s exited before it answered\n%s", bin, addr, b.out)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	})
	if err == nil && !ok {
		err = fmt.Errorf("%s -addr %s accepted no connection within %v\n%s", bin, addr, calcproc.StartTimeout, b.out)
	}
	if err != nil {
		b.stop()
		return nil, err
	}
	return b, nil
}

// Addr is the baseline's address, "127.0.0.1:PORT".
func (b *bareServer) Addr() string { return b.addr }

// Pid is the baseline's process id.
func (b *bareServer) Pid() int { return b.cmd.Process.Pid }

// Alive reports an error once the baseline has exited.
func (b *bareServer) Alive() error {
	select {
	case <-b.done:
		return fmt.Errorf("the baseline (pid %d) is gone\n%s", b.Pid(), b.out)
	default:
		return nil
	}
}

// stop kills the baseline, which has no shutdown of its own to wait for.
func (b *bareServer) stop() {
	_ = b.cmd.Process.Kill()
	<-b.done
}
