package app

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/config"
)

func TestTheTableIsConfigsListOfBackends(t *testing.T) {
	var names []string
	for _, b := range Backends() {
		names = append(names, b.Name)
	}
	if want := config.CacheBackends(); !slices.Equal(names, want) {
		t.Fatalf("Backends() names %v, config.CacheBackends() %v: CacheOrder must accept every backend, in the default order", names, want)
	}
}

func TestChainOrder(t *testing.T) {
	all := func(c *config.Config) {
		c.RedisHost, c.MemcacheServers, c.FsPath, c.MysqlHost, c.MysqlDb = "r", []string{"m:1"}, "/x", "db", "d"
	}
	cases := map[string]struct {
		mod  func(*config.Config)
		want []string
	}{
		"defaults have the memory tier only":          {func(*config.Config) {}, []string{"memory"}},
		"no memory tier and nothing else is no chain": {func(c *config.Config) { c.MemoryCacheSize = 0 }, nil},
		"every backend goes fastest first":            {all, []string{"memory", "redis", "memcached", "file", "mysql"}},
		"CacheOrder comes first, the rest follow in the default order": {func(c *config.Config) {
			all(c)
			c.CacheOrder = []string{"mysql", "memory"}
		}, []string{"mysql", "memory", "redis", "memcached", "file"}},
		"the reference memcached keys and the GameDay list both count": {func(c *config.Config) {
			c.MemoryCacheSize, c.MemcacheHost = 0, "h"
		}, []string{"memcached"}},
		"RedisAddrs alone is redis": {func(c *config.Config) { c.RedisAddrs = []string{"a:1", "b:2"} }, []string{"memory", "redis"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := config.Default()
			c.mod(&cfg)
			if got := ChainOrder(cfg); !slices.Equal(got, c.want) {
				t.Fatalf("ChainOrder = %v, want %v", got, c.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := map[string]struct {
		ini  string
		want []string // each error's text; none = valid
	}{
		"the defaults pass": {"", nil},
		"CacheOrder with an unconfigured redis fails": {"CacheOrder = memory,redis\n",
			[]string{`server.ini:1: CacheOrder = "memory,redis": lists redis, but it is off: set RedisHost or RedisAddrs`}},
		"CacheOrder with memory and no memory tier fails": {"MemoryCacheSize = 0\nCacheOrder = memory\n",
			[]string{`server.ini:2: CacheOrder = "memory": lists memory, but it is off: set MemoryCacheSize above 0`}},
		"CacheOrder with configured backends passes": {"CacheOrder = mysql,file\nMysqlHost = db\nMysqlDb = u\nFsPath = /mnt/efs\n", nil},
		"config's own errors come first": {"CacheOrder = file\nMysqlHost = db\n", []string{
			`server.ini:2: MysqlDb = "": must be set when MysqlHost is set (MysqlHost is set on this line)`,
			`server.ini:1: CacheOrder = "file": lists file, but it is off: set FsPath`,
		}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Parse("server.ini", []byte(tt.ini))
			if err != nil {
				t.Fatal(err)
			}
			err = Validate(cfg)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var e *config.Error
			if !errors.As(err, &e) {
				t.Fatalf("Validate = %v, want a *config.Error", err)
			}
			if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tt.want) {
				t.Errorf("Validate =\n%s\nwant\n%s", err, strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestNew(t *testing.T) {
	cfg := config.Default()
	cfg.WorkMode, cfg.WorkTime = "sleep", time.Millisecond
	cfg.FsPath = t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.RedisHost = ln.Addr().String()
	ln.Close() // nothing listens there: redis is down at startup
	a, err := New(cfg, Options{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	t.Cleanup(func() { _ = a.Chain.Close(context.Background()) })
	if got, want := a.Chain.Names(), []string{"memory", "redis", "file"}; !slices.Equal(got, want) {
		t.Errorf("chain %v, want %v", got, want)
	}
	ts := httptest.NewServer(a.Server.Handler())
	t.Cleanup(ts.Close)
	for _, want := range []string{"MISS", "HIT"} {
		resp, err := http.Get(ts.URL + "/calc?input=testing")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache") != want {
			t.Errorf("GET /calc: %d X-Cache %q, want 200 %s", resp.StatusCode, resp.Header.Get("X-Cache"), want)
		}
	}
	for _, h := range a.Chain.Health() {
		if h.Healthy != (h.Name != "redis") {
			t.Errorf("%s healthy = %v: only redis is down", h.Name, h.Healthy)
		}
	}
}

func TestNewRefusesOptionsABackendRefuses(t *testing.T) {
	cfg := config.Default()
	cfg.MysqlHost, cfg.MysqlDb, cfg.MysqlTable = "db", "u", "not a table"
	if _, err := New(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "mysql backend: ") {
		t.Fatalf("New = %v, want the mysql backend's error", err)
	}
}

func TestCheckBuildsEveryBackendWithoutConnecting(t *testing.T) {
	cfg := config.Default()
	// Nothing listens on these: Check must not try.
	cfg.RedisAddrs, cfg.MemcacheServers, cfg.FsPath = []string{"192.0.2.1:1"}, []string{"192.0.2.1:2"}, "/nonexistent"
	cfg.MysqlHost, cfg.MysqlDb = "192.0.2.1", "u"
	start := time.Now()
	if err := Check(cfg); err != nil {
		t.Fatalf("Check = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Check took %v: it must not connect", d)
	}
	cfg.CacheOrder = []string{"memory"}
	cfg.MemoryCacheSize = 0
	if err := Check(cfg); err == nil || !strings.Contains(err.Error(), "lists memory, but it is off") {
		t.Errorf("Check = %v, want Validate's error", err)
	}
}

func TestHostPortUsesTheServiceDefault(t *testing.T) {
	for _, c := range []struct {
		host      string
		port, def int
		want      string
	}{
		{"localhost", 0, 6379, "localhost:6379"},
		{"10.0.0.5", 6380, 6379, "10.0.0.5:6380"},
		{"::1", 11211, 11211, "[::1]:11211"},
		{"127.0.0.1:6380", 0, 6379, "127.0.0.1:6380"},
		{"cache.example:7000", 6379, 6379, "cache.example:7000"},
	} {
		if got := hostPort(c.host, c.port, c.def); got != c.want {
			t.Errorf("hostPort(%q, %d) = %q, want %q", c.host, c.port, got, c.want)
		}
	}
}

func TestCheckNamesTheLineOfEveryProblem(t *testing.T) {
	dir := t.TempDir()
	missing := dir + "/missing/calcserver.log"
	tests := map[string]struct {
		ini  string
		want []string // each error's text; none = valid
	}{
		"a cluster with a DB other than 0": {"RedisAddrs = 127.0.0.1:1,127.0.0.1:2\nRedisDB = 1\n", []string{
			`server.ini:2: RedisDB = "1": must be 0 when RedisAddrs is set: RedisAddrs makes a Redis cluster, and a cluster has only DB 0`}},
		"an unwritable LogLocation": {"Cores = 2\nLogLocation = " + missing + "\n", []string{
			`server.ini:2: LogLocation = "` + missing + `": cannot be written: cannot create ` + missing + `: stat ` + dir + `/missing: no such file or directory`}},
		"the log's problem with the others": {"LogLocation = " + missing + "\nMysqlHost = db\nCacheOrder = file\n", []string{
			`server.ini:2: MysqlDb = "": must be set when MysqlHost is set (MysqlHost is set on this line)`,
			`server.ini:3: CacheOrder = "file": lists file, but it is off: set FsPath`,
			`server.ini:1: LogLocation = "` + missing + `": cannot be written: cannot create ` + missing + `: stat ` + dir + `/missing: no such file or directory`,
		}},
		// What only the backend finds (the CA file is read when it is built) is
		// put on the key it is about.
		"a MongoDB CA file that is missing": {"MongoDbHost = m\nMongoDbDatabase = u\nMongoDbEnableSSL = true\nMongoDbCAFilePath = " + dir + "/ca.pem\n", []string{
			`server.ini:4: MongoDbCAFilePath = "` + dir + `/ca.pem": mongodb backend: mongo m:27017/u.unicorntable: CA file: open ` + dir + `/ca.pem: no such file or directory`}},
		// The mongodb backend refuses a port in both keys, even the same: the
		// application passes it once.
		"the same MongoDB port in both keys": {"MongoDbHost = m:27017\nMongoDbPort = 27017\nMongoDbDatabase = u\n", nil},
		"a writable LogLocation":             {"LogLocation = " + dir + "\n", nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Parse("server.ini", []byte(tt.ini))
			if err != nil {
				t.Fatal(err)
			}
			err = Check(cfg)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tt.want) {
				t.Errorf("Check =\n%s\nwant\n%s", err, strings.Join(tt.want, "\n"))
			}
			var e *config.Error
			if !errors.As(err, &e) {
				t.Errorf("Check = %v, want *config.Error values", err)
			}
		})
	}
}
