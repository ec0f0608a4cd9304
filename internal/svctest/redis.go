package svctest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
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
	// The connection is dialled here, not by go-redis, which logs every dial that
	// fails: a server still starting refuses a few, and they are no news. Its
	// pending I/O ends when ctx does.
	c, err := deadlineConn(ctx, addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close() // in case go-redis never took it
	rdb := redisClient(addr, c)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("PING %s: %w", addr, err)
	}
	info, err := rdb.InfoMap(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("INFO server on %s: %w", addr, err)
	}
	if got := info["Server"]["process_id"]; got != strconv.Itoa(pid) {
		return fmt.Errorf("%s is served by process %q, not %d", addr, got, pid)
	}
	return nil
}

// redisClient returns a client for a few commands to the one server at addr: one
// connection, no retries (a probe is polled), and every read and write bounded by
// the context of its command. If conn is not nil, it is that connection, and the
// client dials no other. Close the client after use.
func redisClient(addr string, conn net.Conn) *redis.Client {
	o := &redis.Options{
		Addr:                  addr,
		MaxRetries:            -1,
		DialerRetries:         1,
		PoolSize:              1,
		ContextTimeoutEnabled: true,
		// A probe for Redis Enterprise's maintenance notifications would cost a
		// round trip on every connection; redis-server has none.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if conn != nil {
		var dialled atomic.Bool
		o.Dialer = func(context.Context, string, string) (net.Conn, error) {
			if dialled.Swap(true) {
				return nil, fmt.Errorf("svctest: %s: the connection of this client is gone", addr)
			}
			return conn, nil
		}
	}
	return redis.NewClient(o)
}

// infoField returns the value of a "name:value" line of a CLUSTER INFO reply, which
// go-redis returns as the server's text.
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}
