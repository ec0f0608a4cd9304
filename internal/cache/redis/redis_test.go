package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/cache/cachetest"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// newCache returns a Cache for o that is closed when t ends.
func newCache(t testing.TB, o Options) *Cache {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatalf("New(%+v): %v", o, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rawClient returns a plain go-redis client for addr, to write and inspect what a
// Cache cannot.
func rawClient(t testing.TB, addr string) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConformance(t *testing.T) {
	p := svctest.Redis(t)
	raw := rawClient(t, p.Addr)
	cachetest.Conformance(t, cachetest.Backend{
		New: func(t testing.TB, version int) cachetest.Shared {
			return newCache(t, Options{Addrs: []string{p.Addr}, Version: version})
		},
		Put: func(t testing.TB, version int, key string, v []byte) {
			if err := raw.Set(context.Background(), cache.StorageKey(version, key), v, 0).Err(); err != nil {
				t.Fatal(err)
			}
		},
	})
}

func TestADoneContextFailsWithoutAMiss(t *testing.T) {
	p := svctest.Redis(t)
	cachetest.DoneContext(t, newCache(t, Options{Addrs: []string{p.Addr}, Version: 1}))
}

func TestTTL(t *testing.T) {
	p := svctest.Redis(t)
	ctx := ctxT(t)
	const ttl = 200 * time.Millisecond
	c := newCache(t, Options{Addrs: []string{p.Addr}, Version: 1, TTL: ttl})
	raw := rawClient(t, p.Addr)

	cachetest.Set(t, c, c.version, "short-lived")
	left, err := raw.PTTL(ctx, cache.StorageKey(1, "short-lived")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if left <= 0 || left > ttl {
		t.Fatalf("PTTL = %v, want in (0, %v]", left, ttl)
	}
	cachetest.WantHit(t, c, c.version, "short-lived")

	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Get(ctx, "short-lived")
		if errors.Is(err, cache.ErrMiss) {
			break
		}
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("entry with TTL %v still there after 5s", ttl)
		}
		time.Sleep(20 * time.Millisecond) // expiry cannot be waited for otherwise
	}

	t.Run("no TTL means no expiry", func(t *testing.T) {
		c := newCache(t, Options{Addrs: []string{p.Addr}, Version: 1})
		cachetest.Set(t, c, c.version, "forever")
		if left, err := raw.PTTL(ctx, cache.StorageKey(1, "forever")).Result(); err != nil || left != -1 {
			t.Fatalf("PTTL = %v, %v; want -1 (no expiry)", left, err)
		}
	})

	t.Run("a TTL below a millisecond rounds up", func(t *testing.T) {
		c := newCache(t, Options{Addrs: []string{p.Addr}, Version: 1, TTL: 1500 * time.Microsecond})
		if c.ttlMs != 2 {
			t.Fatalf("ttlMs = %d, want 2", c.ttlMs)
		}
	})
}

func TestKilledServer(t *testing.T) {
	p := svctest.Redis(t)
	const timeout = 100 * time.Millisecond
	cachetest.Killed(t, newCache(t, Options{Addrs: []string{p.Addr}, Version: 1, Timeout: timeout}), p, timeout)
}

// purgeText is what Purge's match looks for in the tests.
const purgeText = "H@XX0RR333DDD"

func TestPurge(t *testing.T) {
	p := svctest.Redis(t)
	ctx := ctxT(t)
	v1 := newCache(t, Options{Addrs: []string{p.Addr}, Version: 1})
	v2 := newCache(t, Options{Addrs: []string{p.Addr}, Version: 2})
	raw := rawClient(t, p.Addr)

	// Enough keys that SCAN needs several pages.
	var doomed, kept []string
	for i := range 2500 {
		if i%10 == 0 {
			doomed = append(doomed, fmt.Sprintf("x=%d&name=%s", i, purgeText))
		} else {
			kept = append(kept, fmt.Sprintf("x=%d&name=ok", i))
		}
	}
	for _, k := range doomed {
		cachetest.Set(t, v1, v1.version, k)
		cachetest.Set(t, v2, v2.version, k)
	}
	for _, k := range kept {
		cachetest.Set(t, v1, v1.version, k)
	}
	// Keys that are not entries, or entries without an original key, are left alone.
	foreign := map[string]string{
		"someone:else:" + purgeText: purgeText,
		"unicorn:v1:not-an-entry":   "no newline " + purgeText,
	}
	for k, v := range foreign {
		if err := raw.Set(ctx, k, v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}

	n, err := v1.Purge(ctx, func(key string) bool { return strings.Contains(key, purgeText) })
	if err != nil {
		t.Fatalf("Purge: %v", err)
	}
	if want := 2 * len(doomed); n != want {
		t.Errorf("Purge removed %d, want %d", n, want)
	}
	for _, k := range doomed {
		cachetest.WantMiss(t, v1, k)
		cachetest.WantMiss(t, v2, k)
	}
	for _, k := range kept {
		cachetest.WantHit(t, v1, v1.version, k)
	}
	for k := range foreign {
		if err := raw.Get(ctx, k).Err(); err != nil {
			t.Errorf("foreign key %q: %v", k, err)
		}
	}

	n, err = v1.Purge(ctx, func(key string) bool { return strings.Contains(key, purgeText) })
	if err != nil || n != 0 {
		t.Errorf("second Purge = %d, %v; want 0, nil", n, err)
	}
}

func TestCluster(t *testing.T) {
	cl := svctest.RedisCluster(t, 3)
	ctx := ctxT(t)
	// One address, as ElastiCache's configuration endpoint gives.
	c := newCache(t, Options{Addrs: cl.Addrs[:1], Cluster: true, Version: 1})
	if _, ok := c.client.(*goredis.ClusterClient); !ok {
		t.Fatalf("client is %T, want a cluster client", c.client)
	}

	key := func(i int) string {
		if i%4 == 0 {
			return fmt.Sprintf("cluster-%d-%s", i, purgeText)
		}
		return fmt.Sprintf("cluster-%d", i)
	}
	const keys = 200
	for i := range keys {
		cachetest.Set(t, c, c.version, key(i))
	}
	for i := range keys {
		cachetest.WantHit(t, c, c.version, key(i))
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	for _, addr := range cl.Addrs {
		n, err := rawClient(t, addr).DBSize(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("master %s holds no keys; the entries were not spread", addr)
		}
	}

	n, err := c.Purge(ctx, func(key string) bool { return strings.Contains(key, purgeText) })
	if err != nil {
		t.Fatalf("Purge: %v", err)
	}
	if want := keys / 4; n != want {
		t.Errorf("Purge removed %d, want %d", n, want)
	}
	for i := range keys {
		if i%4 == 0 {
			cachetest.WantMiss(t, c, key(i))
		} else {
			cachetest.WantHit(t, c, c.version, key(i))
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no address":                         {Version: 1},
		"two addresses without cluster mode": {Addrs: []string{"a:1", "b:1"}, Version: 1},
		"a DB in cluster mode":               {Addrs: []string{"a:1"}, Cluster: true, DB: 1, Version: 1},
		"a negative DB":                      {Addrs: []string{"a:1"}, DB: -1, Version: 1},
		"a negative TTL":                     {Addrs: []string{"a:1"}, TTL: -time.Second, Version: 1},
		"a negative timeout":                 {Addrs: []string{"a:1"}, Timeout: -time.Second, Version: 1},
		"version 0":                          {Addrs: []string{"a:1"}},
		"a version beyond calc.MaxVersion":   {Addrs: []string{"a:1"}, Version: calc.MaxVersion + 1},
		"an address without a port":          {Addrs: []string{"a"}, Version: 1},
		"an address without a host":          {Addrs: []string{":6379"}, Version: 1},
	} {
		t.Run(name, func(t *testing.T) {
			if c, err := New(o); err == nil {
				_ = c.Close()
				t.Fatalf("New(%+v) succeeded", o)
			}
		})
	}
}

func TestTLSConfig(t *testing.T) {
	const host = "unicorn.abc123.ng.0001.use1.cache.amazonaws.com"
	check := func(t *testing.T, got *tls.Config) {
		t.Helper()
		if got == nil {
			t.Fatal("no TLS config")
		}
		if got.ServerName != host {
			t.Errorf("ServerName = %q, want %q", got.ServerName, host)
		}
		if got.MinVersion != tls.VersionTLS12 {
			t.Errorf("MinVersion = %x, want TLS 1.2", got.MinVersion)
		}
		if got.InsecureSkipVerify {
			t.Error("certificate verification is off")
		}
	}

	t.Run("single node", func(t *testing.T) {
		c := newCache(t, Options{Addrs: []string{host + ":6379"}, TLS: true, Version: 1})
		check(t, c.client.(*goredis.Client).Options().TLSConfig)
	})
	t.Run("cluster configuration endpoint", func(t *testing.T) {
		c := newCache(t, Options{Addrs: []string{host + ":6379"}, Cluster: true, TLS: true, Version: 1})
		check(t, c.client.(*goredis.ClusterClient).Options().TLSConfig)
	})
	t.Run("without TLS there is no TLS config", func(t *testing.T) {
		c := newCache(t, Options{Addrs: []string{host + ":6379"}, Version: 1})
		if got := c.client.(*goredis.Client).Options().TLSConfig; got != nil {
			t.Errorf("TLSConfig = %+v, want nil", got)
		}
	})
}

func BenchmarkGetHit(b *testing.B) {
	p := svctest.Redis(b)
	ctx := context.Background()
	c := newCache(b, Options{Addrs: []string{p.Addr}, Version: 1})
	const key = "bench-key-with-a-typical-length-of-some-forty-bytes"
	if err := c.Set(ctx, key, calc.Sum(1, []byte(key))); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}
