package svctest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

func TestRedisAnswersAndSurvivesKillAndRestart(t *testing.T) {
	t.Parallel()
	p := Redis(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr, MaxRetries: -1})
	defer rdb.Close()

	if err := rdb.Set(ctx, "unicorn", "sparkle", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := rdb.Get(ctx, "unicorn").Result(); err != nil || got != "sparkle" {
		t.Fatalf("GET = %q, %v; want sparkle", got, err)
	}
	if out := p.Output(); !strings.Contains(out, "Ready to accept connections") {
		t.Fatalf("Output() = %q, want redis-server's startup log", out)
	}

	port := p.Port
	killAndCheckGone(t, p)
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded after Kill")
	}

	restart(t, p, port)
	if err := rdb.Set(ctx, "unicorn", "again", 0).Err(); err != nil {
		t.Fatalf("SET after restart: %v", err)
	}
	if got, err := rdb.Get(ctx, "unicorn").Result(); err != nil || got != "again" {
		t.Fatalf("GET after restart = %q, %v; want again", got, err)
	}
}

func TestRedisExtraArgsOverrideDefaults(t *testing.T) {
	t.Parallel()
	p := Redis(t, "--maxmemory", "7mb")
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr, MaxRetries: -1})
	defer rdb.Close()
	got, err := rdb.ConfigGet(context.Background(), "maxmemory").Result()
	if err != nil {
		t.Fatalf("CONFIG GET: %v", err)
	}
	if want := strconv.Itoa(7 << 20); got["maxmemory"] != want {
		t.Fatalf("maxmemory = %q, want %s", got["maxmemory"], want)
	}
}

func TestMemcachedAnswersAndSurvivesKillAndRestart(t *testing.T) {
	t.Parallel()
	p := Memcached(t)
	mcSetGet(t, p.Addr, "unicorn", "sparkle")

	port := p.Port
	killAndCheckGone(t, p)
	restart(t, p, port)
	mcSetGet(t, p.Addr, "unicorn", "again")
}

func TestMariaDBKeepsDataAcrossKillAndRestart(t *testing.T) {
	t.Parallel()
	p := MariaDB(t)
	root := openDB(t, p.DSN(""))
	for _, q := range []string{
		"CREATE DATABASE stable",
		"CREATE TABLE stable.unicorns (name VARCHAR(32) PRIMARY KEY, horns INT NOT NULL)",
		"INSERT INTO stable.unicorns VALUES ('sparkle', 1), ('twilight', 2)",
	} {
		if _, err := root.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db := openDB(t, p.DSN("stable"))
	if n := countHorns(t, db); n != 3 {
		t.Fatalf("SUM(horns) = %d, want 3", n)
	}

	port := p.Port
	killAndCheckGone(t, p)
	if err := db.Ping(); err == nil {
		t.Fatal("ping succeeded after Kill")
	}

	restart(t, p, port)
	// InnoDB commits are durable, so a crash must not lose the rows.
	if n := countHorns(t, db); n != 3 {
		t.Fatalf("SUM(horns) after restart = %d, want 3", n)
	}
}

func TestRedisClusterServesKeysOnEveryNode(t *testing.T) {
	t.Parallel()
	c := RedisCluster(t, 3)
	if len(c.Nodes) != 3 || len(c.Addrs) != 3 {
		t.Fatalf("cluster has %d nodes and %d addrs, want 3", len(c.Nodes), len(c.Addrs))
	}
	ctx := context.Background()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	defer rdb.Close()
	for i := range 100 {
		if err := rdb.Set(ctx, fmt.Sprintf("key-%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET key-%d: %v", i, err)
		}
	}
	for i := range 100 {
		got, err := rdb.Get(ctx, fmt.Sprintf("key-%d", i)).Int()
		if err != nil || got != i {
			t.Fatalf("GET key-%d = %d, %v; want %d", i, got, err, i)
		}
	}
	for _, addr := range c.Addrs {
		if err := clusterOK(ctx, addr); err != nil {
			t.Error(err)
		}
		// With keys spread by slot, every master should hold some of the 100.
		node := redisClient(addr, nil)
		n, err := node.DBSize(ctx).Result()
		node.Close()
		if err != nil || n == 0 {
			t.Errorf("%s: DBSIZE = %d, %v; want some keys", addr, n, err)
		}
	}
}

func TestRedisClusterNeedsThreeMasters(t *testing.T) {
	t.Parallel()
	c, err := StartRedisCluster(t.TempDir(), 2)
	if err == nil {
		c.Stop()
		t.Fatal("a 2-master cluster started")
	}
}

// A cluster whose second node cannot start fails with an error and stops the node it
// had already started.
func TestAFailedClusterStartStopsItsNodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A file where node-1's directory belongs makes the second node fail.
	if err := os.WriteFile(filepath.Join(dir, "node-1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := StartRedisCluster(dir, 3)
	if err == nil {
		c.Stop()
		t.Fatal("a cluster started without a directory for its second node")
	}
	first := filepath.Join(dir, "node-0")
	procs, _ := filepath.Glob("/proc/[0-9]*/cwd")
	for _, cwd := range procs {
		if target, err := os.Readlink(cwd); err == nil && target == first {
			t.Fatalf("a process (%s) still runs in %s after the failed start: %v", cwd, first, err)
		}
	}
}

func TestStopAndKillAreIdempotent(t *testing.T) {
	t.Parallel()
	p := Memcached(t)
	for i, stop := range []func() error{p.Stop, p.Stop, p.Kill, p.Kill} {
		if err := stop(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if p.Running() {
			t.Fatalf("call %d: still running", i)
		}
	}
	if err := (&Proc{}).Stop(); err != nil {
		t.Fatalf("Stop of a never-started Proc: %v", err)
	}
}

func TestRestartOfRunningProcStartsAFreshProcess(t *testing.T) {
	t.Parallel()
	p := Redis(t)
	pid := func() string {
		t.Helper()
		rdb := redisClient(p.Addr, nil)
		defer rdb.Close()
		info, err := rdb.InfoMap(context.Background(), "server").Result()
		if err != nil || info["Server"]["process_id"] == "" {
			t.Fatalf("INFO server on %s: %v, process_id %q", p.Addr, err, info["Server"]["process_id"])
		}
		return info["Server"]["process_id"]
	}
	before := pid()
	restart(t, p, p.Port)
	if after := pid(); after == before {
		t.Fatalf("process_id %s unchanged by Restart", after)
	}
}

func TestStartErrorNamesBinaryPortAndOutput(t *testing.T) {
	t.Parallel()
	_, err := StartRedis(t.TempDir(), "--no-such-directive", "yes")
	if err == nil {
		t.Fatal("redis-server started with a bogus directive")
	}
	for _, want := range []string{"redis-server", "port ", "no-such-directive"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestStartMovesToAnotherPortWhenItsPortIsTaken(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	calls := 0
	pick := func() (int, error) {
		calls++
		if calls == 1 {
			return takenPort, nil
		}
		return freePort()
	}
	p, err := startRedis(t.TempDir(), pick, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if calls != 2 || p.Port == takenPort {
		t.Fatalf("after %d port picks it listens on %d; want a second pick, not %d", calls, p.Port, takenPort)
	}
}

func TestProbeRejectsAServerOfAnotherProcess(t *testing.T) {
	t.Parallel()
	r := Redis(t)
	m := Memcached(t)
	ctx := context.Background()
	if err := probeRedis(ctx, r.Addr, 1); err == nil {
		t.Error("probeRedis accepted a redis-server that is not pid 1")
	}
	if err := probeMemcached(ctx, m.Addr, 1); err == nil {
		t.Error("probeMemcached accepted a memcached that is not pid 1")
	}
	if err := probeRedis(ctx, r.Addr, pidOf(r)); err != nil {
		t.Errorf("probeRedis rejected the redis-server it started: %v", err)
	}
	if err := probeMemcached(ctx, m.Addr, pidOf(m)); err != nil {
		t.Errorf("probeMemcached rejected the memcached it started: %v", err)
	}
}

// pidOf returns the pid of p's latest start.
func pidOf(p *Proc) int { return p.current().cmd.Process.Pid }

func TestDSNIsOnlyForMariaDB(t *testing.T) {
	t.Parallel()
	p := &Proc{Name: "mariadb", Addr: "127.0.0.1:4000", Port: 4000}
	if got, want := p.DSN("app"), "root@tcp(127.0.0.1:4000)/app?parseTime=true"; got != want {
		t.Errorf("DSN = %q, want %q", got, want)
	}
	p.Name = "redis"
	if got := p.DSN("app"); got != "" {
		t.Errorf("redis DSN = %q, want empty", got)
	}
}

func TestTailKeepsTheLastBytes(t *testing.T) {
	t.Parallel()
	var tl Tail
	for i := range 3 * tailSize / 10 {
		fmt.Fprintf(&tl, "%09d\n", i)
	}
	s := tl.String()
	if len(s) != tailSize {
		t.Fatalf("tail holds %d bytes, want %d", len(s), tailSize)
	}
	if want := fmt.Sprintf("%09d\n", 3*tailSize/10-1); !strings.HasSuffix(s, want) {
		t.Fatalf("tail ends %q, want %q", s[len(s)-20:], want)
	}
}

// killAndCheckGone kills p and checks that nothing listens on its port any more.
func killAndCheckGone(t *testing.T, p *Proc) {
	t.Helper()
	if err := p.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if p.Running() {
		t.Fatal("Running after Kill")
	}
	if err := p.Exited(); err == nil || !strings.Contains(err.Error(), "signal: killed") || !strings.Contains(err.Error(), p.Addr[strings.LastIndex(p.Addr, ":")+1:]) {
		t.Fatalf("Exited() after Kill = %v, want the SIGKILL and the port", err)
	}
	if c, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Kill", p.Addr)
	}
}

// restart restarts p and checks it came back on port.
func restart(t *testing.T, p *Proc, port int) {
	t.Helper()
	if err := p.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if !p.Running() {
		t.Fatal("not Running after Restart")
	}
	if err := p.Exited(); err != nil {
		t.Fatalf("Exited() after Restart = %v, want nil", err)
	}
	if p.Port != port || p.Addr != net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) {
		t.Fatalf("restarted on %s (port %d), want port %d", p.Addr, p.Port, port)
	}
}

// mcSetGet stores key=value in the memcached at addr and reads it back.
func mcSetGet(t *testing.T, addr, key, value string) {
	t.Helper()
	mc := memcache.New(addr)
	defer mc.Close()
	mc.Timeout = 5 * time.Second
	if err := mc.Set(&memcache.Item{Key: key, Value: []byte(value)}); err != nil {
		t.Fatalf("memcached %s: set %s: %v", addr, key, err)
	}
	it, err := mc.Get(key)
	if err != nil || string(it.Value) != value {
		var got []byte
		if it != nil {
			got = it.Value
		}
		t.Fatalf("memcached %s: get %s = %q, %v; want %q", addr, key, got, err, value)
	}
}

func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func countHorns(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n sql.NullInt64
	if err := db.QueryRow("SELECT SUM(horns) FROM unicorns").Scan(&n); err != nil {
		t.Fatalf("SELECT: %v", err)
	}
	if !n.Valid {
		t.Fatal("SUM(horns) is NULL: the table is empty")
	}
	return int(n.Int64)
}

func TestPauseMakesRedisHangAndResumeAndStopWork(t *testing.T) {
	t.Parallel()
	p := Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr, MaxRetries: -1, ReadTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	err := rdb.Ping(ctx).Err()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("PING to a paused server: %v, want a timeout", err)
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop of a paused server: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Stop of a paused server took %v: it waited for the kill", d)
	}
}

func TestPostgresKeepsDataAcrossKillAndRestart(t *testing.T) {
	t.Parallel()
	p := Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := pgConnect(t, ctx, p)
	if _, err := conn.Exec(ctx, "CREATE TABLE horns (name TEXT); INSERT INTO horns VALUES ('sparkle')"); err != nil {
		t.Fatal(err)
	}
	if p.ConnString("postgres") == "" || (&Proc{Name: "redis"}).ConnString("x") != "" {
		t.Fatal("ConnString must be set for PostgreSQL only")
	}

	port := p.Port
	killAndCheckGone(t, p)
	// A crash takes the backends too: the open connection is dead at once.
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a query on a connection to a killed server succeeded")
	}
	restart(t, p, port)
	conn = pgConnect(t, ctx, p)
	var n int
	if err := conn.QueryRow(ctx, "SELECT COUNT(*) FROM horns").Scan(&n); err != nil || n != 1 {
		t.Fatalf("horns after restart = %d, %v; want 1", n, err)
	}
}

func TestPausedPostgresHangsItsConnectionsAndResumes(t *testing.T) {
	t.Parallel()
	p := Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := pgConnect(t, ctx, p)
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	// An open connection's backend is frozen too, not only the postmaster.
	qctx, qcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := conn.Exec(qctx, "SELECT 1")
	qcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a query to a paused server = %v, want DeadlineExceeded", err)
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := pgConnect(t, ctx, p).Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("a query after Resume: %v", err)
	}
	// Stop is a fast shutdown: it does not wait for the open connection to leave.
	start := time.Now()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Stop with a client connected took %v", took)
	}
}

func pgConnect(t *testing.T, ctx context.Context, p *Proc) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, p.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestProbesEndWithTheirContext: a server that accepts connections but never answers
// (a stranger on the port, or a hung process) cannot hold a probe past its context.
func TestProbesEndWithTheirContext(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered, until the listener closes
		}
	}()
	probes := map[string]func(context.Context, string, int) error{"redis": probeRedis, "memcached": probeMemcached}
	for name, probe := range probes {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		err := probe(ctx, l.Addr().String(), os.Getpid())
		cancel()
		if err == nil {
			t.Errorf("%s probe accepted a server that never answers", name)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s probe took %v against a 200ms context", name, d)
		}
	}
}

// TestProbesRejectTheOtherService: each probe fails, with an error naming the
// address, against a server that speaks the other protocol.
func TestProbesRejectTheOtherService(t *testing.T) {
	t.Parallel()
	r := Redis(t)
	m := Memcached(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := probeRedis(ctx, m.Addr, pidOf(m)); err == nil || !strings.Contains(err.Error(), m.Addr) {
		t.Errorf("probeRedis against memcached: %v, want an error naming %s", err, m.Addr)
	}
	if err := probeMemcached(ctx, r.Addr, pidOf(r)); err == nil || !strings.Contains(err.Error(), r.Addr) {
		t.Errorf("probeMemcached against redis-server: %v, want an error naming %s", err, r.Addr)
	}
}
