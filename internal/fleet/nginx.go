package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// NginxWorkers is the worker_processes of the rendered configuration: more than one,
// as in production (each worker balances and counts failures on its own), and few,
// for a small machine.
const NginxWorkers = 2

// nginxConfig is what renderNginx puts into the deploy configuration.
type nginxConfig struct {
	Prefix    string // nginx's prefix directory: logs, temp paths and pid go here
	Listen    int    // loopback port nginx listens on
	Upstreams []int  // loopback ports of the instances, in order
	Down      []bool // Down[i]: upstream i is marked down (nginx sends it nothing); nil: none
	User      string // "user" directive's argument, "" for none (only root may switch users)
}

// A rule replaces the lines of the deploy configuration that name a place
// (calcserver:80, port 80, /dev/stdout) or a size (worker_processes auto) of the
// compose deployment. Each must match exactly once, so that a change of
// deploy/nginx.conf that moves or renames one of them breaks rendering loudly instead
// of leaving a directive pointing at the compose network.
type rule struct {
	what string // for the error message
	re   *regexp.Regexp
	repl func(c nginxConfig, m []string) string
}

var rules = []rule{
	{
		what: "worker_processes directive",
		re:   regexp.MustCompile(`(?m)^([ \t]*)worker_processes[ \t]+[^;\n]+;[ \t]*$`),
		repl: func(c nginxConfig, m []string) string {
			s := fmt.Sprintf("%sworker_processes %d;\n%spid %s;", m[1], NginxWorkers, m[1], filepath.Join(c.Prefix, "nginx.pid"))
			if c.User != "" {
				s += fmt.Sprintf("\n%suser %s;", m[1], c.User)
			}
			return s
		},
	},
	{
		what: "error_log directive",
		re:   regexp.MustCompile(`(?m)^([ \t]*)error_log[ \t]+\S+([ \t]+\w+)?;[ \t]*$`),
		repl: func(c nginxConfig, m []string) string {
			return fmt.Sprintf("%serror_log %s%s;", m[1], filepath.Join(c.Prefix, "error.log"), m[2])
		},
	},
	{
		what: "http block",
		re:   regexp.MustCompile(`(?m)^([ \t]*)http[ \t]*\{[ \t]*$`),
		repl: func(c nginxConfig, m []string) string {
			s := m[1] + "http {"
			for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
				s += fmt.Sprintf("\n%s    %s_temp_path %s;", m[1], d, filepath.Join(c.Prefix, "temp", d))
			}
			return s
		},
	},
	{
		what: "access_log directive with the upstream format",
		re:   regexp.MustCompile(`(?m)^([ \t]*)access_log[ \t]+\S+[ \t]+upstream;[ \t]*$`),
		repl: func(c nginxConfig, m []string) string {
			return fmt.Sprintf("%saccess_log %s upstream;", m[1], filepath.Join(c.Prefix, AccessLogName))
		},
	},
	{ // rules[4]: upstreamParams reads its parameters
		what: "upstream line \"server calcserver:80 ...;\"",
		re:   regexp.MustCompile(`(?m)^([ \t]*)server[ \t]+calcserver:80((?:[ \t]+[^;\s]+)*);[ \t]*$`),
		repl: func(c nginxConfig, m []string) string {
			lines := make([]string, len(c.Upstreams))
			for i, p := range c.Upstreams {
				down := ""
				if i < len(c.Down) && c.Down[i] {
					down = " down"
				}
				lines[i] = fmt.Sprintf("%sserver 127.0.0.1:%d%s%s;", m[1], p, m[2], down)
			}
			return strings.Join(lines, "\n")
		},
	},
	{
		what: "listen directive \"listen 80;\"",
		re:   regexp.MustCompile(`(?m)^([ \t]*)listen[ \t]+80;[ \t]*$`),
		repl: func(c nginxConfig, m []string) string {
			return fmt.Sprintf("%slisten 127.0.0.1:%d;", m[1], c.Listen)
		},
	},
}

// AccessLogName is the name of nginx's access log in its prefix directory.
const AccessLogName = "access.log"

// renderNginx turns the deploy configuration tmpl into one for c: the upstream line
// becomes one line per instance with the same parameters, nginx listens on loopback,
// logs go to files in the prefix, temp paths and the pid file live there too, and
// NginxWorkers workers run. Every line it replaces must be in tmpl exactly once.
func renderNginx(tmpl string, c nginxConfig) (string, error) {
	if len(c.Upstreams) == 0 {
		return "", errors.New("fleet: nginx configuration: no upstream ports")
	}
	if !regexp.MustCompile(`(?m)^[ \t]*log_format[ \t]+upstream[ \t]`).MatchString(tmpl) {
		return "", errors.New(`fleet: nginx configuration template: no "log_format upstream" (the access log format the fleet reads)`)
	}
	out := tmpl
	for _, r := range rules {
		ms := r.re.FindAllStringSubmatchIndex(out, -1)
		if len(ms) != 1 {
			return "", fmt.Errorf("fleet: nginx configuration template: %s found %d times, want once (pattern %s); deploy/nginx.conf changed, adapt internal/fleet/nginx.go", r.what, len(ms), r.re)
		}
		m := ms[0]
		groups := make([]string, len(m)/2)
		for g := range groups {
			if m[2*g] >= 0 {
				groups[g] = out[m[2*g]:m[2*g+1]]
			}
		}
		out = out[:m[0]] + r.repl(c, groups) + out[m[1]:]
	}
	return out, nil
}

// upstreamParams reads the parameters of the deploy configuration's upstream line
// that decide how long nginx keeps an instance out after failures: fail_timeout
// (nginx's default 10s when absent) and max_fails (default 1).
func upstreamParams(tmpl string) (failTimeout time.Duration, maxFails int, err error) {
	failTimeout, maxFails = 10*time.Second, 1
	m := rules[4].re.FindStringSubmatch(tmpl)
	if m == nil {
		return 0, 0, errors.New(`fleet: nginx configuration template: no upstream line "server calcserver:80 ...;"`)
	}
	for _, p := range strings.Fields(m[2]) {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "fail_timeout":
			d, err := time.ParseDuration(v)
			if err != nil {
				return 0, 0, fmt.Errorf("fleet: nginx configuration template: fail_timeout=%s: %w", v, err)
			}
			failTimeout = d
		case "max_fails":
			n, err := strconv.Atoi(v)
			if err != nil {
				return 0, 0, fmt.Errorf("fleet: nginx configuration template: max_fails=%s: %w", v, err)
			}
			maxFails = n
		}
	}
	return failTimeout, maxFails, nil
}

// workerUser is the "user" directive's argument: root's own name and group when the
// harness runs as root (nginx would otherwise run its workers as "nobody", who cannot
// enter a test's private temporary directory), "" otherwise (the directive only
// matters to root, and nginx warns about it for anyone else).
func workerUser() (string, error) {
	if os.Geteuid() != 0 {
		return "", nil
	}
	u, err := user.LookupId(strconv.Itoa(os.Geteuid()))
	if err != nil {
		return "", fmt.Errorf("fleet: look up the user nginx's workers run as: %w", err)
	}
	g, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
	if err != nil {
		return "", fmt.Errorf("fleet: look up the group nginx's workers run as: %w", err)
	}
	return u.Username + " " + g.Name, nil
}

// nginxBin finds the nginx binary: name when set, else nginx on PATH, else
// /usr/sbin/nginx (sbin is often missing from a non-login PATH).
func nginxBin(name string) (string, error) {
	if name != "" {
		return name, nil
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/nginx"
	if _, err := os.Stat(debian); err != nil {
		return "", errors.New("fleet: nginx not found on PATH or at /usr/sbin/nginx (run scripts/deps.sh)")
	}
	return debian, nil
}

// nginxReadyTimeout bounds the wait for nginx to answer through the balancer.
const nginxReadyTimeout = 15 * time.Second

// nginxProc is one nginx master process and its workers, in a process group of their
// own.
type nginxProc struct {
	bin    string
	prefix string
	port   int
	conf   nginxConfig // what the running configuration was rendered from
	tmpl   string
	cmd    *exec.Cmd
	out    *svctest.Tail
	done   chan struct{}
	err    error // cmd.Wait's result, once done is closed
	// guard is a shell that kills nginx's process group once its stdin, a pipe this
	// process holds, reaches end of file: the kernel kills the master with this
	// process (svctest.Spawn), but nothing kills the workers, which would keep the
	// port.
	guard     *exec.Cmd
	guardPipe io.WriteCloser
}

// startNginx writes the configuration rendered from tmpl for listen and upstreams into prefix, starts
// nginx in the foreground and waits until GET /healthcheck through it answers 200.
func startNginx(ctx context.Context, bin, tmpl, prefix string, listen int, upstreams []int) (*nginxProc, error) {
	usr, err := workerUser()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(prefix, "temp", d), 0o755); err != nil {
			return nil, fmt.Errorf("fleet: nginx prefix: %w", err)
		}
	}
	conf, err := renderNginx(tmpl, nginxConfig{Prefix: prefix, Listen: listen, Upstreams: upstreams, User: usr})
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("fleet: write %s: %w", confPath, err)
	}
	errLog := filepath.Join(prefix, "error.log")
	n := &nginxProc{bin: bin, prefix: prefix, port: listen, out: &svctest.Tail{}, done: make(chan struct{}),
		tmpl: tmpl, conf: nginxConfig{Prefix: prefix, Listen: listen, Upstreams: upstreams, User: usr}}
	n.cmd = exec.Command(bin, "-p", prefix+"/", "-c", confPath, "-e", errLog, "-g", "daemon off;")
	n.cmd.Dir = prefix
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	n.cmd.WaitDelay = 2 * time.Second
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := svctest.Spawn(n.cmd); err != nil {
		return nil, fmt.Errorf("fleet: start %s: %w", bin, err)
	}
	go func() {
		n.err = n.cmd.Wait()
		close(n.done)
	}()
	if err := n.startGuard(); err != nil {
		n.stop()
		return nil, err
	}
	if err := n.waitReady(ctx); err != nil {
		n.stop()
		return nil, err
	}
	return n, nil
}

// startGuard starts the shell that kills nginx's process group when this process dies.
func (n *nginxProc) startGuard() error {
	pgid := n.cmd.Process.Pid
	n.guard = exec.Command("/bin/sh", "-c", fmt.Sprintf("read _ ; kill -KILL -%d 2>/dev/null", pgid))
	pipe, err := n.guard.StdinPipe()
	if err != nil {
		return fmt.Errorf("fleet: nginx guard: %w", err)
	}
	n.guard.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a Ctrl-C must not reach it first
	if err := n.guard.Start(); err != nil {
		return fmt.Errorf("fleet: nginx guard /bin/sh: %w", err)
	}
	n.guardPipe = pipe
	return nil
}

// waitReady polls /healthcheck through nginx until it answers 200.
func (n *nginxProc) waitReady(ctx context.Context) error {
	err := waitOK(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthcheck", n.port), nginxReadyTimeout, n.done)
	switch {
	case errors.Is(err, errExited):
		<-n.done
		return n.errorf("exited before it answered: %v", n.err)
	case err != nil:
		return n.errorf("%v", err)
	}
	return nil
}

// reloadTimeout bounds a reload: until the workers of the old configuration have
// finished the requests they hold (the slowest a miss waiting in line) and exited.
const reloadTimeout = 30 * time.Second

// reload renders the configuration again with the upstreams in down marked down,
// writes it and has nginx load it (SIGHUP), as `nginx -s reload` does: new workers
// start with it, the old ones finish the requests they hold and exit. It returns once
// every old worker is gone, so that from then on no request reaches a downed
// upstream; an old worker still busy after reloadTimeout is an error.
func (n *nginxProc) reload(down []bool) error {
	c := n.conf
	c.Down = down
	conf, err := renderNginx(n.tmpl, c)
	if err != nil {
		return err
	}
	confPath := filepath.Join(n.prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("fleet: write %s: %w", confPath, err)
	}
	master := n.cmd.Process.Pid
	old, err := children(master)
	if err != nil {
		return n.errorf("reload: %v", err)
	}
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return n.errorf("reload: %v", err)
	}
	deadline := time.Now().Add(reloadTimeout)
	for {
		select {
		case <-n.done:
			return n.errorf("exited during a reload: %v", n.err)
		default:
		}
		now, err := children(master)
		if err != nil {
			return n.errorf("reload: %v", err)
		}
		left, fresh := 0, 0
		for _, pid := range now {
			if slices.Contains(old, pid) {
				left++
			} else {
				fresh++
			}
		}
		if left == 0 && fresh >= NginxWorkers {
			n.conf = c
			return nil
		}
		if time.Now().After(deadline) {
			return n.errorf("reload: after %v, %d workers of the old configuration still run and %d new ones", reloadTimeout, left, fresh)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// children lists the processes whose parent is pid, from /proc (Linux).
func children(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 2 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out, nil
}

// stop asks nginx to stop at once (SIGTERM: fast shutdown) and kills its process group
// if it has not exited within a few seconds; the workers go with the group in any case.
func (n *nginxProc) stop() {
	select {
	case <-n.done:
	default:
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(5 * time.Second):
		}
	}
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL) // workers that outlived their master
	<-n.done
	if n.guard != nil {
		_ = n.guard.Process.Kill()
		_ = n.guardPipe.Close()
		_ = n.guard.Wait()
		n.guard = nil
	}
}

// errorf names nginx, its port and prefix, and adds the tail of its error log.
func (n *nginxProc) errorf(format string, args ...any) error {
	b, _ := os.ReadFile(filepath.Join(n.prefix, "error.log"))
	tail := lastLines(string(b)+"\n"+n.out.String(), 10)
	if tail != "" {
		tail = "\n--- error log tail ---\n" + tail
	}
	return fmt.Errorf("fleet: nginx (%s, 127.0.0.1:%d, prefix %s): %s%s", n.bin, n.port, n.prefix, fmt.Sprintf(format, args...), tail)
}

// lastLines is the last n non-empty lines of s.
func lastLines(s string, n int) string {
	var lines []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
