package svctest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// StartRedis starts redis-server on a free loopback port with its working directory in
// dir, without persistence (tests want a blank server, and a crash must not replay old
// data), and waits until it answers PING. extraArgs are appended to the command line, so
// they override the defaults.
func StartRedis(dir string, extraArgs ...string) (*Proc, error) {
	return startRedis(dir, freePort, extraArgs)
}

func startRedis(dir string, pickPort func() (int, error), extraArgs []string) (*Proc, error) {
	bin, err := lookBin("redis-server")
	if err != nil {
		return nil, err
	}
	extra := append([]string(nil), extraArgs...)
	p := &Proc{
		Name: "redis",
		Dir:  dir,
		bin:  bin,
		argsFor: func(port int) []string {
			return append([]string{
				"--port", strconv.Itoa(port),
				"--bind", "127.0.0.1",
				"--dir", dir,
				"--save", "",
				"--appendonly", "no",
				"--protected-mode", "no",
			}, extra...)
		},
		probe: probeRedis,
		wait:  10 * time.Second,
	}
	if err := p.start(pickPort); err != nil {
		return nil, err
	}
	return p, nil
}

// probeRedis checks that the server answers PING and is the process with the given pid.
func probeRedis(ctx context.Context, addr string, pid int) error {
	if reply, err := redisDo(ctx, addr, "PING"); err != nil {
		return err
	} else if reply != "PONG" {
		return fmt.Errorf("PING answered %q", reply)
	}
	info, err := redisDo(ctx, addr, "INFO", "server")
	if err != nil {
		return err
	}
	if got := infoField(info, "process_id"); got != strconv.Itoa(pid) {
		return fmt.Errorf("%s is served by process %s, not %d", addr, got, pid)
	}
	return nil
}

// redisDo sends one command over a new connection and returns the reply as a string. It
// speaks just enough RESP for readiness and cluster checks (simple strings, errors,
// integers and bulk strings), which keeps the package free of a client dependency.
func redisDo(ctx context.Context, addr string, args ...string) (string, error) {
	c, err := deadlineConn(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("empty RESP reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis error: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("bad bulk reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	default:
		return "", fmt.Errorf("unsupported RESP reply %q", line)
	}
}

// infoField returns the value of a "name:value" line of an INFO or CLUSTER INFO reply.
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}
