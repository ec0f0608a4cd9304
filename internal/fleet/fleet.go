// Package fleet runs a fleet as teams build one in the events: N calcserver
// processes behind a real nginx (the configuration of deploy/nginx.conf), optionally
// sharing one Redis. gameday bench's fleet strategy and the reliability tests of
// rolling restarts and lost instances run on it. Every process listens on loopback
// ports (the calcservers on every interface, as they only take a port).
//
// Layout of Options.Dir:
//
//	calcserver-0/      instance 0: server.ini, calcserver.log
//	calcserver-0.1/    instance 0 after its first Restart (logs of earlier runs stay)
//	calcserver-1/      …
//	nginx/             nginx's prefix: nginx.conf, access.log, error.log, nginx.pid, temp/
//	redis/             Redis's working directory (no persistence)
package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/unicorn-rentals/unicorn/deploy"
	"github.com/unicorn-rentals/unicorn/internal/calcproc"
	"github.com/unicorn-rentals/unicorn/internal/config"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// Options configures a fleet.
type Options struct {
	Calcserver string    // the calcserver binary
	Dir        string    // working directory: one subdirectory per instance, nginx's prefix, Redis's data
	Instances  int       // how many calcservers, ≥ 1
	ServerINI  string    // server.ini lines ("Key = value\n") every instance gets (Cores, WorkTime, WorkMode, QueueSize, ShutdownDelay, ...)
	Redis      bool      // start one redis-server (svctest.StartRedis) and point every instance at it (RedisHost/RedisPort)
	Nginx      string    // nginx binary; "": nginx on PATH, else /usr/sbin/nginx
	Log        io.Writer // progress lines, one Write each, never two at once; nil: discarded

	// NginxConf is the nginx configuration template; "": deploy/nginx.conf
	// (deploy.NginxConf). It must keep the lines the fleet replaces (see renderNginx),
	// so a variant of the deploy file (another balancing method, other retries) can
	// be measured against it.
	NginxConf string
}

const (
	// startAttempts bounds how often Start picks a new port after another process
	// took the one it picked.
	startAttempts = 5
	// restartBindWindow is how long Restart keeps trying the instance's fixed port
	// while another process holds it.
	restartBindWindow = 10 * time.Second
	// stopSlack is what Restart and Close allow a SIGTERMed instance beyond its
	// ShutdownDelay + ShutdownTimeout (flushing cache writes, exiting, a slow -race
	// binary) before they kill it.
	stopSlack = 5 * time.Second
	// readyTimeout bounds the wait for a started instance to answer /healthcheck.
	readyTimeout = 10 * time.Second
)

// Fleet is a running fleet. Its methods are safe for concurrent use, except that one
// instance must not be restarted or killed by two callers at once.
type Fleet struct {
	o     Options
	logw  io.Writer
	logMu sync.Mutex
	grace time.Duration // SIGTERM to exit, at most
	ini   string        // server.ini lines of every instance, Redis's included
	ports []int         // instance i's port, fixed for the fleet's life
	redis *svctest.Proc // nil without Options.Redis
	nginx *nginxProc
	// failTimeout is the upstream's fail_timeout in the nginx configuration.
	failTimeout time.Duration
	closed      sync.Once
	cerr        error

	downMu sync.Mutex // serializes nginx reloads
	down   []bool     // instance i is marked down in nginx's running configuration

	mu     sync.Mutex
	procs  []*calcproc.Proc // instance i's current process
	runs   []int            // how often instance i was started
	killed []bool           // instance i was killed and not restarted yet
}

// Start starts Redis (if asked), the instances (internal/calcproc, each on a port of
// its own that stays the same across Restart), then nginx with deploy/nginx.conf
// rendered for them, and returns once nginx answers /healthcheck through the
// balancer. On any failure it stops what it started and returns an error naming the
// part, with the tail of its output or log.
func Start(ctx context.Context, o Options) (*Fleet, error) {
	if o.Calcserver == "" {
		return nil, errors.New("fleet: Options.Calcserver: no calcserver binary")
	}
	if o.Dir == "" {
		return nil, errors.New("fleet: Options.Dir: no working directory")
	}
	if o.Instances < 1 {
		return nil, fmt.Errorf("fleet: Options.Instances = %d: want at least 1", o.Instances)
	}
	cfg, err := config.Parse("Options.ServerINI", []byte(o.ServerINI))
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	ngx, err := nginxBin(o.Nginx)
	if err != nil {
		return nil, err
	}
	if o.NginxConf == "" {
		o.NginxConf = deploy.NginxConf
	}
	failTimeout, _, err := upstreamParams(o.NginxConf)
	if err != nil {
		return nil, err
	}
	f := &Fleet{
		o:           o,
		logw:        o.Log,
		failTimeout: failTimeout,
		grace:       cfg.ShutdownDelay + cfg.ShutdownTimeout + stopSlack,
		ini:         o.ServerINI,
		ports:       make([]int, o.Instances),
		procs:       make([]*calcproc.Proc, o.Instances),
		runs:        make([]int, o.Instances),
		killed:      make([]bool, o.Instances),
		down:        make([]bool, o.Instances),
	}
	if f.logw == nil {
		f.logw = io.Discard
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("fleet: working directory: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
		}
	}()

	if o.Redis {
		dir := filepath.Join(o.Dir, "redis")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("fleet: redis directory: %w", err)
		}
		r, err := svctest.StartRedis(dir)
		if err != nil {
			return nil, fmt.Errorf("fleet: start redis: %w", err)
		}
		f.redis = r
		f.ini = fmt.Sprintf("RedisHost = 127.0.0.1\nRedisPort = %d\n%s", r.Port, o.ServerINI)
		f.logf("redis-server on %s", r.Addr)
	}

	// The instances start in parallel: a -race binary takes a while to come up.
	errs := make([]error, o.Instances)
	var wg sync.WaitGroup
	var pickMu sync.Mutex
	taken := map[int]bool{}
	for i := range o.Instances {
		wg.Go(func() {
			for attempt := 1; ; attempt++ {
				pickMu.Lock()
				port, err := svctest.FreePort(taken)
				if err == nil {
					taken[port] = true
				}
				pickMu.Unlock()
				if err != nil {
					errs[i] = fmt.Errorf("fleet: instance %d: %w", i, err)
					return
				}
				f.ports[i] = port
				err = f.startInstance(ctx, i)
				if err == nil {
					return
				}
				if !errors.Is(err, calcproc.ErrPortInUse) || attempt == startAttempts {
					errs[i] = err
					return
				}
				f.logf("instance %d: port %d taken meanwhile; picking another", i, port)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	prefix := filepath.Join(o.Dir, "nginx")
	for attempt := 1; ; attempt++ {
		port, err := svctest.FreePort(taken)
		if err != nil {
			return nil, fmt.Errorf("fleet: nginx: %w", err)
		}
		taken[port] = true
		n, err := startNginx(ctx, ngx, o.NginxConf, prefix, port, f.ports)
		if err == nil {
			f.nginx = n
			break
		}
		if attempt < startAttempts && strings.Contains(err.Error(), "Address already in use") {
			f.logf("nginx: port %d taken meanwhile; picking another", port)
			continue
		}
		return nil, err
	}
	f.logf("nginx on %s, %d workers, balancing %s", f.URL(), NginxWorkers, strings.Join(f.InstanceURLs(), " "))
	ok = true
	return f, nil
}

// startInstance starts instance i on its port in a directory of its own and waits
// until it answers /healthcheck.
func (f *Fleet) startInstance(ctx context.Context, i int) error {
	f.mu.Lock()
	run := f.runs[i]
	f.runs[i]++
	f.mu.Unlock()
	dir := filepath.Join(f.o.Dir, "calcserver-"+strconv.Itoa(i))
	if run > 0 {
		dir += "." + strconv.Itoa(run)
	}
	p, err := calcproc.StartPort(ctx, f.o.Calcserver, dir, f.ini, f.ports[i], nil)
	if err != nil {
		return fmt.Errorf("fleet: instance %d (port %d): %w", i, f.ports[i], err)
	}
	if err := waitHealthy(ctx, "http://"+p.Addr()); err != nil {
		_ = p.Stop(0)
		return fmt.Errorf("fleet: instance %d (port %d, log %s): %w", i, f.ports[i], p.Log(), err)
	}
	f.mu.Lock()
	f.procs[i] = p
	f.killed[i] = false
	f.mu.Unlock()
	f.logf("instance %d on %s (pid %d, %s)", i, p.Addr(), p.Pid(), dir)
	return nil
}

// URL is nginx's base URL, "http://127.0.0.1:PORT".
func (f *Fleet) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", f.nginx.port) }

// InstanceURLs are the instances' own base URLs ("http://127.0.0.1:PORT"), index i
// for instance i. They do not change across Restart.
func (f *Fleet) InstanceURLs() []string {
	urls := make([]string, len(f.ports))
	for i, p := range f.ports {
		urls[i] = fmt.Sprintf("http://127.0.0.1:%d", p)
	}
	return urls
}

// FailTimeout is the upstream's fail_timeout in the deploy configuration: after
// max_fails failed attempts (refused connections, lost connections, timeouts) within
// it, each nginx worker sends an instance nothing for this long. A restart refuses
// connections for a moment, so a rolling restart that restarts the next instance
// sooner can leave a worker with no instance it considers live ("no live upstreams",
// 502).
func (f *Fleet) FailTimeout() time.Duration { return f.failTimeout }

// Redis is the shared redis-server, nil without Options.Redis.
func (f *Fleet) Redis() *svctest.Proc { return f.redis }

// NginxLog is the path of nginx's access log, in the deploy configuration's
// `upstream` format (upstream=, upstream_status=, cache= …).
func (f *Fleet) NginxLog() string { return filepath.Join(f.nginx.prefix, AccessLogName) }

// Restart restarts instance i as an operator does behind stock nginx, which never
// reads /healthcheck: it takes the instance out of nginx's upstream (marked down,
// nginx reloaded, the old workers' requests finished), stops it with SIGTERM and waits
// for it to exit (ShutdownDelay + ShutdownTimeout + a few seconds, after which it is
// killed and Restart fails), starts a new process on the same port, and puts it back
// (nginx reloaded again, which also forgets the failures nginx counted against it). No
// request reaches the instance while it drains, so a roll costs no answer. The new
// process logs into a directory of its own (calcserver-i.N), so the logs of earlier
// runs stay for inspection. An instance that Kill ended is only started again.
func (f *Fleet) Restart(ctx context.Context, i int) error {
	if i < 0 || i >= len(f.ports) {
		return fmt.Errorf("fleet: Restart(%d): no such instance (0..%d)", i, len(f.ports)-1)
	}
	t0 := time.Now()
	if err := f.setDown(i, true); err != nil {
		return fmt.Errorf("fleet: restart instance %d: taking it out of nginx: %w", i, err)
	}
	f.logf("instance %d: out of nginx's upstream in %v", i, time.Since(t0).Round(time.Millisecond))
	if err := f.RestartInPlace(ctx, i); err != nil {
		return err
	}
	t1 := time.Now()
	if err := f.setDown(i, false); err != nil {
		return fmt.Errorf("fleet: restart instance %d: putting it back into nginx: %w", i, err)
	}
	f.logf("instance %d: back in nginx's upstream in %v", i, time.Since(t1).Round(time.Millisecond))
	return nil
}

// setDown marks instance i down in nginx's upstream (or not) and reloads nginx.
func (f *Fleet) setDown(i int, down bool) error {
	f.downMu.Lock()
	defer f.downMu.Unlock()
	marks := slices.Clone(f.down)
	marks[i] = down
	if err := f.nginx.reload(marks); err != nil {
		return err
	}
	f.down = marks
	return nil
}

// RestartInPlace stops instance i with SIGTERM while nginx still lists it, waits for
// it to exit (ShutdownDelay + ShutdownTimeout + a few seconds, after which it is
// killed and RestartInPlace fails), then starts a new process on the same port —
// nginx's upstream list is fixed — and returns once it answers /healthcheck. This is
// a restart nginx is not told of: it keeps sending the draining instance requests
// until the instance closes its listener, and a refused connection counts against the
// instance (max_fails) for fail_timeout.
func (f *Fleet) RestartInPlace(ctx context.Context, i int) error {
	if i < 0 || i >= len(f.ports) {
		return fmt.Errorf("fleet: RestartInPlace(%d): no such instance (0..%d)", i, len(f.ports)-1)
	}
	f.mu.Lock()
	p, killed := f.procs[i], f.killed[i]
	f.mu.Unlock()
	if !killed {
		t0 := time.Now()
		if err := p.Stop(f.grace); err != nil {
			return fmt.Errorf("fleet: restart instance %d: %w", i, err)
		}
		f.logf("instance %d: stopped (SIGTERM) in %v", i, time.Since(t0).Round(time.Millisecond))
	}
	deadline := time.Now().Add(restartBindWindow)
	for {
		err := f.startInstance(ctx, i)
		if err == nil {
			return nil
		}
		if !errors.Is(err, calcproc.ErrPortInUse) || time.Now().After(deadline) {
			return fmt.Errorf("fleet: restart instance %d: %w", i, err)
		}
		// Nothing signals when the other holder lets go of the port.
		select {
		case <-ctx.Done():
			return fmt.Errorf("fleet: restart instance %d: %w", i, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL to instance i and waits for it to be gone: a crashed process or
// a lost machine, without any drain. It stays dead until Restart.
func (f *Fleet) Kill(i int) error {
	if i < 0 || i >= len(f.ports) {
		return fmt.Errorf("fleet: Kill(%d): no such instance (0..%d)", i, len(f.ports)-1)
	}
	f.mu.Lock()
	p := f.procs[i]
	f.killed[i] = true
	f.mu.Unlock()
	if err := p.Kill(); err != nil {
		return fmt.Errorf("fleet: kill instance %d: %w", i, err)
	}
	f.logf("instance %d: killed (SIGKILL)", i)
	return nil
}

// Close stops nginx, then the instances (SIGTERM, in parallel), then Redis. It returns
// the errors of the instances that did not exit cleanly; an instance Kill ended is
// no error. Later calls return the first call's result.
func (f *Fleet) Close() error {
	f.closed.Do(func() {
		if f.nginx != nil {
			f.nginx.stop()
		}
		f.mu.Lock()
		procs := append([]*calcproc.Proc(nil), f.procs...)
		killed := append([]bool(nil), f.killed...)
		f.mu.Unlock()
		errs := make([]error, len(procs))
		var wg sync.WaitGroup
		for i, p := range procs {
			if p == nil || killed[i] {
				continue
			}
			wg.Go(func() {
				if err := p.Stop(f.grace); err != nil {
					errs[i] = fmt.Errorf("fleet: stop instance %d: %w", i, err)
				}
			})
		}
		wg.Wait()
		if f.redis != nil {
			if err := f.redis.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("fleet: stop redis: %w", err))
			}
		}
		f.cerr = errors.Join(errs...)
	})
	return f.cerr
}

// logf writes one progress line. Lines come from several goroutines (the
// instances start in parallel); logMu keeps them whole and Options.Log need not be
// safe for concurrent use.
func (f *Fleet) logf(format string, args ...any) {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	fmt.Fprintf(f.logw, "fleet: "+format+"\n", args...)
}

// waitHealthy polls base/healthcheck until it answers 200.
func waitHealthy(ctx context.Context, base string) error {
	return waitOK(ctx, base+"/healthcheck", readyTimeout, nil)
}

// errExited is waitOK's error when exited closed first.
var errExited = errors.New("exited")

// waitOK polls url every 25 ms until it answers 200, for at most timeout; it gives up
// with errExited as soon as exited (nil: never) is closed.
func waitOK(ctx context.Context, url string, timeout time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-exited:
			return errExited
		case <-ctx.Done():
			return fmt.Errorf("no 200 from %s within %v: %v", url, timeout, last)
		case <-time.After(25 * time.Millisecond):
		}
	}
}
