package main

import (
	"slices"
	"testing"

	"github.com/unicorn-rentals/unicorn/internal/config"
)

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
			if got := chainOrder(cfg); !slices.Equal(got, c.want) {
				t.Fatalf("chainOrder = %v, want %v", got, c.want)
			}
		})
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
