package cache

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// fake is a shared backend whose failures the test controls.
type fake struct {
	mu       sync.Mutex
	data     map[string][]byte
	down     bool
	delay    time.Duration
	gate     chan struct{} // if set, a Get waits for it to close
	gets     atomic.Int64
	pings    atomic.Int64
	deletes  atomic.Int64
	version  int
	readOnly bool // Set fails, Get and Ping work
}

func newFake() *fake { return &fake{data: map[string][]byte{}, version: 1} }

func (f *fake) setDown(d bool) {
	f.mu.Lock()
	f.down = d
	f.mu.Unlock()
}

func (f *fake) wait(ctx context.Context) error {
	f.mu.Lock()
	down, delay := f.down, f.delay
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if down {
		return errors.New("fake: connection refused")
	}
	return nil
}

func (f *fake) Get(ctx context.Context, key string) (calc.Result, error) {
	f.gets.Add(1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return calc.Result{}, ctx.Err()
		}
	}
	if err := f.wait(ctx); err != nil {
		return calc.Result{}, err
	}
	f.mu.Lock()
	v, ok := f.data[key]
	f.mu.Unlock()
	if !ok {
		return calc.Result{}, ErrMiss
	}
	return DecodeValue(f.version, key, v)
}

func (f *fake) Set(ctx context.Context, key string, r calc.Result) error {
	if err := f.wait(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	if f.readOnly {
		f.mu.Unlock()
		return errors.New("fake: read-only file system")
	}
	f.data[key] = EncodeValue(f.version, key, r)
	f.mu.Unlock()
	return nil
}

func (f *fake) Delete(ctx context.Context, key string) error {
	f.deletes.Add(1)
	if err := f.wait(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	delete(f.data, key)
	f.mu.Unlock()
	return nil
}

func (f *fake) Ping(ctx context.Context) error {
	f.pings.Add(1)
	return f.wait(ctx)
}

func (f *fake) raw(key string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.data[key]
}

func (f *fake) put(key string, v []byte) {
	f.mu.Lock()
	f.data[key] = v
	f.mu.Unlock()
}

func closeChain(t *testing.T, c *Chain) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within 5s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestChainLooksUpInOrderAndFillsUpperTiers(t *testing.T) {
	mem := NewMemory(10, 0)
	t.Cleanup(mem.Close)
	shared := newFake()
	c := NewChain(Options{}, Tier{Name: "memory", Cache: mem, Local: true}, Tier{Name: "shared", Cache: shared})
	closeChain(t, c)
	ctx := context.Background()
	want := calc.Sum(1, []byte("k"))
	shared.put("k", EncodeValue(1, "k", want))
	got, tier, err := c.Get(ctx, "k")
	if err != nil || got != want || tier != "shared" {
		t.Fatalf("Get = %x, %q, %v", got, tier, err)
	}
	if got, tier, _ := c.Get(ctx, "k"); tier != "memory" || got != want {
		t.Fatalf("second Get came from %q: the memory tier was not filled", tier)
	}
	c.Set("j", calc.Sum(1, []byte("j")))
	eventually(t, "the write reaching the shared tier", func() bool { return shared.raw("j") != nil })
	if _, err := mem.Get(ctx, "j"); err != nil {
		t.Fatal("Set skipped the memory tier")
	}
	if _, _, err := NewChain(Options{}).Get(ctx, "k"); !errors.Is(err, ErrMiss) {
		t.Fatalf("empty chain: %v", err)
	}
	if n := c.Names(); len(n) != 2 || n[0] != "memory" || n[1] != "shared" {
		t.Fatalf("Names = %v", n)
	}
}

func TestChainDeletesAndCountsCorruptValues(t *testing.T) {
	shared := newFake()
	reg := prometheus.NewRegistry()
	c := NewChain(Options{Registerer: reg}, Tier{Name: "redis", Cache: shared})
	closeChain(t, c)
	shared.put("k", EncodeValue(1, "other", calc.Sum(1, []byte("other"))))
	if _, _, err := c.Get(context.Background(), "k"); !errors.Is(err, ErrMiss) {
		t.Fatalf("a corrupt value was served: %v", err)
	}
	eventually(t, "the corrupt value's deletion", func() bool { return shared.raw("k") == nil })
	if n := testutil.ToFloat64(c.tiers[0].m.corrupt); n != 1 {
		t.Fatalf("corrupt counter %v", n)
	}
	c.Set("k", calc.Sum(1, []byte("k")))
	eventually(t, "the replacement", func() bool { return shared.raw("k") != nil })
	if r, _, err := c.Get(context.Background(), "k"); err != nil || r != calc.Sum(1, []byte("k")) {
		t.Fatalf("replacement not served: %v", err)
	}
}

func TestChainBypassesADeadBackendAndProbesItBack(t *testing.T) {
	shared := newFake()
	reg := prometheus.NewRegistry()
	c := NewChain(Options{BackoffMin: 20 * time.Millisecond, BackoffMax: 80 * time.Millisecond, Registerer: reg},
		Tier{Name: "redis", Cache: shared})
	closeChain(t, c)
	ctx := context.Background()
	shared.setDown(true)
	for range 3 {
		if _, _, err := c.Get(ctx, "k"); !errors.Is(err, ErrMiss) {
			t.Fatalf("a failing backend must look like a miss, got %v", err)
		}
	}
	h := c.Health()
	if h[0].Healthy || !strings.Contains(h[0].Error, "connection refused") {
		t.Fatalf("after 3 failures health is %+v", h)
	}
	gets := shared.gets.Load()
	for range 100 {
		_, _, _ = c.Get(ctx, "k")
	}
	if shared.gets.Load() != gets {
		t.Fatal("an open breaker still sent lookups to the backend")
	}
	if n := testutil.ToFloat64(c.tiers[0].m.bypass); n != 100 {
		t.Fatalf("bypass counter %v, want 100", n)
	}
	eventually(t, "two probes", func() bool { return shared.pings.Load() >= 2 })
	shared.setDown(false)
	eventually(t, "recovery", func() bool { return c.Health()[0].Healthy })
	if _, _, err := c.Get(ctx, "k"); !errors.Is(err, ErrMiss) || shared.gets.Load() == gets {
		t.Fatal("the recovered backend is not asked again")
	}
	if v := gaugeValue(t, reg, "calcserver_cache_up"); v != 1 {
		t.Fatalf("calcserver_cache_up %v", v)
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestChainBackoffDoublesUpToTheMaximum(t *testing.T) {
	shared := newFake()
	shared.setDown(true)
	c := NewChain(Options{BackoffMin: 10 * time.Millisecond, BackoffMax: 40 * time.Millisecond}, Tier{Name: "x", Cache: shared})
	closeChain(t, c)
	if errs := c.Check(context.Background()); errs["x"] == nil {
		t.Fatal("Check did not report the dead backend")
	}
	eventually(t, "four probes", func() bool { return shared.pings.Load() >= 5 })
	c.tiers[0].mu.Lock()
	b := c.tiers[0].backoff
	c.tiers[0].mu.Unlock()
	if b != 40*time.Millisecond {
		t.Fatalf("back-off after several failed probes is %v, want the 40ms maximum", b)
	}
}

func TestChainDeadlineBoundsASlowBackend(t *testing.T) {
	shared := newFake()
	shared.delay = time.Hour
	c := NewChain(Options{Timeout: 30 * time.Millisecond}, Tier{Name: "slow", Cache: shared})
	closeChain(t, c)
	start := time.Now()
	if _, _, err := c.Get(context.Background(), "k"); !errors.Is(err, ErrMiss) {
		t.Fatalf("Get: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Get took %v against a 30ms CacheTimeout", d)
	}
}

func TestChainWritesAreBoundedAgainstASlowBackend(t *testing.T) {
	shared := newFake()
	shared.delay = 200 * time.Millisecond
	c := NewChain(Options{Timeout: time.Second, Writers: 2, QueueLen: 3, Failures: 1000}, Tier{Name: "slow", Cache: shared})
	closeChain(t, c)
	for i := range 100 {
		c.Set(fmt.Sprint(i), calc.Result{})
	}
	if p := c.Pending(); p > 2*3 {
		t.Fatalf("%d writes pending, bound is 6", p)
	}
	if d := testutil.ToFloat64(c.tiers[0].m.dropped); d < 100-2*3-2 {
		t.Fatalf("only %v writes dropped", d)
	}
}

func TestChainCloseFlushesQueuedWrites(t *testing.T) {
	shared := newFake()
	shared.delay = 5 * time.Millisecond
	c := NewChain(Options{Writers: 1, QueueLen: 50}, Tier{Name: "x", Cache: shared})
	for i := range 20 {
		c.Set(fmt.Sprint(i), calc.Sum(1, []byte(fmt.Sprint(i))))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if shared.raw(fmt.Sprint(i)) == nil {
			t.Fatalf("write %d lost at Close", i)
		}
	}
}

func TestAClientThatLeavesDoesNotCountAgainstTheBackend(t *testing.T) {
	shared := newFake()
	shared.delay = 50 * time.Millisecond
	c := NewChain(Options{Timeout: time.Second, Failures: 1}, Tier{Name: "redis", Cache: shared})
	closeChain(t, c)
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		_, _, _ = c.Get(ctx, "k")
		cancel()
	}
	if h := c.Health(); !h[0].Healthy {
		t.Fatalf("clients that hung up marked a healthy backend down: %+v", h)
	}
}

// TestConcurrentLookupsOfAKeyShareOneRead: 50 lookups of one key while the first is
// in flight cost the backend one read, and all 50 get its answer.
func TestConcurrentLookupsOfAKeyShareOneRead(t *testing.T) {
	shared := newFake()
	want := calc.Sum(1, []byte("k"))
	c := NewChain(Options{Timeout: 5 * time.Second}, Tier{Name: "redis", Cache: shared})
	closeChain(t, c)
	c.Set("k", want)
	eventually(t, "the write reaches the backend", func() bool { return shared.raw("k") != nil })
	shared.gate = make(chan struct{})
	reg := prometheus.NewRegistry()
	c2 := NewChain(Options{Timeout: 5 * time.Second, Registerer: reg}, Tier{Name: "redis", Cache: shared})
	closeChain(t, c2)

	const n = 50
	results := make(chan error, n)
	for range n {
		go func() {
			r, tierName, err := c2.Get(context.Background(), "k")
			if err == nil && (r != want || tierName != "redis") {
				err = fmt.Errorf("got %x from %q", r, tierName)
			}
			results <- err
		}()
	}
	eventually(t, "49 lookups join the first", func() bool { return joinedLookups() == n-1 })
	close(shared.gate)
	for range n {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	if g := shared.gets.Load(); g != 1 {
		t.Fatalf("%d concurrent lookups of one key made %d backend reads, want 1", n, g)
	}
	if h := testutil.ToFloat64(c2.tiers[0].m.hit); h != 1 {
		t.Fatalf("hit counter %v, want 1 (the shared read)", h)
	}
	if j := testutil.ToFloat64(c2.tiers[0].m.joined); j != n-1 {
		t.Fatalf("joined counter %v, want %d", j, n-1)
	}
}

// joinedLookups counts the goroutines waiting for another lookup's read: those
// blocked in singleflight's wait for the call in flight.
func joinedLookups() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "singleflight.(*Group).Do(") && strings.Contains(g, "sync.(*WaitGroup).Wait(") {
			n++
		}
	}
	return n
}

// TestALeavingClientDoesNotFailTheLookupsThatJoinedIt: the first caller's context
// ends while others wait on its read; they still get the answer.
func TestALeavingClientDoesNotFailTheLookupsThatJoinedIt(t *testing.T) {
	shared := newFake()
	want := calc.Sum(1, []byte("k"))
	shared.put("k", EncodeValue(1, "k", want))
	shared.gate = make(chan struct{})
	c := NewChain(Options{Timeout: 5 * time.Second}, Tier{Name: "redis", Cache: shared})
	closeChain(t, c)

	first, leave := context.WithCancel(context.Background())
	firstDone := make(chan error, 1)
	go func() { _, _, err := c.Get(first, "k"); firstDone <- err }()
	eventually(t, "the first lookup reaches the backend", func() bool { return shared.gets.Load() == 1 })
	second := make(chan error, 1)
	go func() {
		r, _, err := c.Get(context.Background(), "k")
		if err == nil && r != want {
			err = fmt.Errorf("got %x", r)
		}
		second <- err
	}()
	eventually(t, "the second lookup joins", func() bool { return joinedLookups() == 1 })
	leave()
	close(shared.gate)
	if err := <-second; err != nil {
		t.Fatalf("the joined lookup failed when the first client left: %v", err)
	}
	<-firstDone
	if shared.gets.Load() != 1 {
		t.Fatalf("%d backend reads, want 1", shared.gets.Load())
	}
}

// pingOnly answers pings but fails every lookup, like a table that is locked.
type pingOnly struct{ pings atomic.Int64 }

func (*pingOnly) Get(context.Context, string) (calc.Result, error) {
	return calc.Result{}, errors.New("lock wait timeout")
}
func (*pingOnly) Set(context.Context, string, calc.Result) error {
	return errors.New("lock wait timeout")
}
func (p *pingOnly) Ping(context.Context) error {
	p.pings.Add(1)
	return nil
}

func TestABackendThatOnlyAnswersPingsBacksOffFurther(t *testing.T) {
	b := &pingOnly{}
	c := NewChain(Options{Failures: 1, BackoffMin: 10 * time.Millisecond, BackoffMax: 80 * time.Millisecond}, Tier{Name: "mysql", Cache: b})
	closeChain(t, c)
	var backoffs []time.Duration
	deadline := time.Now().Add(5 * time.Second)
	for len(backoffs) < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("within 5s only %d lookups found the backend up (back-offs %v): a probe that succeeds must let it back", len(backoffs), backoffs)
		}
		if c.Health()[0].Healthy {
			_, _, _ = c.Get(context.Background(), "k") // fails: opens the breaker again
			c.tiers[0].mu.Lock()
			backoffs = append(backoffs, c.tiers[0].backoff)
			c.tiers[0].mu.Unlock()
		}
		time.Sleep(time.Millisecond)
	}
	want := []time.Duration{10, 20, 40, 80, 80}
	for i := range want {
		if backoffs[i] != want[i]*time.Millisecond {
			t.Fatalf("back-offs %v, want %v ms: a flapping backend must back off further", backoffs, want)
		}
	}
}

func TestCheckGivesSlowBackendsTheStartupBudget(t *testing.T) {
	shared := newFake()
	shared.delay = 150 * time.Millisecond
	c := NewChain(Options{Timeout: 50 * time.Millisecond}, Tier{Name: "mysql", Cache: shared})
	closeChain(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if errs := c.Check(ctx); len(errs) != 0 {
		t.Fatalf("Check with a 3s budget failed a backend that answers in 150ms: %v", errs)
	}
}

// TestAFailureAfterCloseStartsNoProber: a backend that fails after Close opens the
// breaker but starts no prober. The test sees every prober the chain starts (its
// back-off wait goes through c.after, which here returns at once instead of after
// the back-off), and the second Close waits for every goroutine the chain started,
// so nothing is left to chance or to a sleep.
func TestAFailureAfterCloseStartsNoProber(t *testing.T) {
	shared := newFake()
	shared.setDown(true)
	c := NewChain(Options{Failures: 1}, Tier{Name: "x", Cache: shared})
	var waits atomic.Int64
	c.after = func(time.Duration) <-chan time.Time {
		waits.Add(1)
		now := make(chan time.Time, 1)
		now <- time.Now()
		return now
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(context.Background(), "k"); !errors.Is(err, ErrMiss) {
		t.Fatalf("Get on a closed chain over a dead backend: %v, want ErrMiss", err)
	}
	if h := c.Health(); h[0].Healthy {
		t.Fatalf("the failure after Close did not open the breaker: %+v", h)
	}
	// A prober that ignores Close keeps pinging the dead backend: this Close
	// then runs out of time.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("a prober started after Close is still running: second Close: %v", err)
	}
	if n := waits.Load(); n != 0 {
		t.Fatalf("a closed chain started a prober: %d back-off waits", n)
	}
	if n := shared.pings.Load(); n != 0 {
		t.Fatalf("a closed chain probed %d times", n)
	}
}

// TestALookupLooksAgainInTheMemoryTierAfterTheSharedTiers: while a lookup waits on a
// shared tier, a job stores the answer in the memory tier; when the shared tier then
// fails or misses, Get looks at the memory tier once more and returns that answer,
// so the caller does not run a second job. The memory tier counts that lookup as one
// hit, not also as the miss of its first look.
func TestALookupLooksAgainInTheMemoryTierAfterTheSharedTiers(t *testing.T) {
	for name, down := range map[string]bool{"the shared tier fails": true, "the shared tier misses": false} {
		t.Run(name, func(t *testing.T) {
			mem := NewMemory(10, 0)
			t.Cleanup(mem.Close)
			shared := newFake()
			shared.setDown(down)
			shared.gate = make(chan struct{})
			c := NewChain(Options{Timeout: 5 * time.Second, Failures: 1000},
				Tier{Name: "memory", Cache: mem, Local: true}, Tier{Name: "shared", Cache: shared})
			closeChain(t, c)
			type answer struct {
				r    calc.Result
				tier string
				err  error
			}
			got := make(chan answer, 1)
			go func() {
				r, tier, err := c.Get(context.Background(), "k")
				got <- answer{r, tier, err}
			}()
			eventually(t, "the lookup reaching the shared tier", func() bool { return shared.gets.Load() == 1 })
			want := calc.Sum(1, []byte("k"))
			if err := mem.Set(context.Background(), "k", want); err != nil {
				t.Fatal(err)
			}
			close(shared.gate)
			a := <-got
			if a.err != nil || a.r != want || a.tier != "memory" {
				t.Fatalf("Get = %x, %q, %v; want the answer the memory tier got meanwhile, from \"memory\"", a.r, a.tier, a.err)
			}
			if hit, miss := testutil.ToFloat64(c.tiers[0].m.hit), testutil.ToFloat64(c.tiers[0].m.miss); hit != 1 || miss != 0 {
				t.Fatalf("memory tier counted hit=%v miss=%v for a lookup its second look answered, want hit=1 miss=0", hit, miss)
			}
		})
	}
}

// TestAMemoryTierCountsEachLookupOnce: whatever the shared tier does, a lookup counts
// one hit or one miss in the memory tier, even when the memory tier was looked at
// twice.
func TestAMemoryTierCountsEachLookupOnce(t *testing.T) {
	want := calc.Sum(1, []byte("k"))
	cases := map[string]struct {
		inMemory, inShared, down bool
		from                     string // the tier that answers; "" for a miss
		hit, miss                float64
	}{
		"a memory hit is one hit":                                       {inMemory: true, from: "memory", hit: 1},
		"a shared hit is one memory miss":                               {inShared: true, from: "shared", miss: 1},
		"a miss everywhere is one memory miss, not two":                 {miss: 1},
		"a failing shared tier and a memory miss are one miss, not two": {down: true, miss: 1},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			mem := NewMemory(10, 0)
			t.Cleanup(mem.Close)
			shared := newFake()
			if tc.inShared {
				shared.put("k", EncodeValue(1, "k", want))
			}
			shared.setDown(tc.down)
			c := NewChain(Options{Timeout: 5 * time.Second, Failures: 1000},
				Tier{Name: "memory", Cache: mem, Local: true}, Tier{Name: "shared", Cache: shared})
			closeChain(t, c)
			if tc.inMemory {
				if err := mem.Set(context.Background(), "k", want); err != nil {
					t.Fatal(err)
				}
			}
			if _, from, _ := c.Get(context.Background(), "k"); from != tc.from {
				t.Fatalf("Get answered from %q, want %q", from, tc.from)
			}
			if hit, miss := testutil.ToFloat64(c.tiers[0].m.hit), testutil.ToFloat64(c.tiers[0].m.miss); hit != tc.hit || miss != tc.miss {
				t.Fatalf("memory tier counted hit=%v miss=%v, want hit=%v miss=%v", hit, miss, tc.hit, tc.miss)
			}
		})
	}
}

// TestATierThatTakesNoWritesIsUnhealthy: a backend that answers lookups but fails
// every write (a read-only file system) keeps its breaker closed, so hits go on, but
// Health reports it once Failures writes in a row failed, and well again after a
// write works.
func TestATierThatTakesNoWritesIsUnhealthy(t *testing.T) {
	shared := newFake()
	c := NewChain(Options{Failures: 3}, Tier{Name: "file", Cache: shared})
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	ctx := context.Background()
	want := calc.Sum(1, []byte("old"))
	shared.put("old", EncodeValue(1, "old", want))

	shared.mu.Lock()
	shared.readOnly = true
	shared.mu.Unlock()
	health := func() Health { return c.Health()[0] }
	settle := func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for c.Pending() > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d writes still queued after 5s", c.Pending())
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Each failed write is followed by a hit, as under load: the hits reset the
	// breaker's count, so only the write count can tell.
	write := func(i int) {
		t.Helper()
		c.Set(fmt.Sprintf("new-%d", i), calc.Sum(1, []byte("x")))
		settle()
		time.Sleep(20 * time.Millisecond) // the worker counts a write after Pending drops
		if r, _, err := c.Get(ctx, "old"); err != nil || r != want {
			t.Fatalf("Get after write %d = %x, %v", i, r, err)
		}
	}
	write(0)
	write(1)
	if h := health(); !h.Healthy {
		t.Fatalf("after 2 failed writes (Failures 3): %+v, want healthy still", h)
	}
	write(2)
	if h := health(); h.Healthy || !strings.Contains(h.Error, "writes failing (lookups still answered): fake: read-only file system") {
		t.Fatalf("after 3 failed writes: %+v, want unhealthy, saying writes fail", h)
	}
	// Lookups still reach it: the breaker stayed closed.
	if r, from, err := c.Get(ctx, "old"); err != nil || r != want || from != "file" {
		t.Fatalf("Get = %x, %q, %v; want the stored answer from file", r, from, err)
	}
	shared.mu.Lock()
	shared.readOnly = false
	shared.mu.Unlock()
	c.Set("new-3", calc.Sum(1, []byte("x")))
	settle()
	deadline := time.Now().Add(5 * time.Second)
	for !health().Healthy {
		if time.Now().After(deadline) {
			t.Fatalf("after a write worked: %+v, want healthy", health())
		}
		time.Sleep(time.Millisecond)
	}
}
