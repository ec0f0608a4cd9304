package app

import (
	"log/slog"
	"net"
	"strconv"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/cache/dynamo"
	"github.com/unicorn-rentals/unicorn/internal/cache/file"
	"github.com/unicorn-rentals/unicorn/internal/cache/memcached"
	"github.com/unicorn-rentals/unicorn/internal/cache/mongo"
	"github.com/unicorn-rentals/unicorn/internal/cache/mysql"
	"github.com/unicorn-rentals/unicorn/internal/cache/postgres"
	"github.com/unicorn-rentals/unicorn/internal/cache/redis"
	"github.com/unicorn-rentals/unicorn/internal/config"
)

// Backend is one row of the table of cache backends.
type Backend struct {
	// Name is how CacheOrder, -check, /healthcheck and /metrics name the backend,
	// and the backend its keys are tagged with in internal/config.
	Name string
	// Local marks the in-process memory tier: it cannot fail, so the chain gives
	// it no deadline and no circuit breaker, and purge leaves it alone.
	Local bool
	// Enabled reports whether cfg turns the backend on. EnabledBy says how, for
	// the error of a CacheOrder that lists the backend while it is off.
	Enabled   func(cfg config.Config) bool
	EnabledBy string
	// Open constructs the backend from a validated cfg. It does no network I/O (a
	// backend that is down at startup must not stop the server), so it fails only
	// on options the backend refuses. What else the backend can do is found by
	// type assertion: cache.Initializer (run at startup and before purge),
	// cache.Pinger, cache.Deleter, cache.Purger, cache.CountingPurger, and a Close
	// method (run when the application closes).
	Open func(cfg config.Config, log *slog.Logger) (cache.Cache, error)
}

// Backends returns the table of cache backends, fastest first: the chain's
// default order, and the order of config.CacheBackends.
func Backends() []Backend {
	return []Backend{
		{
			Name: "memory", Local: true, EnabledBy: "MemoryCacheSize above 0",
			Enabled: func(c config.Config) bool { return c.MemoryCacheSize > 0 },
			Open: func(c config.Config, _ *slog.Logger) (cache.Cache, error) {
				return cache.NewMemory(c.MemoryCacheSize, c.CacheTTL), nil
			},
		},
		{
			Name: "redis", EnabledBy: "RedisHost or RedisAddrs",
			Enabled: func(c config.Config) bool { return c.RedisHost != "" || len(c.RedisAddrs) > 0 },
			Open:    openRedis,
		},
		{
			Name: "memcached", EnabledBy: "MemcacheHost or MemcacheServers",
			Enabled: func(c config.Config) bool { return c.MemcacheHost != "" || len(c.MemcacheServers) > 0 },
			Open:    openMemcached,
		},
		{
			Name: "file", EnabledBy: "FsPath",
			Enabled: func(c config.Config) bool { return c.FsPath != "" },
			Open: func(c config.Config, _ *slog.Logger) (cache.Cache, error) {
				return file.New(file.Options{Dir: c.FsPath, Version: c.CalcVersion, TTL: c.CacheTTL})
			},
		},
		{
			Name: "mongodb", EnabledBy: "MongoDbHost",
			Enabled: func(c config.Config) bool { return c.MongoDbHost != "" },
			Open:    openMongo,
		},
		{
			Name: "mysql", EnabledBy: "MysqlHost",
			Enabled: func(c config.Config) bool { return c.MysqlHost != "" },
			Open:    openMySQL,
		},
		{
			Name: "pgsql", EnabledBy: "PgsqlHost",
			Enabled: func(c config.Config) bool { return c.PgsqlHost != "" },
			Open:    openPostgres,
		},
		{
			Name: "dynamodb", EnabledBy: "DynamoTable",
			Enabled: func(c config.Config) bool { return c.DynamoTable != "" },
			Open:    openDynamo,
		},
	}
}

func openRedis(c config.Config, _ *slog.Logger) (cache.Cache, error) {
	o := redis.Options{Password: c.RedisPassword, DB: c.RedisDB, TLS: c.RedisTLS,
		TTL: c.CacheTTL, Version: c.CalcVersion, Timeout: c.CacheTimeout}
	if len(c.RedisAddrs) > 0 {
		o.Addrs, o.Cluster = c.RedisAddrs, true
	} else {
		o.Addrs = []string{hostPort(c.RedisHost, c.RedisPort, 6379)}
	}
	return redis.New(o)
}

func openMemcached(c config.Config, _ *slog.Logger) (cache.Cache, error) {
	servers := c.MemcacheServers
	if len(servers) == 0 {
		servers = []string{hostPort(c.MemcacheHost, c.MemcachePort, 11211)}
	}
	return memcached.New(memcached.Options{Servers: servers, TTL: c.CacheTTL, Version: c.CalcVersion, Timeout: c.CacheTimeout})
}

func openMySQL(c config.Config, log *slog.Logger) (cache.Cache, error) {
	return mysql.New(mysql.Options{Host: c.MysqlHost, Port: c.MysqlPort, User: c.MysqlUser, Pass: c.MysqlPass,
		DB: c.MysqlDb, Table: c.MysqlTable, CreateTable: c.MysqlCreateTable, TLS: c.MysqlTLS,
		TTL: c.CacheTTL, Version: c.CalcVersion, Timeout: c.CacheTimeout, Logger: log})
}

func openPostgres(c config.Config, log *slog.Logger) (cache.Cache, error) {
	return postgres.New(postgres.Options{Host: c.PgsqlHost, Port: c.PgsqlPort, User: c.PgsqlUser, Pass: c.PgsqlPass,
		DB: c.PgsqlDb, Table: c.PgsqlTable, SSLMode: c.PgsqlSSLMode, CreateTable: c.PgsqlCreateTable,
		TTL: c.CacheTTL, Version: c.CalcVersion, Timeout: c.CacheTimeout, Logger: log})
}

func openMongo(c config.Config, log *slog.Logger) (cache.Cache, error) {
	port := c.MongoDbPort
	if _, p, err := net.SplitHostPort(c.MongoDbHost); err == nil && p == strconv.Itoa(port) {
		// The same port in MongoDbHost and MongoDbPort: the backend takes one.
		port = 0
	}
	o := mongo.Options{Host: c.MongoDbHost, Port: port, User: c.MongoDbUser, Pass: c.MongoDbPass,
		Database: c.MongoDbDatabase, Collection: c.MongoDbCollection, EnableSSL: c.MongoDbEnableSSL,
		TTL: c.CacheTTL, Version: c.CalcVersion, Timeout: c.CacheTimeout, Logger: log}
	// The contests' files name a CA bundle with SSL off: it is only read with SSL on.
	if c.MongoDbEnableSSL {
		o.CAFilePath = c.MongoDbCAFilePath
	}
	return mongo.New(o)
}

func openDynamo(c config.Config, log *slog.Logger) (cache.Cache, error) {
	return dynamo.New(dynamo.Options{Table: c.DynamoTable, CreateTable: c.DynamoCreateTable, Region: c.AwsRegion,
		TTL: c.CacheTTL, Version: c.CalcVersion, Timeout: c.CacheTimeout, Logger: log})
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
