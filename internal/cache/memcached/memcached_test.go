package memcached

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

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

// rawClient returns a plain gomemcache client for addr, to write and inspect what a
// Cache cannot.
func rawClient(t testing.TB, addr string) *memcache.Client {
	t.Helper()
	c := memcache.New(addr)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestConformance(t *testing.T) {
	p := svctest.Memcached(t)
	raw := rawClient(t, p.Addr)
	cachetest.Conformance(t, cachetest.Backend{
		New: func(t testing.TB, version int) cachetest.Shared {
			return newCache(t, Options{Servers: []string{p.Addr}, Version: version})
		},
		Put: func(t testing.TB, version int, key string, v []byte) {
			if err := raw.Set(&memcache.Item{Key: cache.StorageKey(version, key), Value: v}); err != nil {
				t.Fatal(err)
			}
		},
	})
}

func TestADoneContextFailsWithoutTouchingTheServer(t *testing.T) {
	p := svctest.Memcached(t)
	c := newCache(t, Options{Servers: []string{p.Addr}, Version: 1})
	cachetest.Set(t, c, c.version, "cancelled")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Get(ctx, "cancelled"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get: %v, want context.Canceled", err)
	}
	if err := c.Set(ctx, "cancelled-set", calc.Result{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Set: %v, want context.Canceled", err)
	}
	if err := c.Delete(ctx, "cancelled"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete: %v, want context.Canceled", err)
	}
	if err := c.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping: %v, want context.Canceled", err)
	}
	cachetest.WantHit(t, c, c.version, "cancelled")
	cachetest.WantMiss(t, c, "cancelled-set")
}

func TestExpiration(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		want int32
	}{
		{"no TTL never expires", 0, 0},
		{"a millisecond rounds up to a second", time.Millisecond, 1},
		{"1500ms rounds up to 2s", 1500 * time.Millisecond, 2},
		{"whole seconds stay", 90 * time.Second, 90},
		{"30 days is still relative", 30 * 24 * time.Hour, 2_592_000},
		{"just over 30 days is absolute", 30*24*time.Hour + time.Millisecond, 1_800_000_000 + 2_592_001},
		{"40 days is absolute", 40 * 24 * time.Hour, 1_800_000_000 + 3_456_000},
		{"a time memcached cannot hold never expires", 100 * 365 * 24 * time.Hour, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := expiration(tc.ttl, now); got != tc.want {
				t.Errorf("expiration(%v) = %d, want %d", tc.ttl, got, tc.want)
			}
		})
	}
}

func TestTTL(t *testing.T) {
	p := svctest.Memcached(t)
	c := newCache(t, Options{Servers: []string{p.Addr}, Version: 1, TTL: time.Second})

	// memcached's clock ticks once a second, so an entry with a one-second TTL can
	// expire right after it is written; a few tries make sure it was stored at all.
	stored := false
	for range 3 {
		cachetest.Set(t, c, c.version, "short-lived")
		if _, err := c.Get(context.Background(), "short-lived"); err == nil {
			stored = true
			break
		}
	}
	if !stored {
		t.Fatal("entry with a 1s TTL never read back")
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Get(context.Background(), "short-lived")
		if errors.Is(err, cache.ErrMiss) {
			break
		}
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("entry with a 1s TTL still there after 5s")
		}
		time.Sleep(50 * time.Millisecond) // expiry cannot be waited for otherwise
	}

	t.Run("a 40-day TTL is stored as an absolute time and is a hit", func(t *testing.T) {
		c := newCache(t, Options{Servers: []string{p.Addr}, Version: 1, TTL: 40 * 24 * time.Hour})
		cachetest.Set(t, c, c.version, "long-lived")
		cachetest.WantHit(t, c, c.version, "long-lived")
	})
}

func TestKilledServer(t *testing.T) {
	p := svctest.Memcached(t)
	const timeout = 100 * time.Millisecond
	cachetest.Killed(t, newCache(t, Options{Servers: []string{p.Addr}, Version: 1, Timeout: timeout}), p, timeout)
}

func TestServers(t *testing.T) {
	t.Run("keys go where memcache.ServerList would send them", func(t *testing.T) {
		addrs := []string{"127.0.0.1:11211", "127.0.0.1:11212", "127.0.0.1:11213"}
		var list memcache.ServerList
		if err := list.SetServers(addrs...); err != nil {
			t.Fatal(err)
		}
		ours := servers{server(addrs[0]), server(addrs[1]), server(addrs[2])}
		for i := range 300 {
			key := cache.StorageKey(1, fmt.Sprint(i))
			want, _ := list.PickServer(key)
			got, _ := ours.PickServer(key)
			if got.String() != want.String() || got.Network() != want.Network() {
				t.Fatalf("PickServer(%q) = %s/%s, want %s/%s", key, got.Network(), got, want.Network(), want)
			}
		}
	})

	t.Run("entries spread over two servers and are read back", func(t *testing.T) {
		a, b := svctest.Memcached(t), svctest.Memcached(t)
		c := newCache(t, Options{Servers: []string{a.Addr, b.Addr}, Version: 1})
		const keys = 100
		for i := range keys {
			cachetest.Set(t, c, c.version, fmt.Sprint("spread-", i))
		}
		for i := range keys {
			cachetest.WantHit(t, c, c.version, fmt.Sprint("spread-", i))
		}
		for _, p := range []*svctest.Proc{a, b} {
			raw, held := rawClient(t, p.Addr), 0
			for i := range keys {
				if _, err := raw.Get(cache.StorageKey(1, fmt.Sprint("spread-", i))); err == nil {
					held++
				}
			}
			if held == 0 || held == keys {
				t.Errorf("server %s holds %d of %d entries", p.Addr, held, keys)
			}
		}
		if err := c.Ping(context.Background()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		if err := b.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := c.Ping(context.Background()); err == nil {
			t.Error("Ping succeeded with one of two servers dead")
		}
	})

	t.Run("host names are resolved when dialling, not by New", func(t *testing.T) {
		c, err := New(Options{Servers: []string{"no-such-host.invalid:11211"}, Version: 1})
		if err != nil {
			t.Fatalf("New with a name that does not resolve: %v", err)
		}
		defer c.Close()
		if _, err := c.Get(context.Background(), "k"); err == nil || errors.Is(err, cache.ErrMiss) {
			t.Errorf("Get via a name that does not resolve: %v, want an error other than ErrMiss", err)
		}

		p := svctest.Memcached(t)
		byName := newCache(t, Options{Servers: []string{fmt.Sprintf("localhost:%d", p.Port)}, Version: 1})
		cachetest.Set(t, byName, byName.version, "by-name")
		cachetest.WantHit(t, newCache(t, Options{Servers: []string{p.Addr}, Version: 1}), 1, "by-name")
	})
}

func TestNewRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no server":                        {Version: 1},
		"a negative TTL":                   {Servers: []string{"a:1"}, TTL: -time.Second, Version: 1},
		"a negative timeout":               {Servers: []string{"a:1"}, Timeout: -time.Second, Version: 1},
		"negative MaxIdleConns":            {Servers: []string{"a:1"}, MaxIdleConns: -1, Version: 1},
		"version 0":                        {Servers: []string{"a:1"}},
		"a version beyond calc.MaxVersion": {Servers: []string{"a:1"}, Version: calc.MaxVersion + 1},
		"a server without a port":          {Servers: []string{"a"}, Version: 1},
		"a server without a host":          {Servers: []string{":11211"}, Version: 1},
	} {
		t.Run(name, func(t *testing.T) {
			if c, err := New(o); err == nil {
				_ = c.Close()
				t.Fatalf("New(%+v) succeeded", o)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := newCache(t, Options{Servers: []string{"a:1"}, Version: 1})
	if c.client.Timeout != DefaultTimeout || c.client.MaxIdleConns != DefaultMaxIdleConns {
		t.Errorf("Timeout, MaxIdleConns = %v, %d; want %v, %d",
			c.client.Timeout, c.client.MaxIdleConns, DefaultTimeout, DefaultMaxIdleConns)
	}
}

func BenchmarkGetHit(b *testing.B) {
	p := svctest.Memcached(b)
	ctx := context.Background()
	c := newCache(b, Options{Servers: []string{p.Addr}, Version: 1})
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

// TestPingAfterARestartSucceedsAtOnce: idle connections to a memcached that was
// restarted are all dead; the first Ping after the restart must not be made on one of
// them, or the chain's prober fails once per idle connection, each time waiting out
// its back-off, before it lets the backend back.
func TestPingAfterARestartSucceedsAtOnce(t *testing.T) {
	p := svctest.Memcached(t)
	c := newCache(t, Options{Servers: []string{p.Addr}, Version: 1, MaxIdleConns: 8})
	ctx := context.Background()
	// Eight lookups at once leave up to eight idle connections.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { _, _ = c.Get(ctx, fmt.Sprintf("k%d", i)) })
	}
	wg.Wait()
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("ping %d after the restart: %v", i+1, err)
		}
	}
}
