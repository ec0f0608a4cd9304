package svctest

import "testing"

// Redis starts a redis-server for t in a temporary directory and stops it when t ends.
// A test that needs Redis must not pass without it, so a failed start is fatal, never a
// skip.
func Redis(t testing.TB, extraArgs ...string) *Proc {
	t.Helper()
	p, err := StartRedis(t.TempDir(), extraArgs...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	stopOnCleanup(t, p)
	return p
}

// Memcached starts memcached for t and stops it when t ends; a failed start is fatal.
func Memcached(t testing.TB) *Proc {
	t.Helper()
	p, err := StartMemcached(t.TempDir())
	if err != nil {
		t.Fatalf("%v", err)
	}
	stopOnCleanup(t, p)
	return p
}

// MariaDB starts mariadbd on a freshly installed data directory for t and stops it when
// t ends; a failed start is fatal.
func MariaDB(t testing.TB) *Proc {
	t.Helper()
	p, err := StartMariaDB(t.TempDir())
	if err != nil {
		t.Fatalf("%v", err)
	}
	stopOnCleanup(t, p)
	return p
}

// RedisCluster starts a Redis Cluster of masters nodes for t and stops it when t ends; a
// failed start is fatal.
func RedisCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	c, err := StartRedisCluster(t.TempDir(), masters)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return c
}

// stopOnCleanup registers p.Stop after t.TempDir's removal was registered, so cleanups,
// which run last-in first-out, stop the server before its directory disappears.
func stopOnCleanup(t testing.TB, p *Proc) {
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("%v", err)
		}
	})
}
