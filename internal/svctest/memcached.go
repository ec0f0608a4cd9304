package svctest

import (
	"context"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// StartMemcached starts memcached on a free loopback TCP port (UDP off, 64 MB of memory)
// with dir as its working directory, and waits until it answers "version".
func StartMemcached(dir string) (*Proc, error) {
	bin, err := lookBin("memcached")
	if err != nil {
		return nil, err
	}
	p := &Proc{
		Name: "memcached",
		Dir:  dir,
		bin:  bin,
		argsFor: func(port int) []string {
			args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", "64"}
			if isRoot() {
				// memcached refuses to run as root unless told which user to be.
				args = append(args, "-u", "root")
			}
			return args
		},
		probe: probeMemcached,
		wait:  10 * time.Second,
	}
	if err := p.start(freePort); err != nil {
		return nil, err
	}
	return p, nil
}

// probeMemcached checks that the server answers "version" and that its stats report the
// given pid.
func probeMemcached(ctx context.Context, addr string, pid int) error {
	mc := memcache.New(addr)
	defer mc.Close()
	// Every connection gomemcache dials ends its pending I/O when ctx ends, and its
	// socket timeout is at most what is left of ctx.
	mc.DialContext = func(_ context.Context, _, _ string) (net.Conn, error) { return deadlineConn(ctx, addr) }
	mc.Timeout = probeTimeout
	if d, ok := ctx.Deadline(); ok {
		mc.Timeout = max(time.Until(d), time.Millisecond)
	}
	if err := mc.Ping(); err != nil {
		return fmt.Errorf("version to %s: %w", addr, err)
	}
	got, err := memcachedPID(ctx, addr)
	if err != nil {
		return err
	}
	if got != strconv.Itoa(pid) {
		return fmt.Errorf("%s is served by process %q, not %d", addr, got, pid)
	}
	return nil
}

// memcachedPID returns the pid the stats of the memcached at addr report. gomemcache
// has no stats command (nor a way to send a command of one's own), so this one
// exchange is sent directly, with net/textproto framing the lines: "stats", then
// "STAT <name> <value>" lines up to "END".
func memcachedPID(ctx context.Context, addr string) (string, error) {
	c, err := deadlineConn(ctx, addr)
	if err != nil {
		return "", fmt.Errorf("stats from %s: %w", addr, err)
	}
	defer c.Close()
	tc := textproto.NewConn(c)
	if err := tc.PrintfLine("stats"); err != nil {
		return "", fmt.Errorf("stats to %s: %w", addr, err)
	}
	pid := ""
	for {
		line, err := tc.ReadLine()
		switch {
		case err != nil:
			return "", fmt.Errorf("stats from %s: %w", addr, err)
		case line == "END":
			return pid, nil
		case !strings.HasPrefix(line, "STAT "):
			return "", fmt.Errorf("stats from %s: unexpected line %q", addr, line)
		}
		if v, ok := strings.CutPrefix(line, "STAT pid "); ok {
			pid = v
		}
	}
}
