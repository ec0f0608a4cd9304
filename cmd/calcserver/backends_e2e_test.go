package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	_ "github.com/go-sql-driver/mysql"
	goredis "github.com/redis/go-redis/v9"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// store is raw access to what a backend holds for a key at CalcVersion 1, bypassing
// calcserver: to check what it wrote and to tamper with it.
type store interface {
	read(t *testing.T, key string) ([]byte, error) // nil, nil when absent
	write(t *testing.T, key string, v []byte)
}

// backendCase is one shared backend under test.
type backendCase struct {
	name  string
	ini   string
	svc   *svctest.Proc // nil for the file system
	store store
	purge bool // can enumerate its keys
}

// want is the value calcserver stores for key.
func want(key string) []byte {
	return cache.EncodeValue(1, key, calc.Sum(1, []byte(key)))
}

type redisStore struct{ c *goredis.Client }

func (s redisStore) read(t *testing.T, key string) ([]byte, error) {
	v, err := s.c.Get(context.Background(), cache.StorageKey(1, key)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	return v, err
}

func (s redisStore) write(t *testing.T, key string, v []byte) {
	t.Helper()
	if err := s.c.Set(context.Background(), cache.StorageKey(1, key), v, 0).Err(); err != nil {
		t.Fatal(err)
	}
}

type memcacheStore struct{ c *memcache.Client }

func (s memcacheStore) read(t *testing.T, key string) ([]byte, error) {
	it, err := s.c.Get(cache.StorageKey(1, key))
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return it.Value, nil
}

func (s memcacheStore) write(t *testing.T, key string, v []byte) {
	t.Helper()
	if err := s.c.Set(&memcache.Item{Key: cache.StorageKey(1, key), Value: v}); err != nil {
		t.Fatal(err)
	}
}

type fileStore struct{ dir string }

func (s fileStore) path(key string) string {
	h := sha256.Sum256([]byte(key))
	x := hex.EncodeToString(h[:])
	return filepath.Join(s.dir, "unicorn", "v1", x[:2], x[2:4], x)
}

func (s fileStore) read(t *testing.T, key string) ([]byte, error) {
	b, err := os.ReadFile(s.path(key))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (s fileStore) write(t *testing.T, key string, v []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(s.path(key)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.path(key), v, 0o644); err != nil {
		t.Fatal(err)
	}
}

// mysqlStore reads the contest table; its value is the token alone, which want()
// begins with.
type mysqlStore struct{ db *sql.DB }

func (s mysqlStore) read(t *testing.T, key string) ([]byte, error) {
	var v string
	err := s.db.QueryRow("SELECT requestvalue FROM unicorntable WHERE BINARY requestid = BINARY ? ORDER BY id DESC LIMIT 1", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return append([]byte(v), want(key)[calc.TokenSize:]...), nil
}

func (s mysqlStore) write(t *testing.T, key string, v []byte) {
	t.Helper()
	if _, err := s.db.Exec("INSERT INTO unicorntable (requestid, requestvalue, hits) VALUES (?, ?, 0)", key, string(v[:min(len(v), calc.TokenSize)])); err != nil {
		t.Fatal(err)
	}
}

const contestTable = "CREATE TABLE unicorntable(id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT)"

func openMySQL(t *testing.T, p *svctest.Proc, db string) *sql.DB {
	t.Helper()
	root, err := sql.Open("mysql", p.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := root.Exec("CREATE DATABASE IF NOT EXISTS " + db); err != nil {
		t.Fatal(err)
	}
	d, err := sql.Open("mysql", p.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// stored returns what bc holds for key; a failed read (a client's stale connection
// after a restart, say) counts as not there yet, so polls retry it.
func stored(t *testing.T, bc backendCase, key string) []byte {
	v, err := bc.store.read(t, key)
	if err != nil {
		t.Logf("%s read of %q: %v", bc.name, key, err)
		return nil
	}
	return v
}

// mustStored is stored for a read that must work.
func mustStored(t *testing.T, bc backendCase, key string) []byte {
	t.Helper()
	v, err := bc.store.read(t, key)
	if err != nil {
		t.Fatalf("%s read of %q: %v", bc.name, key, err)
	}
	return v
}

func backendCases() []func(t *testing.T) backendCase {
	return []func(t *testing.T) backendCase{
		func(t *testing.T) backendCase {
			p := svctest.Redis(t)
			c := goredis.NewClient(&goredis.Options{Addr: p.Addr})
			t.Cleanup(func() { c.Close() })
			return backendCase{name: "redis", ini: fmt.Sprintf("\"RedisHost\" = \"127.0.0.1\"\n\"RedisPort\" = \"%d\"\n", p.Port),
				svc: p, store: redisStore{c}, purge: true}
		},
		func(t *testing.T) backendCase {
			p := svctest.Memcached(t)
			return backendCase{name: "memcached", ini: fmt.Sprintf("\"MemcacheHost\" = \"127.0.0.1\"\n\"MemcachePort\" = \"%d\"\n", p.Port),
				svc: p, store: memcacheStore{memcache.New(p.Addr)}}
		},
		func(t *testing.T) backendCase {
			dir := t.TempDir()
			return backendCase{name: "file", ini: fmt.Sprintf("\"FsPath\" = %q\n", dir), store: fileStore{dir}, purge: true}
		},
		func(t *testing.T) backendCase {
			p := svctest.MariaDB(t)
			db := openMySQL(t, p, "unicorn")
			if _, err := db.Exec(contestTable); err != nil {
				t.Fatal(err)
			}
			return backendCase{name: "mysql", ini: fmt.Sprintf("MysqlHost = 127.0.0.1\nMysqlPort = %d\nMysqlUser = root\nMysqlDb = unicorn\nCacheTimeout = 500ms\n", p.Port),
				svc: p, store: mysqlStore{db}, purge: true}
		},
	}
}

// eventually polls cond for up to 15 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within 15s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type healthDoc struct {
	Status string
	Cache  []struct {
		Name    string
		Healthy bool
	}
}

func health(t *testing.T, p *proc) healthDoc {
	t.Helper()
	var h healthDoc
	if err := json.Unmarshal([]byte(p.get(t, "GET", "/healthcheck").body), &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestEndToEndSharedBackends(t *testing.T) {
	for _, setup := range backendCases() {
		// Each backend runs in its own subtest with its own service.
		t.Run("", func(t *testing.T) {
			bc := setup(t)
			t.Run(bc.name, func(t *testing.T) { testBackend(t, bc) })
		})
	}
}

func testBackend(t *testing.T, bc backendCase) {
	// No memory tier: every lookup reaches the backend.
	ini := bc.ini + "WorkMode = sleep\nWorkTime = 10ms\nMemoryCacheSize = 0\n"
	a := start(t, ini)

	// Store, then hit.
	if r := a.get(t, "GET", "/calc?input=first"); r.code != 200 || r.cache != "MISS" {
		t.Fatalf("first: %d %s", r.code, r.cache)
	}
	eventually(t, "the write of first", func() bool { return string(stored(t, bc, "first")) == string(want("first")) })
	if r := a.get(t, "GET", "/calc?input=first"); r.cache != "HIT" || r.body != string(calc.Body(calc.Token, 1, []byte("first"))) {
		t.Fatalf("repeat: %s %q", r.cache, r.body)
	}
	h := health(t, a)
	if h.Status != "ok" || len(h.Cache) != 1 || h.Cache[0].Name != bc.name || !h.Cache[0].Healthy {
		t.Fatalf("healthcheck %+v", h)
	}

	// A second server sharing the backend hits what the first stored.
	b := start(t, ini)
	if r := b.get(t, "GET", "/calc?input=first"); r.cache != "HIT" {
		t.Fatalf("server B: X-Cache %s, want HIT from the shared backend", r.cache)
	}
	// So does B after a restart (with the memory tier on this time: it starts empty).
	if r := b.get(t, "GET", "/calc?input=second"); r.cache != "MISS" {
		t.Fatalf("second: X-Cache %s", r.cache)
	}
	b.terminate(t)
	b = start(t, bc.ini+"WorkMode = sleep\nWorkTime = 10ms\n")
	if r := b.get(t, "GET", "/calc?input=second"); r.cache != "HIT" {
		t.Fatalf("restarted server: X-Cache %s, want HIT from the shared backend", r.cache)
	}

	// A tampered value is not served: the right answer is, and the value replaced.
	bc.store.write(t, "tampered", want("another-key"))
	if r := a.get(t, "GET", "/calc?input=tampered"); r.code != 200 || r.cache != "MISS" ||
		r.body != string(calc.Body(calc.Token, 1, []byte("tampered"))) {
		t.Fatalf("tampered: %d %s %q", r.code, r.cache, r.body)
	}
	eventually(t, "the replacement of the tampered value", func() bool { return string(stored(t, bc, "tampered")) == string(want("tampered")) })

	testPurge(t, bc, a)

	// The backend dies: every request is still answered, health says degraded.
	if bc.svc != nil {
		if err := bc.svc.Kill(); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			if r := a.get(t, "GET", fmt.Sprintf("/calc?input=while-down-%d", i)); r.code != 200 {
				t.Fatalf("request %d while the backend is down: %d", i, r.code)
			}
		}
		eventually(t, "degraded health", func() bool {
			h := health(t, a)
			return h.Status == "degraded" && !h.Cache[0].Healthy
		})
		if r := a.get(t, "GET", "/healthcheck"); r.code != 200 {
			t.Fatalf("degraded healthcheck answered %d; a balancer must keep the server", r.code)
		}
		if err := bc.svc.Restart(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "recovery", func() bool { return health(t, a).Status == "ok" })
		a.get(t, "GET", "/calc?input=after-recovery")
		eventually(t, "a write after recovery", func() bool { return stored(t, bc, "after-recovery") != nil })
	}
}

func testPurge(t *testing.T, bc backendCase, a *proc) {
	keys := []string{"aaH@XX0RR333DDDbb", base64.StdEncoding.EncodeToString([]byte("xH@XX0RR333DDDx")), "innocent"}
	for _, k := range keys {
		a.get(t, "GET", "/calc?input="+strings.ReplaceAll(strings.ReplaceAll(k, "+", "%2B"), "=", "%3D"))
		eventually(t, "the write of "+k, func() bool { return stored(t, bc, k) != nil })
	}
	cfg := writeINI(t, bc.ini)
	code, stdout, stderr := runCmd(t, nil, "purge", "-config", cfg, "-match", "H@XX0RR333DDD")
	if code != 0 {
		t.Fatalf("purge exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !bc.purge {
		if !strings.Contains(stdout, bc.name+": cannot enumerate") {
			t.Fatalf("purge output:\n%s", stdout)
		}
		return
	}
	if !strings.Contains(stdout, bc.name+": removed 2") {
		t.Fatalf("purge output:\n%s", stdout)
	}
	if mustStored(t, bc, keys[0]) != nil || mustStored(t, bc, keys[1]) != nil || mustStored(t, bc, "innocent") == nil {
		t.Fatal("purge removed the wrong entries")
	}
}

func TestEndToEndMySQLTable(t *testing.T) {
	p := svctest.MariaDB(t)
	db := openMySQL(t, p, "unicorn")
	base := fmt.Sprintf("MysqlHost = 127.0.0.1\nMysqlPort = %d\nMysqlUser = root\nMysqlDb = unicorn\nCacheTimeout = 500ms\n", p.Port)

	cfg := writeINI(t, base+"Port = 0\n")
	code, _, stderr := runCmd(t, nil, "-config", cfg)
	if code != 1 || !strings.Contains(stderr, "unicorntable") || !strings.Contains(stderr, "CREATE TABLE") {
		t.Fatalf("missing table: exit %d\n%s", code, stderr)
	}

	if _, err := db.Exec("CREATE TABLE short (id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(100), hits INT)"); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCmd(t, nil, "-config", writeINI(t, base+"Port = 0\nMysqlTable = short\n"))
	if code != 1 || !strings.Contains(stderr, "cannot be used") || !strings.Contains(stderr, "short") {
		t.Fatalf("unusable table: exit %d\n%s", code, stderr)
	}

	s := start(t, base+"MysqlCreateTable = true\nMemoryCacheSize = 0\nWorkMode = sleep\nWorkTime = 10ms\nCacheTTL = 1h\n")
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema='unicorn' AND table_name='unicorntable' AND column_name='requestid' AND non_unique=0").Scan(&n); err != nil || n != 1 {
		t.Fatalf("created table has no unique index on requestid: %d %v", n, err)
	}
	s.get(t, "GET", "/calc?input=counted")
	eventually(t, "the row", func() bool {
		return db.QueryRow("SELECT 1 FROM unicorntable WHERE requestid='counted'").Scan(&n) == nil
	})
	for range 3 {
		if r := s.get(t, "GET", "/calc?input=counted"); r.cache != "HIT" {
			t.Fatalf("X-Cache %s", r.cache)
		}
	}
	eventually(t, "hits = 3", func() bool {
		var hits int
		return db.QueryRow("SELECT hits FROM unicorntable WHERE requestid='counted'").Scan(&hits) == nil && hits == 3
	})
}

func TestEndToEndRedisClusterAndMemcacheFlag(t *testing.T) {
	c := svctest.RedisCluster(t, 3)
	cluster := fmt.Sprintf("RedisAddrs = %s\nMemoryCacheSize = 0\nWorkMode = sleep\nWorkTime = 10ms\n", strings.Join(c.Addrs, ","))
	a, b := start(t, cluster), start(t, cluster)
	for i := range 20 {
		if r := a.get(t, "GET", fmt.Sprintf("/calc?input=c%d", i)); r.code != 200 || r.cache != "MISS" {
			t.Fatalf("cluster miss %d: %d %s", i, r.code, r.cache)
		}
	}
	for i := range 20 {
		key := fmt.Sprintf("/calc?input=c%d", i)
		eventually(t, "a cluster hit on B", func() bool { return b.get(t, "GET", key).cache == "HIT" })
	}

	m := svctest.Memcached(t)
	ini := "MemoryCacheSize = 0\nWorkMode = sleep\nWorkTime = 10ms\n"
	a = start(t, ini, "-memcache-server", m.Addr)
	b = start(t, ini, "-memcache-server", m.Addr)
	if r := a.get(t, "GET", "/calc?input=flagged"); r.cache != "MISS" {
		t.Fatalf("memcache flag: %s", r.cache)
	}
	eventually(t, "a memcached hit on B", func() bool { return b.get(t, "GET", "/calc?input=flagged").cache == "HIT" })
	if h := health(t, b); len(h.Cache) != 1 || h.Cache[0].Name != "memcached" {
		t.Fatalf("chain of a server given -memcache-server: %+v", h)
	}
}

func TestEndToEndPurgeReportsAFailedBackend(t *testing.T) {
	p := svctest.Redis(t)
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	cfg := writeINI(t, fmt.Sprintf("RedisHost = 127.0.0.1\nRedisPort = %d\nFsPath = %q\n", p.Port, t.TempDir()))
	code, stdout, _ := runCmd(t, nil, "purge", "-config", cfg, "-match", "x")
	if code != 1 || !strings.Contains(stdout, "redis: failed") || !strings.Contains(stdout, "file: removed 0") {
		t.Fatalf("purge with redis down: exit %d\n%s", code, stdout)
	}
	code, _, stderr := runCmd(t, nil, "purge", "-config", cfg)
	if code != 2 || !strings.Contains(stderr, "-match") {
		t.Fatalf("purge without -match: exit %d\n%s", code, stderr)
	}
}

// allAnswered sends n concurrent misses (keys prefix-0 …) and fails t unless every
// one is answered 200.
func allAnswered(t *testing.T, p *proc, prefix string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := http.Get(fmt.Sprintf("%s/calc?input=%s-%d", p.base, prefix, i))
			if err != nil {
				t.Errorf("%s-%d: %v", prefix, i, err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("%s-%d answered %d, want 200", prefix, i, resp.StatusCode)
			}
		})
	}
	wg.Wait()
}

// TestEndToEndHungBackend freezes Redis: lookups then wait for CacheTimeout until
// the breaker opens, and every request is still answered.
func TestEndToEndHungBackend(t *testing.T) {
	p := svctest.Redis(t)
	s := start(t, fmt.Sprintf("RedisHost = 127.0.0.1\nRedisPort = %d\nMemoryCacheSize = 0\nCacheTimeout = 100ms\nCores = 16\nWorkMode = sleep\nWorkTime = 10ms\n", p.Port))
	s.get(t, "GET", "/calc?input=before")
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	allAnswered(t, s, "hung", 12)
	eventually(t, "degraded health", func() bool { return health(t, s).Status == "degraded" })
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "recovery", func() bool { return health(t, s).Status == "ok" })
	eventually(t, "a hit after recovery", func() bool { return s.get(t, "GET", "/calc?input=before").cache == "HIT" })
}

// TestEndToEndBackendsStartDegraded starts a server whose backends are all down.
func TestEndToEndBackendsStartDegraded(t *testing.T) {
	p := svctest.Redis(t)
	port := p.Port
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	s := start(t, fmt.Sprintf("RedisHost = 127.0.0.1\nRedisPort = %d\nWorkMode = sleep\nWorkTime = 10ms\n", port))
	if h := health(t, s); h.Status != "degraded" {
		t.Fatalf("health %+v", h)
	}
	allAnswered(t, s, "down", 5)
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "recovery", func() bool { return health(t, s).Status == "ok" })
}
