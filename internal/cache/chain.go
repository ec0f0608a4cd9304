package cache

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/logging"
)

// Tier is one named cache in a Chain. A Local tier lives in this process (the
// memory tier): it cannot fail, so it gets no deadline, no circuit breaker and
// synchronous writes. Every other tier is a shared backend that can be slow or down.
type Tier struct {
	Name  string
	Cache Cache
	Local bool
}

// Options tune a Chain. The zero value works.
type Options struct {
	// Timeout is the deadline of each operation on a shared tier (CacheTimeout).
	// If zero, 100ms is used.
	Timeout time.Duration
	// BackoffMin and BackoffMax bound the circuit breaker's back-off: a failing
	// backend is bypassed for BackoffMin, then probed; each failed probe doubles the
	// wait up to BackoffMax. If zero, 250ms and 2s are used.
	BackoffMin, BackoffMax time.Duration
	// Failures is how many consecutive failures open the breaker. If zero, 3.
	Failures int
	// ProbeTimeout bounds each probe of a bypassed backend. Probes run in the
	// background, so it can be longer than Timeout: a first connection (TLS, a
	// MySQL handshake and table check) costs more than a lookup. If zero,
	// max(Timeout, 2s).
	ProbeTimeout time.Duration
	// Writers is the number of write workers per shared tier, and QueueLen the number
	// of writes each may hold before new ones are dropped (and counted). Writes to a
	// shared tier leave the request path but never grow without bound. If zero, 4
	// and 256.
	Writers, QueueLen int
	// Logger receives backend state changes and corrupt values. If nil, nothing is
	// logged.
	Logger *slog.Logger
	// Registerer receives the per-backend metrics. If nil, they are not exported.
	Registerer prometheus.Registerer
}

// Chain looks a key up tier by tier, fastest first, fills the tiers above a hit,
// writes to every tier, and keeps any shared backend from failing a request.
type Chain struct {
	o     Options
	tiers []*tier
	log   *slog.Logger
	seed  maphash.Seed

	closeMu sync.RWMutex // held for reading while enqueueing, for writing by Close
	closed  bool
	stop    chan struct{}  // closed by Close: stops probers
	writers sync.WaitGroup // write workers and probers

	// after is time.After. A prober waits out its back-off with it; tests replace
	// it (before the first prober starts) to see a prober start, without waiting.
	after func(time.Duration) <-chan time.Time
}

// op is a queued write or delete on a shared tier.
type op struct {
	key    string
	r      calc.Result
	delete bool
}

// tier is a Tier with its breaker, write queues and metrics.
type tier struct {
	Tier
	queues []chan op
	reads  singleflight.Group // lookups in flight, by key

	failures atomic.Int32 // consecutive failures while the breaker is closed
	// writeFailures counts the writes that failed since the last one that worked:
	// a backend that still answers lookups but takes no writes (a read-only file
	// system, a full disk, a replica) keeps its breaker closed, as lookups reset
	// failures, and Health reports it from this count. lastWriteErr is guarded by mu.
	writeFailures atomic.Int32
	lastWriteErr  error
	// up is false while the breaker is open and the tier bypassed. It is read
	// without a lock on every operation and changed only with mu held.
	up atomic.Bool

	mu       sync.Mutex // guards the fields below, and changes of up
	backoff  time.Duration
	closedAt time.Time // when a probe last closed the breaker
	lastErr  error

	m tierMetrics
}

// NewChain returns a chain over tiers in lookup order and starts the write workers
// of its shared tiers. Close stops them.
func NewChain(o Options, tiers ...Tier) *Chain {
	if o.Timeout <= 0 {
		o.Timeout = 100 * time.Millisecond
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 250 * time.Millisecond
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(2*time.Second, o.BackoffMin)
	}
	if o.Failures <= 0 {
		o.Failures = 3
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = max(o.Timeout, 2*time.Second)
	}
	if o.Writers <= 0 {
		o.Writers = 4
	}
	if o.QueueLen <= 0 {
		o.QueueLen = 256
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Chain{o: o, log: log, seed: maphash.MakeSeed(), stop: make(chan struct{}), after: time.After}
	m := newChainMetrics(o.Registerer)
	for _, t := range tiers {
		ct := &tier{Tier: t, backoff: o.BackoffMin}
		ct.up.Store(true)
		ct.m = m.forTier(t.Name, t.Local, &ct.up)
		if !t.Local {
			for range o.Writers {
				q := make(chan op, o.QueueLen)
				ct.queues = append(ct.queues, q)
				c.writers.Go(func() { c.writeLoop(ct, q) })
			}
		}
		c.tiers = append(c.tiers, ct)
	}
	return c
}

// Get returns the result for key and the name of the tier that held it, or ErrMiss.
// A hit in a lower tier is copied into the tiers above it. A shared tier that fails,
// is bypassed, or holds a corrupt value counts as a miss in that tier; a corrupt value
// is deleted. When every shared tier failed or missed, the local tiers are looked at
// once more; a local tier looked at twice still counts one hit or one miss.
func (c *Chain) Get(ctx context.Context, key string) (calc.Result, string, error) {
	shared := false
	for i, t := range c.tiers {
		r, err := c.get(ctx, t, key)
		if err != nil {
			shared = shared || !t.Local
			continue
		}
		countLocalMisses(c.tiers[:i], nil)
		for _, up := range c.tiers[:i] {
			c.set(up, key, r)
		}
		return r, t.Name, nil
	}
	if shared {
		// A job may have stored the answer in a local tier while the shared
		// tiers were asked: a second look there saves the caller a job.
		for _, t := range c.tiers {
			if !t.Local {
				continue
			}
			if r, err := t.Cache.Get(ctx, key); err == nil {
				t.m.hit.Inc()
				countLocalMisses(c.tiers, t)
				return r, t.Name, nil
			}
		}
	}
	countLocalMisses(c.tiers, nil)
	return calc.Result{}, "", ErrMiss
}

// countLocalMisses counts a miss for every local tier of tiers but hit. Get counts a
// local tier's miss only once the lookup ends, because its second look may still
// find the answer there: the lookup is then one hit for that tier, not a miss and a
// hit.
func countLocalMisses(tiers []*tier, hit *tier) {
	for _, t := range tiers {
		if t.Local && t != hit {
			t.m.miss.Inc()
		}
	}
}

// get looks key up in t. A hit is counted here; a miss of a local tier is counted
// by Get (see countLocalMisses), one of a shared tier here.
func (c *Chain) get(ctx context.Context, t *tier, key string) (calc.Result, error) {
	if t.Local {
		r, err := t.Cache.Get(ctx, key)
		if err == nil {
			t.m.hit.Inc()
		}
		return r, err
	}
	if t.bypassed() {
		t.m.bypass.Inc()
		return calc.Result{}, ErrMiss
	}
	// Concurrent lookups of one key share one round trip: a hot key under load
	// costs the backend one read at a time, not one per request. The read runs
	// detached from the first caller's cancellation (it is bounded by Timeout), so
	// a client that goes away fails no one else's lookup.
	leader := false
	v, err, _ := t.reads.Do(key, func() (any, error) {
		leader = true // Do runs the read on the first caller's goroutine
		r, err := c.fetch(context.WithoutCancel(ctx), t, key)
		return r, err
	})
	if !leader {
		t.m.joined.Inc()
	}
	r, _ := v.(calc.Result)
	return r, err
}

// fetch is one read of key from the shared tier t, with its deadline, metrics and
// breaker bookkeeping.
func (c *Chain) fetch(ctx context.Context, t *tier, key string) (calc.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	start := time.Now()
	r, err := t.Cache.Get(ctx, key)
	cancel()
	t.m.getTime.Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		t.m.hit.Inc()
		c.succeeded(t)
	case errors.Is(err, ErrMiss):
		t.m.miss.Inc()
		c.succeeded(t)
	case errors.Is(err, ErrCorrupt):
		t.m.corrupt.Inc()
		c.succeeded(t)
		c.log.Warn("cache: corrupt value deleted", "backend", t.Name, "key", logging.EscapeKey(key), "err", err)
		c.enqueue(t, op{key: key, delete: true})
	default:
		t.m.errors.Inc()
		c.failed(t, err)
	}
	return r, err
}

// Set stores r for key in every tier: at once in local tiers, through the bounded
// write queues in shared ones.
func (c *Chain) Set(key string, r calc.Result) {
	for _, t := range c.tiers {
		c.set(t, key, r)
	}
}

func (c *Chain) set(t *tier, key string, r calc.Result) {
	if t.Local {
		_ = t.Cache.Set(context.Background(), key, r)
		return
	}
	c.enqueue(t, op{key: key, r: r})
}

// enqueue hands o to the write worker that owns key, so that operations on one key
// keep their order (a corrupt value's delete never overtakes its replacement).
func (c *Chain) enqueue(t *tier, o op) {
	if t.bypassed() {
		t.m.bypass.Inc()
		return
	}
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if c.closed {
		t.m.dropped.Inc()
		return
	}
	q := t.queues[maphash.String(c.seed, o.key)%uint64(len(t.queues))]
	select {
	case q <- o:
	default:
		t.m.dropped.Inc()
	}
}

func (c *Chain) writeLoop(t *tier, q chan op) {
	for o := range q {
		if t.bypassed() {
			t.m.bypass.Inc()
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
		start := time.Now()
		var err error
		if o.delete {
			if d, ok := t.Cache.(Deleter); ok {
				err = d.Delete(ctx, o.key)
			}
		} else {
			err = t.Cache.Set(ctx, o.key, o.r)
		}
		cancel()
		t.m.setTime.Observe(time.Since(start).Seconds())
		if err != nil {
			t.m.errors.Inc()
			t.mu.Lock()
			t.lastWriteErr = err
			t.mu.Unlock()
			t.writeFailures.Add(1)
			c.failed(t, err)
			continue
		}
		if t.writeFailures.Load() != 0 {
			t.writeFailures.Store(0)
		}
		c.succeeded(t)
	}
}

func (t *tier) bypassed() bool { return !t.up.Load() }

// succeeded resets the failure count without a lock: it runs on every hit.
func (c *Chain) succeeded(t *tier) {
	if t.failures.Load() != 0 {
		t.failures.Store(0)
	}
}

// failed counts a failure; the one that reaches Options.Failures opens the breaker
// and starts the prober.
func (c *Chain) failed(t *tier, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastErr = err
	if !t.up.Load() {
		return
	}
	if int(t.failures.Add(1)) < c.o.Failures {
		return
	}
	c.open(t, err, "cache backend down: bypassed until it answers again")
}

// open marks t down, logs why, and starts its prober; t.mu is held. A backend that
// fails again soon after a probe let it back (it answers pings but not lookups)
// keeps its doubled back-off instead of starting over, so it cannot flap every
// BackoffMin.
func (c *Chain) open(t *tier, err error, why string) {
	t.up.Store(false)
	if t.closedAt.IsZero() || time.Since(t.closedAt) > c.o.BackoffMax {
		t.backoff = c.o.BackoffMin
	} else {
		t.backoff = min(2*t.backoff, c.o.BackoffMax)
	}
	c.log.Warn(why, "backend", t.Name, "err", err)
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if !c.closed { // a closed chain probes no more; the tier stays down
		c.writers.Go(func() { c.probe(t) })
	}
}

// probe waits out the back-off, then asks the backend whether it answers, doubling
// the back-off after each failure, until it does or the chain is closed.
func (c *Chain) probe(t *tier) {
	for {
		t.mu.Lock()
		wait := t.backoff
		t.mu.Unlock()
		select {
		case <-c.stop:
			return
		case <-c.after(wait):
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.o.ProbeTimeout)
		err := c.ping(ctx, t)
		cancel()
		t.mu.Lock()
		if err == nil {
			t.lastErr = nil
			t.failures.Store(0)
			t.closedAt = time.Now()
			t.up.Store(true)
			t.mu.Unlock()
			c.log.Info("cache backend up again", "backend", t.Name)
			return
		}
		t.lastErr = err
		t.backoff = min(2*t.backoff, c.o.BackoffMax)
		t.mu.Unlock()
	}
}

// ping asks t whether it answers: with Ping when it has one, else with a lookup
// whose miss is as good as a hit.
func (c *Chain) ping(ctx context.Context, t *tier) error {
	if p, ok := t.Cache.(Pinger); ok {
		return p.Ping(ctx)
	}
	_, err := t.Cache.Get(ctx, "unicorn-probe")
	if errors.Is(err, ErrMiss) || errors.Is(err, ErrCorrupt) {
		return nil
	}
	return err
}

// Check pings every shared tier once, as at startup, and marks those that do not
// answer down (they are probed again in the background). It returns the error of
// each tier that failed, by name.
func (c *Chain) Check(ctx context.Context) map[string]error {
	errs := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, t := range c.tiers {
		if t.Local {
			continue
		}
		wg.Go(func() {
			err := c.pingCtx(ctx, t)
			if err == nil {
				return
			}
			mu.Lock()
			errs[t.Name] = err
			mu.Unlock()
			t.mu.Lock()
			t.lastErr = err
			if t.up.Load() {
				c.open(t, err, "cache backend unreachable at startup: serving without it, probing it")
			}
			t.mu.Unlock()
		})
	}
	wg.Wait()
	return errs
}

// pingCtx is ping that returns when ctx ends even if the backend ignores it.
func (c *Chain) pingCtx(ctx context.Context, t *tier) error {
	done := make(chan error, 1)
	go func() { done <- c.ping(ctx, t) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the probers and lets the write workers finish what is queued, until
// ctx ends. Writes after Close are dropped (and counted); lookups still work.
func (c *Chain) Close(ctx context.Context) error {
	c.closeMu.Lock()
	if !c.closed {
		c.closed = true
		close(c.stop)
		for _, t := range c.tiers {
			for _, q := range t.queues {
				close(q)
			}
		}
	}
	c.closeMu.Unlock()
	done := make(chan struct{})
	go func() {
		c.writers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Pending returns the number of writes queued for shared tiers.
func (c *Chain) Pending() int {
	n := 0
	for _, t := range c.tiers {
		for _, q := range t.queues {
			n += len(q)
		}
	}
	return n
}

// Health is the state of one tier, as /healthcheck shows it.
type Health struct {
	Name    string `json:"name"`
	Healthy bool   `json:"healthy"`
	Error   string `json:"error,omitempty"`
}

// Health reports every tier's state, in lookup order. A tier is unhealthy while its
// breaker is open, and also while its writes fail (Options.Failures of them in a row,
// with no write that worked since) although it still answers lookups: it then caches
// no new answer, and its error says so.
func (c *Chain) Health() []Health {
	h := make([]Health, len(c.tiers))
	for i, t := range c.tiers {
		h[i] = Health{Name: t.Name, Healthy: t.up.Load()}
		t.mu.Lock()
		switch {
		case !h[i].Healthy:
			if t.lastErr != nil {
				h[i].Error = t.lastErr.Error()
			}
		case int(t.writeFailures.Load()) >= c.o.Failures && t.lastWriteErr != nil:
			h[i].Healthy = false
			h[i].Error = "writes failing (lookups still answered): " + t.lastWriteErr.Error()
		}
		t.mu.Unlock()
	}
	return h
}

// Names returns the tier names in lookup order.
func (c *Chain) Names() []string {
	n := make([]string, len(c.tiers))
	for i, t := range c.tiers {
		n[i] = t.Name
	}
	return n
}
