package svctest

import "testing"

// Redis starts a redis-server for t in a temporary directory and stops it when t ends.
// A test that needs Redis must not pass without it, so a failed start is fatal, never a
// skip.
func Redis(t testing.TB, extraArgs ...string) *Proc {
	t.Helper()
	return startFor(t, func(dir string) (*Proc, error) { return StartRedis(dir, extraArgs...) })
}

// Memcached starts memcached for t and stops it when t ends; a failed start is fatal.
func Memcached(t testing.TB) *Proc {
	t.Helper()
	return startFor(t, StartMemcached)
}

// MariaDB starts mariadbd on a freshly installed data directory for t and stops it when
// t ends; a failed start is fatal.
func MariaDB(t testing.TB) *Proc {
	t.Helper()
	return startFor(t, StartMariaDB)
}

// Postgres starts PostgreSQL on a fresh cluster for t and stops it when t ends; a
// failed start is fatal.
func Postgres(t testing.TB) *Proc {
	t.Helper()
	return startFor(t, StartPostgres)
}

// Dynalite starts dynalite (installed by bash scripts/deps.sh) for t and stops it when
// t ends; a failed start is fatal.
func Dynalite(t testing.TB) *Dynamo {
	t.Helper()
	var d *Dynamo
	startFor(t, func(dir string) (*Proc, error) {
		var err error
		d, err = StartDynalite(dir)
		if err != nil {
			return nil, err
		}
		return d.Proc, nil
	})
	return d
}

// startFor runs startIn on a temporary directory of t, fails t if it cannot, and stops
// the process when t ends. The stop is registered after t.TempDir's removal, so
// cleanups, which run last-in first-out, stop the server before its directory goes.
func startFor(t testing.TB, startIn func(dir string) (*Proc, error)) *Proc {
	t.Helper()
	p, err := startIn(t.TempDir())
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("%v", err)
		}
	})
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
