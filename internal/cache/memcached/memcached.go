// Package memcached is the shared cache tier on memcached (or ElastiCache for
// Memcached): one server, or several with keys spread across them by hash.
//
// Entries are stored under cache.StorageKey with cache.EncodeValue, so every fleet
// that shares the servers agrees on names and versions never collide. A read is served
// only if cache.DecodeValue accepts it; anything else is reported as cache.ErrCorrupt
// for the caller to delete.
//
// Cache does not implement cache.Purger: memcached cannot enumerate its keys, so an
// entry can only be removed by a client that knows its key (or when it expires). Keep
// a TTL on memcached entries for that reason.
package memcached

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"net"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// DefaultTimeout bounds dialling and each read and write when Options.Timeout is zero.
// It is short because a cache answer that takes longer is not worth waiting for.
const DefaultTimeout = 100 * time.Millisecond

// DefaultMaxIdleConns is the number of idle connections kept per server when
// Options.MaxIdleConns is zero. gomemcache's own default of 2 would make a busy server
// dial for most requests.
const DefaultMaxIdleConns = 64

// maxRelative is the longest expiration memcached takes as relative seconds; a larger
// number is read as an absolute Unix time.
const maxRelative = 30 * 24 * 60 * 60

// Options configures a Cache. Only Servers and Version are required.
type Options struct {
	// Servers are "host:port" addresses. Host names are resolved on every dial, so a
	// replaced node that keeps its name but changes address is found again.
	Servers []string
	// TTL is how long an entry lives; zero means entries never expire. It is rounded
	// up to whole seconds, memcached's unit.
	TTL time.Duration
	// Version is the CalcVersion entries are stored and checked under.
	Version int
	// Timeout bounds dialling and each read and write; zero means DefaultTimeout.
	Timeout time.Duration
	// MaxIdleConns is how many idle connections are kept per server; zero means
	// DefaultMaxIdleConns.
	MaxIdleConns int
}

// Cache is a shared cache tier on memcached. It is safe for concurrent use.
type Cache struct {
	client  *memcache.Client
	version int
	ttl     time.Duration
	name    string // the servers, for error messages
}

var (
	_ cache.Cache   = (*Cache)(nil)
	_ cache.Deleter = (*Cache)(nil)
	_ cache.Pinger  = (*Cache)(nil)
)

// New returns a Cache for o. It does no network I/O, not even name resolution:
// connections are made on first use, so a server that is down at start-up is handled
// by the caller's breaker like one that goes down later. It returns an error if o is
// inconsistent.
func New(o Options) (*Cache, error) {
	switch {
	case len(o.Servers) == 0:
		return nil, errors.New("memcached: no server")
	case o.MaxIdleConns < 0:
		return nil, fmt.Errorf("memcached: negative MaxIdleConns %d", o.MaxIdleConns)
	}
	if err := cache.CheckOptions(o.Version, o.TTL, o.Timeout); err != nil {
		return nil, fmt.Errorf("memcached: %w", err)
	}
	sel := make(servers, len(o.Servers))
	for i, s := range o.Servers {
		if host, port, err := net.SplitHostPort(s); err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("memcached: server %q is not host:port", s)
		}
		sel[i] = server(s)
	}
	client := memcache.NewFromSelector(sel)
	client.Timeout = o.Timeout
	if client.Timeout == 0 {
		client.Timeout = DefaultTimeout
	}
	client.MaxIdleConns = o.MaxIdleConns
	if client.MaxIdleConns == 0 {
		client.MaxIdleConns = DefaultMaxIdleConns
	}
	return &Cache{
		client:  client,
		version: o.Version,
		ttl:     o.TTL,
		name:    strings.Join(o.Servers, ","),
	}, nil
}

// expiration is the memcached expiration for an entry written at now that lives ttl:
// 0 for none, whole seconds (rounded up, so an entry never lives shorter than asked)
// up to 30 days, and beyond that the absolute Unix time, which is how memcached reads
// larger numbers (the servers' clocks must then agree with ours). A time past what
// memcached can represent means never expiring.
func expiration(ttl time.Duration, now time.Time) int32 {
	if ttl <= 0 {
		return 0
	}
	secs := int64(ttl / time.Second)
	if ttl%time.Second != 0 {
		secs++
	}
	if secs <= maxRelative {
		return int32(secs)
	}
	at := now.Unix() + secs
	if at > math.MaxInt32 {
		return 0
	}
	return int32(at)
}

// Get returns the result stored for key, cache.ErrMiss if there is none, or an error
// wrapping cache.ErrCorrupt if the stored value is not the answer for key. The
// client's Timeout bounds it, since gomemcache cannot watch ctx.
func (c *Cache) Get(ctx context.Context, key string) (calc.Result, error) {
	if err := ctx.Err(); err != nil {
		return calc.Result{}, err
	}
	sk := cache.StorageKey(c.version, key)
	it, err := c.client.Get(sk)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return calc.Result{}, cache.ErrMiss
	}
	if err != nil {
		return calc.Result{}, fmt.Errorf("memcached %s: get %s: %w", c.name, sk, err)
	}
	r, err := cache.DecodeValue(c.version, key, it.Value)
	if err != nil {
		return calc.Result{}, fmt.Errorf("memcached %s: get %s: %w", c.name, sk, err)
	}
	return r, nil
}

// Set stores r for key, expiring after the TTL if there is one.
func (c *Cache) Set(ctx context.Context, key string, r calc.Result) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sk := cache.StorageKey(c.version, key)
	err := c.client.Set(&memcache.Item{
		Key:        sk,
		Value:      cache.EncodeValue(c.version, key, r),
		Expiration: expiration(c.ttl, time.Now()),
	})
	if err != nil {
		return fmt.Errorf("memcached %s: set %s: %w", c.name, sk, err)
	}
	return nil
}

// Delete removes key; removing an absent key is not an error.
func (c *Cache) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sk := cache.StorageKey(c.version, key)
	if err := c.client.Delete(sk); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return fmt.Errorf("memcached %s: delete %s: %w", c.name, sk, err)
	}
	return nil
}

// Ping reports whether every server answers, since each holds a share of the keys.
// The chain pings only a backend it found down, so Ping first drops the idle
// connections: gomemcache hands them out unchecked, and after a memcached restart each
// is dead, so a ping on one would fail (EOF) though the server answers again.
func (c *Cache) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_ = c.client.Close() // closes idle connections only; the client stays usable
	if err := c.client.Ping(); err != nil {
		return fmt.Errorf("memcached %s: ping: %w", c.name, err)
	}
	return nil
}

// Close closes the idle connections.
func (c *Cache) Close() error {
	return c.client.Close()
}

// servers picks a server for a key exactly as memcache.ServerList does (CRC-32 of
// the key modulo the number of servers), so clients of either kind configured with
// the same list agree, but it keeps the names unresolved: memcache.ServerList
// resolves them once, at start-up, and would keep dialling a replaced node's old
// address for ever.
type servers []server

// server is a "host:port" address that the dialer resolves each time it connects.
type server string

func (s server) Network() string { return "tcp" }
func (s server) String() string  { return string(s) }

// PickServer returns the server that holds key.
func (ss servers) PickServer(key string) (net.Addr, error) {
	if len(ss) == 1 {
		return ss[0], nil
	}
	return ss[crc32.ChecksumIEEE([]byte(key))%uint32(len(ss))], nil
}

// Each calls f on every server, stopping at the first error.
func (ss servers) Each(f func(net.Addr) error) error {
	for _, s := range ss {
		if err := f(s); err != nil {
			return err
		}
	}
	return nil
}
