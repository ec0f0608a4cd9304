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

// wantHit checks that c answers key with the right result for its version.
func wantHit(t *testing.T, ctx context.Context, c *Cache, key string) {
	t.Helper()
	got, err := c.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get(%q): %v, want hit", key, err)
	}
	if want := calc.Sum(c.version, []byte(key)); got != want {
		t.Fatalf("Get(%q) = %x, want %x", key, got, want)
	}
}

// wantMiss checks that c has nothing for key.
func wantMiss(t *testing.T, ctx context.Context, c *Cache, key string) {
	t.Helper()
	if r, err := c.Get(ctx, key); !errors.Is(err, cache.ErrMiss) {
		t.Fatalf("Get(%q) = %x, %v; want ErrMiss", key, r, err)
	}
}

// set stores the right answer for key.
func set(t *testing.T, ctx context.Context, c *Cache, key string) {
	t.Helper()
	if err := c.Set(ctx, key, calc.Sum(c.version, []byte(key))); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func TestCache(t *testing.T) {
	p := svctest.Redis(t)
	ctx := ctxT(t)

	t.Run("a stored key is a hit", func(t *testing.T) {
		c := newCache(t, Options{Addrs: []string{p.Addr}, Version: 1})
		set(t, ctx, c, "store-then-hit")
		wantHit(t, ctx, c, "store-then-hit")
	})

	t.Run("another host hits what the first wrote", func(t *testing.T) {
		a := newCache(t, Options{Addrs: []string{p.Addr}, Version: 1})
		b := newCache(t, Options{Addrs: []string{p.Addr}, Version: 1})
		set(t, ctx, a, "shared")
		wantHit(t, ctx, b, "shared")
	})

	t.Run("an unknown key is a miss", func(t *testing.T) {
		c := newCache(t, Options{Addrs: []string{p.Addr}, Version: 1})
		wantMiss(t, ctx, c, "never-stored")
	})

	t.Run("versions do not collide", func(t *testing.T) {
		v1 := newCache(t, Options{Addrs: []string{p.Addr}, Version: 1})
		v2 := newCache(t, Options{Addrs: []string{p.Addr}, Version: 2})
		set(t, ctx, v1, "versioned")
		wantMiss(t, ctx, v2, "versioned")
		set(t, ctx, v2, "versioned")
		wantHit(t, ctx, v1, "versioned")
		wantHit(t, ctx, v2, "versioned")
	})

	t.Run("a deleted key is a miss and deleting it again is fine", func(t *testing.T) {
		c := newCache(t, Options{Addrs: []string{p.Addr}, Version: 1})
		set(t, ctx, c, "doomed")
		if err := c.Delete(ctx, "doomed"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		wantMiss(t, ctx, c, "doomed")
		if err := c.Delete(ctx, "doomed"); err != nil {
			t.Fatalf("Delete of an absent key: %v", err)
		}
	})

	t.Run("Ping answers", func(t *testing.T) {
		c := newCache(t, Options{Addrs: []string{p.Addr}, Version: 1})
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})

	t.Run("a done context fails without a miss", func(t *testing.T) {
		c := newCache(t, Options{Addrs: []string{p.Addr}, Version: 1})
		set(t, ctx, c, "cancelled")
		done, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := c.Get(done, "cancelled"); err == nil || errors.Is(err, cache.ErrMiss) {
			t.Fatalf("Get with a cancelled context: %v, want an error other than ErrMiss", err)
		}
	})
}

func TestCorruptValues(t *testing.T) {
	p := svctest.Redis(t)
	ctx := ctxT(t)
	c := newCache(t, Options{Addrs: []string{p.Addr}, Version: 3})
	raw := rawClient(t, p.Addr)

	good := cache.EncodeValue(3, "other", calc.Sum(3, []byte("other")))
	right := cache.EncodeValue(3, "tampered", calc.Sum(3, []byte("tampered")))
	flipped := append([]byte(nil), right...)
	flipped[10] ^= 1
	for name, v := range map[string][]byte{
		"garbage":                       []byte("not a unicorn"),
		"empty":                         {},
		"another key's valid entry":     good,
		"one byte flipped":              flipped,
		"the answer of another version": cache.EncodeValue(4, "tampered", calc.Sum(4, []byte("tampered"))),
	} {
		t.Run(name, func(t *testing.T) {
			if err := raw.Set(ctx, cache.StorageKey(3, "tampered"), v, 0).Err(); err != nil {
				t.Fatal(err)
			}
			if r, err := c.Get(ctx, "tampered"); !errors.Is(err, cache.ErrCorrupt) {
				t.Fatalf("Get = %x, %v; want ErrCorrupt", r, err)
			}
		})
	}

	t.Run("the untampered value is a hit", func(t *testing.T) {
		if err := raw.Set(ctx, cache.StorageKey(3, "tampered"), right, 0).Err(); err != nil {
			t.Fatal(err)
		}
		wantHit(t, ctx, c, "tampered")
	})
}

func TestTTL(t *testing.T) {
	p := svctest.Redis(t)
	ctx := ctxT(t)
	const ttl = 200 * time.Millisecond
	c := newCache(t, Options{Addrs: []string{p.Addr}, Version: 1, TTL: ttl})
	raw := rawClient(t, p.Addr)

	set(t, ctx, c, "short-lived")
	left, err := raw.PTTL(ctx, cache.StorageKey(1, "short-lived")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if left <= 0 || left > ttl {
		t.Fatalf("PTTL = %v, want in (0, %v]", left, ttl)
	}
	wantHit(t, ctx, c, "short-lived")

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
		set(t, ctx, c, "forever")
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
	ctx := ctxT(t)
	const timeout = 100 * time.Millisecond
	c := newCache(t, Options{Addrs: []string{p.Addr}, Version: 1, Timeout: timeout})
	set(t, ctx, c, "before")

	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"Get", func() error { _, err := c.Get(ctx, "before"); return err }},
		{"Set", func() error { return c.Set(ctx, "during", calc.Sum(1, []byte("during"))) }},
		{"Ping", func() error { return c.Ping(ctx) }},
	} {
		start := time.Now()
		err := op.do()
		if took := time.Since(start); took > timeout+400*time.Millisecond {
			t.Errorf("%s on a dead server took %v", op.name, took)
		}
		if err == nil || errors.Is(err, cache.ErrMiss) {
			t.Errorf("%s on a dead server: %v, want an error other than ErrMiss", op.name, err)
		}
	}

	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	// go-redis stops dialling after repeated failures and probes the server once a
	// second in the background, so the first commands may still fail.
	deadline := time.Now().Add(5 * time.Second)
	for c.Set(ctx, "after", calc.Sum(1, []byte("after"))) != nil {
		if time.Now().After(deadline) {
			t.Fatal("Set still failing 5s after the restart")
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantHit(t, ctx, c, "after")
	wantMiss(t, ctx, c, "before") // the restarted server keeps nothing
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
		set(t, ctx, v1, k)
		set(t, ctx, v2, k)
	}
	for _, k := range kept {
		set(t, ctx, v1, k)
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
		wantMiss(t, ctx, v1, k)
		wantMiss(t, ctx, v2, k)
	}
	for _, k := range kept {
		wantHit(t, ctx, v1, k)
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
		set(t, ctx, c, key(i))
	}
	for i := range keys {
		wantHit(t, ctx, c, key(i))
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
			wantMiss(t, ctx, c, key(i))
		} else {
			wantHit(t, ctx, c, key(i))
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
