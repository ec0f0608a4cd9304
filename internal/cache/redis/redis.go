// Package redis is the shared cache tier on Redis, Valkey or ElastiCache: one node, or
// a cluster reached through one configuration endpoint or a list of seed nodes.
//
// Entries are stored under cache.StorageKey with cache.EncodeValue, so every fleet
// that shares the server agrees on names and versions never collide. A read is served
// only if cache.DecodeValue accepts it; anything else is reported as cache.ErrCorrupt
// for the caller to delete.
//
// The client fails fast (no command retries, one dial attempt, short timeouts): the
// caller puts a circuit breaker in front of this tier, and a slow cache is worse than
// none because every request would wait for it before computing.
package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// DefaultTimeout bounds dialling and each read and write when Options.Timeout is zero.
// It is short because a cache answer that takes longer is not worth waiting for.
const DefaultTimeout = 100 * time.Millisecond

// scanCount is the COUNT hint Purge gives SCAN: large enough that a purge of a big
// cache takes few round trips, small enough that each page stays well within Timeout.
const scanCount = 1000

// Options configures a Cache. Only Addrs and Version are required.
type Options struct {
	// Addrs are "host:port" endpoints. Without Cluster there must be exactly one.
	Addrs []string
	// Cluster speaks the Redis Cluster protocol even to a single address, because
	// ElastiCache in cluster mode hands out one configuration endpoint.
	Cluster bool
	// Password is sent with AUTH on every new connection when not empty.
	Password string
	// DB selects the logical database; it must be 0 with Cluster, which has only one.
	DB int
	// TLS encrypts connections (ElastiCache in-transit encryption), verifying the
	// server certificate against the host of the first address.
	TLS bool
	// TTL is how long an entry lives; zero means entries never expire. It is rounded
	// up to whole milliseconds, the unit of SET ... PX.
	TTL time.Duration
	// Version is the CalcVersion entries are stored and checked under.
	Version int
	// Timeout bounds dialling and each read and write; zero means DefaultTimeout.
	Timeout time.Duration
}

// Cache is a shared cache tier on Redis. It is safe for concurrent use.
type Cache struct {
	client  goredis.UniversalClient
	version int
	ttlMs   int64  // TTL in milliseconds for SET ... PX; 0 = no expiry
	name    string // the addresses, for error messages
}

var (
	_ cache.Cache   = (*Cache)(nil)
	_ cache.Deleter = (*Cache)(nil)
	_ cache.Pinger  = (*Cache)(nil)
	_ cache.Purger  = (*Cache)(nil)
)

// New returns a Cache for o. It does no network I/O: connections are made on first
// use, so a server that is down at start-up is handled by the caller's breaker like
// one that goes down later. It returns an error if o is inconsistent.
func New(o Options) (*Cache, error) {
	uo, err := universalOptions(o)
	if err != nil {
		return nil, err
	}
	ttlMs := int64(0)
	if o.TTL > 0 {
		ttlMs = int64(o.TTL / time.Millisecond)
		if o.TTL%time.Millisecond != 0 {
			ttlMs++
		}
	}
	return &Cache{
		client:  goredis.NewUniversalClient(uo),
		version: o.Version,
		ttlMs:   ttlMs,
		name:    strings.Join(o.Addrs, ","),
	}, nil
}

// universalOptions checks o and translates it into go-redis options.
func universalOptions(o Options) (*goredis.UniversalOptions, error) {
	switch {
	case len(o.Addrs) == 0:
		return nil, errors.New("redis: no address")
	case len(o.Addrs) > 1 && !o.Cluster:
		// The universal client would silently switch to cluster mode.
		return nil, fmt.Errorf("redis: %d addresses need cluster mode", len(o.Addrs))
	case o.DB < 0:
		return nil, fmt.Errorf("redis: negative DB %d", o.DB)
	case o.DB != 0 && o.Cluster:
		return nil, fmt.Errorf("redis: DB %d: a cluster has only DB 0", o.DB)
	}
	if err := cache.CheckOptions(o.Version, o.TTL, o.Timeout); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	for _, a := range o.Addrs {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("redis: address %q is not host:port", a)
		}
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	uo := &goredis.UniversalOptions{
		Addrs:         o.Addrs,
		IsClusterMode: o.Cluster,
		Password:      o.Password,
		DB:            o.DB,

		// -1 means no retries (0 would mean go-redis's default of 3): a failed
		// command costs one timeout, and the breaker decides what happens next.
		MaxRetries:    -1,
		DialerRetries: 1,
		DialTimeout:   timeout,
		ReadTimeout:   timeout,
		WriteTimeout:  timeout,
		// Waiting longer for a pooled connection than for the server itself would
		// let a burst stall requests that could have been computed instead.
		PoolTimeout:           timeout,
		ContextTimeoutEnabled: true,

		// Maintenance notifications are a Redis Enterprise feature; probing for them
		// costs a round trip on every new connection to servers that lack them.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if o.TLS {
		uo.TLSConfig = tlsConfig(o.Addrs[0])
	}
	return uo, nil
}

// tlsConfig verifies the server against the host of addr. In cluster mode every node
// gets the same name: ElastiCache certificates are issued for the whole cluster's
// domain, and nodes are announced by address, not by a name that could be verified.
func tlsConfig(addr string) *tls.Config {
	host, _, _ := net.SplitHostPort(addr)
	return &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
}

// Get returns the result stored for key, cache.ErrMiss if there is none, or an error
// wrapping cache.ErrCorrupt if the stored value is not the answer for key.
func (c *Cache) Get(ctx context.Context, key string) (calc.Result, error) {
	sk := cache.StorageKey(c.version, key)
	v, err := c.client.Get(ctx, sk).Bytes()
	if errors.Is(err, goredis.Nil) {
		return calc.Result{}, cache.ErrMiss
	}
	if err != nil {
		return calc.Result{}, fmt.Errorf("redis %s: get %s: %w", c.name, sk, err)
	}
	r, err := cache.DecodeValue(c.version, key, v)
	if err != nil {
		return calc.Result{}, fmt.Errorf("redis %s: get %s: %w", c.name, sk, err)
	}
	return r, nil
}

// Set stores r for key, expiring after the TTL if there is one.
func (c *Cache) Set(ctx context.Context, key string, r calc.Result) error {
	sk := cache.StorageKey(c.version, key)
	v := cache.EncodeValue(c.version, key, r)
	var cmd *goredis.StatusCmd
	if c.ttlMs > 0 {
		cmd = goredis.NewStatusCmd(ctx, "set", sk, v, "px", c.ttlMs)
	} else {
		cmd = goredis.NewStatusCmd(ctx, "set", sk, v)
	}
	if err := c.client.Process(ctx, cmd); err != nil {
		return fmt.Errorf("redis %s: set %s: %w", c.name, sk, err)
	}
	return nil
}

// Delete removes key; removing an absent key is not an error.
func (c *Cache) Delete(ctx context.Context, key string) error {
	sk := cache.StorageKey(c.version, key)
	if err := c.client.Del(ctx, sk).Err(); err != nil {
		return fmt.Errorf("redis %s: del %s: %w", c.name, sk, err)
	}
	return nil
}

// Ping reports whether the server answers. In cluster mode every master must answer,
// since each holds a share of the keys.
func (c *Cache) Ping(ctx context.Context) error {
	var err error
	if cc, ok := c.client.(*goredis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *goredis.Client) error {
			return n.Ping(ctx).Err()
		})
	} else {
		err = c.client.Ping(ctx).Err()
	}
	if err != nil {
		return fmt.Errorf("redis %s: ping: %w", c.name, err)
	}
	return nil
}

// Purge deletes every entry, of any version, whose original key match accepts, and
// returns how many it removed. It scans every master in cluster mode, since SCAN only
// sees one node's keys. Values that do not carry an original key are left alone.
func (c *Cache) Purge(ctx context.Context, match func(key string) bool) (int, error) {
	var n atomic.Int64
	var err error
	if cc, ok := c.client.(*goredis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
			return purgeNode(ctx, node, match, &n)
		})
	} else if node, ok := c.client.(*goredis.Client); ok {
		err = purgeNode(ctx, node, match, &n)
	} else {
		err = fmt.Errorf("unexpected client %T", c.client)
	}
	if err != nil {
		return int(n.Load()), fmt.Errorf("redis %s: purge: %w", c.name, err)
	}
	return int(n.Load()), nil
}

// purgeNode purges the keys of one node, a page of SCAN at a time: the page's values
// are read in one pipeline and the matching keys deleted in another. Keys are deleted
// one per DEL because in a cluster a multi-key DEL must stay within one slot. Only
// DELs that removed something are counted, so a key SCAN returns twice, or one that
// expires meanwhile, is not counted twice or at all.
func purgeNode(ctx context.Context, node *goredis.Client, match func(string) bool, n *atomic.Int64) error {
	var cursor uint64
	for {
		keys, next, err := node.Scan(ctx, cursor, cache.StoragePrefix+"*", scanCount).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			doomed, err := matchingKeys(ctx, node, keys, match)
			if err != nil {
				return err
			}
			if len(doomed) > 0 {
				dels := make([]*goredis.IntCmd, len(doomed))
				_, err := node.Pipelined(ctx, func(p goredis.Pipeliner) error {
					for i, k := range doomed {
						dels[i] = p.Del(ctx, k)
					}
					return nil
				})
				if err != nil {
					return err
				}
				for _, d := range dels {
					n.Add(d.Val())
				}
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// matchingKeys reads the values of keys and returns the keys whose original key match
// accepts. A key that vanished since SCAN listed it is skipped, and so is one the
// server refuses to GET (not a string, or moved to another node by resharding): it
// is not an entry this node can purge.
func matchingKeys(ctx context.Context, node *goredis.Client, keys []string, match func(string) bool) ([]string, error) {
	gets := make([]*goredis.StringCmd, len(keys))
	_, err := node.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, k := range keys {
			gets[i] = p.Get(ctx, k)
		}
		return nil
	})
	var reply goredis.Error
	if err != nil && !errors.As(err, &reply) {
		return nil, err
	}
	var doomed []string
	for i, g := range gets {
		v, err := g.Bytes()
		if errors.As(err, &reply) { // including goredis.Nil
			continue
		}
		if err != nil {
			return nil, err
		}
		if orig, ok := cache.ValueKey(v); ok && match(orig) {
			doomed = append(doomed, keys[i])
		}
	}
	return doomed, nil
}

// Close closes the connections. The Cache must not be used afterwards.
func (c *Cache) Close() error {
	return c.client.Close()
}
