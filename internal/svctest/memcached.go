package svctest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
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
	c, err := deadlineConn(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := io.WriteString(c, "version\r\n"); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "VERSION ") {
		return fmt.Errorf("version answered %q", line)
	}
	if _, err := io.WriteString(c, "stats\r\n"); err != nil {
		return err
	}
	got := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimSuffix(line, "\r\n")
		if line == "END" {
			break
		}
		if v, ok := strings.CutPrefix(line, "STAT pid "); ok {
			got = v
		}
	}
	if got != strconv.Itoa(pid) {
		return fmt.Errorf("%s is served by process %q, not %d", addr, got, pid)
	}
	return nil
}
