package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/cache/file"
	"github.com/unicorn-rentals/unicorn/internal/cache/memcached"
	"github.com/unicorn-rentals/unicorn/internal/cache/mysql"
	"github.com/unicorn-rentals/unicorn/internal/cache/redis"
	"github.com/unicorn-rentals/unicorn/internal/cli"
	"github.com/unicorn-rentals/unicorn/internal/config"
)

// builtBackends names the cache backends this build has, for config warnings.
func builtBackends() map[string]bool {
	return map[string]bool{"redis": true, "memcached": true, "mysql": true, "file": true}
}

// backend is one configured shared cache backend.
type backend struct {
	name  string
	cache cache.Cache
	close func() error
	mysql *mysql.Cache // set for the MySQL backend, which has a table to check
}

// startupTimeout bounds the first contact with each backend at startup; it is
// longer than CacheTimeout because a first connection (TLS, MySQL handshake,
// information_schema) costs more than a lookup.
func startupTimeout(cfg config.Config) time.Duration {
	return max(cfg.CacheTimeout, 3*time.Second)
}

// openBackends constructs the shared backends the configuration names, in the
// default order. Constructors do no network I/O, so this fails only on bad options.
func openBackends(cfg config.Config, log *slog.Logger) ([]backend, error) {
	var out []backend
	fail := func(name string, err error) ([]backend, error) {
		closeBackends(out)
		return nil, fmt.Errorf("%s backend: %w", name, err)
	}
	if cfg.RedisHost != "" || len(cfg.RedisAddrs) > 0 {
		o := redis.Options{Password: cfg.RedisPassword, DB: cfg.RedisDB, TLS: cfg.RedisTLS,
			TTL: cfg.CacheTTL, Version: cfg.CalcVersion, Timeout: cfg.CacheTimeout}
		if len(cfg.RedisAddrs) > 0 {
			o.Addrs, o.Cluster = cfg.RedisAddrs, true
		} else {
			o.Addrs = []string{hostPort(cfg.RedisHost, cfg.RedisPort, 6379)}
		}
		c, err := redis.New(o)
		if err != nil {
			return fail("redis", err)
		}
		out = append(out, backend{name: "redis", cache: c, close: c.Close})
	}
	if cfg.MemcacheHost != "" || len(cfg.MemcacheServers) > 0 {
		servers := cfg.MemcacheServers
		if len(servers) == 0 {
			servers = []string{hostPort(cfg.MemcacheHost, cfg.MemcachePort, 11211)}
		}
		c, err := memcached.New(memcached.Options{Servers: servers, TTL: cfg.CacheTTL, Version: cfg.CalcVersion, Timeout: cfg.CacheTimeout})
		if err != nil {
			return fail("memcached", err)
		}
		out = append(out, backend{name: "memcached", cache: c, close: c.Close})
	}
	if cfg.FsPath != "" {
		c, err := file.New(file.Options{Dir: cfg.FsPath, Version: cfg.CalcVersion, TTL: cfg.CacheTTL})
		if err != nil {
			return fail("file", err)
		}
		out = append(out, backend{name: "file", cache: c, close: c.Close})
	}
	if cfg.MysqlHost != "" {
		c, err := mysql.New(mysql.Options{Host: cfg.MysqlHost, Port: cfg.MysqlPort, User: cfg.MysqlUser, Pass: cfg.MysqlPass,
			DB: cfg.MysqlDb, Table: cfg.MysqlTable, CreateTable: cfg.MysqlCreateTable, TLS: cfg.MysqlTLS,
			TTL: cfg.CacheTTL, Version: cfg.CalcVersion, Timeout: cfg.CacheTimeout, Logger: log})
		if err != nil {
			return fail("mysql", err)
		}
		out = append(out, backend{name: "mysql", cache: c, close: c.Close, mysql: c})
	}
	return out, nil
}

func closeBackends(backends []backend) {
	for _, b := range backends {
		_ = b.close()
	}
}

// hostPort joins a reference-style host and port key pair; port 0 (unset) means the
// service's default port. A host given as host:port (contest files do that) is
// taken as it is.
func hostPort(host string, port, def int) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if port == 0 {
		port = def
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// configured names the cache tiers the configuration asks for, in the default order.
func configured(cfg config.Config) []string {
	on := map[string]bool{
		"memory":    cfg.MemoryCacheSize > 0,
		"redis":     cfg.RedisHost != "" || len(cfg.RedisAddrs) > 0,
		"memcached": cfg.MemcacheHost != "" || len(cfg.MemcacheServers) > 0,
		"file":      cfg.FsPath != "",
		"mysql":     cfg.MysqlHost != "",
	}
	var out []string
	for _, name := range config.CacheBackends() {
		if on[name] {
			out = append(out, name)
		}
	}
	return out
}

// chainOrder orders the configured tiers: CacheOrder first, then the rest fastest
// first (memory, redis, memcached, file, mysql).
func chainOrder(cfg config.Config) []string {
	rest := configured(cfg)
	var out []string
	for _, name := range cfg.CacheOrder {
		if i := slices.Index(rest, name); i >= 0 {
			out = append(out, name)
			rest = slices.Delete(rest, i, i+1)
		}
	}
	return append(out, rest...)
}

// tiers builds the chain's tiers in chainOrder.
func tiers(cfg config.Config, mem *cache.Memory, backends []backend) []cache.Tier {
	var out []cache.Tier
	for _, name := range chainOrder(cfg) {
		if name == "memory" {
			out = append(out, cache.Tier{Name: name, Cache: mem, Local: true})
			continue
		}
		for _, b := range backends {
			if b.name == name {
				out = append(out, cache.Tier{Name: name, Cache: b.cache})
			}
		}
	}
	return out
}

// initMySQL checks the MySQL table at startup. A missing table (without
// MysqlCreateTable) or one that cannot be used is fatal, because the file says it
// must exist; an unreachable server is not: the server starts degraded and the
// chain keeps probing.
func initMySQL(ctx context.Context, b backend) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := b.mysql.Init(ctx) // logs the table's warnings when it succeeds
	if errors.Is(err, mysql.ErrNoTable) || errors.Is(err, mysql.ErrSchema) {
		return err
	}
	return nil // unreachable: the chain's startup check reports it and probes
}

// purge is `calcserver purge`: it deletes the entries whose key (or its base64
// decoding) contains -match from every backend that can enumerate its keys.
func purge(args []string, e env) int {
	fs := cli.NewFlagSet("calcserver purge", "Usage: calcserver purge [-config PATH|s3://bucket/key] -match TEXT\n\nDeletes cached entries whose key, or its base64-decoded text, contains TEXT.\n\nFlags:\n", e.stderr)
	configPath := fs.String("config", "", "server.ini path or s3://bucket/key (default: $CALC_CONFIG)")
	match := fs.String("match", "", "text to match in keys (required)")
	if code, ok := cli.Parse(fs, args); !ok {
		return code
	}
	if *match == "" {
		fmt.Fprintln(e.stderr, "calcserver purge: -match TEXT is required")
		fs.Usage()
		return exitUsage
	}
	cfg, err := loadConfig(configLocation(*configPath, e.getenv), e.getenv)
	if fe := (*fetchError)(nil); errors.As(err, &fe) {
		fmt.Fprintf(e.stderr, "calcserver purge: %v\n", fe.err)
		return exitRuntime
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "calcserver purge: configuration error:\n%v\n", indent(err.Error()))
		return exitRuntime
	}
	backends, err := openBackends(cfg, slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		fmt.Fprintf(e.stderr, "calcserver purge: %v\n", err)
		return exitRuntime
	}
	defer closeBackends(backends)
	if len(backends) == 0 {
		fmt.Fprintln(e.stdout, "no shared cache backend configured: nothing to purge (the memory tier lives and dies with each server)")
		return exitOK
	}
	code := exitOK
	for _, b := range backends {
		p, ok := b.cache.(cache.Purger)
		if !ok {
			fmt.Fprintf(e.stdout, "%s: cannot enumerate its keys; entries expire with CacheTTL (or flush the whole cache)\n", b.name)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		if b.mysql != nil {
			if err := b.mysql.Init(ctx); err != nil {
				cancel()
				fmt.Fprintf(e.stdout, "%s: failed: %v\n", b.name, err)
				code = exitRuntime
				continue
			}
		}
		matches := func(key string) bool { return cache.MatchKey(key, *match) }
		var n, skipped int
		var err error
		if b.mysql != nil {
			n, skipped, err = b.mysql.PurgeCounts(ctx, matches)
		} else {
			n, err = p.Purge(ctx, matches)
		}
		cancel()
		if err != nil {
			fmt.Fprintf(e.stdout, "%s: failed after removing %d: %v\n", b.name, n, err)
			code = exitRuntime
			continue
		}
		fmt.Fprintf(e.stdout, "%s: removed %d\n", b.name, n)
		if skipped > 0 {
			fmt.Fprintf(e.stdout, "%s: skipped %d rows stored as sha256:<hex> (their key cannot be matched)\n", b.name, skipped)
		}
	}
	return code
}
