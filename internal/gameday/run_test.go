package gameday

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/queue"
	"github.com/unicorn-rentals/unicorn/internal/server"
)

// calcserver starts a real calcserver handler on loopback: 4 sleeping cores, 20 ms
// jobs, a memory cache, a queue long enough that the tests' load is never refused.
func calcserver(t *testing.T, host string) string {
	t.Helper()
	mem := cache.NewMemory(10000, 0)
	t.Cleanup(mem.Close)
	s := server.New(server.Options{
		Queue:       queue.Options{Cores: 4, QueueSize: 1000, WorkTime: 20 * time.Millisecond, Mode: queue.Sleep},
		Cache:       cache.NewChain(cache.Options{}, cache.Tier{Name: "memory", Cache: mem, Local: true}),
		CalcVersion: 1,
		Host:        host,
	})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

// observed collects what Run reports to observe.
type observed struct {
	mu    sync.Mutex
	snaps []Snapshot
}

func (o *observed) add(s Snapshot) {
	o.mu.Lock()
	o.snaps = append(o.snaps, s)
	o.mu.Unlock()
}

func TestRunAgainstARealCalcserverScores(t *testing.T) {
	t.Parallel()
	url := calcserver(t, "calc-1")
	var obs observed
	sum, err := Run(context.Background(), Options{
		Targets: []string{url}, Rate: 100, Duration: 2 * time.Second,
		Keys: 20, Unique: 0.05, Seed: 1, Instances: 1, CostPer15m: 8,
	}, obs.add)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Score <= 0 || sum.Wrong != 0 {
		t.Errorf("score %v with %d wrong answers; want > 0 and none", sum.Score, sum.Wrong)
	}
	if sum.Offered != 200 || sum.Requests != 200 || sum.Dropped != 0 {
		t.Errorf("offered %d sent %d dropped %d; want 200 sent, none dropped", sum.Offered, sum.Requests, sum.Dropped)
	}
	if sum.Correct != sum.Requests || sum.Errors != 0 || sum.Timeouts != 0 {
		t.Errorf("correct %d of %d, errors %d, timeouts %d", sum.Correct, sum.Requests, sum.Errors, sum.Timeouts)
	}
	if sum.ByStatus["200"] != 200 || sum.ByServedBy["calc-1"].Correct != 200 || sum.ByTarget[url].Requests != 200 {
		t.Errorf("by status %v, served by %v, target %v", sum.ByStatus, sum.ByServedBy, sum.ByTarget)
	}
	// Correct answers: +1 each, +1 more for the fast ones (all but the misses' 20 ms
	// are fast here), less $8 for the first 15 minutes.
	if sum.Score != sum.Points-8 || sum.Points != 400 {
		t.Errorf("points %v, score %v; want 400 (every answer fast) and 392", sum.Points, sum.Score)
	}
	if sum.Latency.P50 <= 0 || sum.Latency.P50 > sum.Latency.P99 || sum.Latency.P99 > sum.Latency.Max {
		t.Errorf("latency %+v", sum.Latency)
	}
	if sum.MaxConns < 1 || sum.MaxConns > DefaultMaxInflight {
		t.Errorf("max connections %d", sum.MaxConns)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if n := len(obs.snaps); n < 2 || n > 4 || !obs.snaps[n-1].Final {
		t.Fatalf("%d snapshots, the last final: %v", n, n > 0 && obs.snaps[n-1].Final)
	}
	if len(sum.Series) != len(obs.snaps) || sum.Series[0].Second != 1 || sum.Series[0].Correct == 0 {
		t.Errorf("series %+v", sum.Series)
	}
	if last := obs.snaps[len(obs.snaps)-1]; last.Score != sum.Score || last.Correct != sum.Correct {
		t.Errorf("final snapshot %+v disagrees with the summary", last)
	}
}

func TestRunRoundRobinsOverTheFleet(t *testing.T) {
	t.Parallel()
	a, b := calcserver(t, "host-a"), calcserver(t, "host-b")
	sum, err := Run(context.Background(), Options{
		Targets: []string{a + "," + b}, Rate: 40, Duration: time.Second, Keys: 10, Seed: 2,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.ByTarget[a].Requests != 20 || sum.ByTarget[b].Requests != 20 {
		t.Errorf("by target %v, want 20 each", sum.ByTarget)
	}
	if sum.ByServedBy["host-a"].Correct != 20 || sum.ByServedBy["host-b"].Correct != 20 {
		t.Errorf("by X-Served-By %v, want 20 correct each", sum.ByServedBy)
	}
}

func TestRunCountsALyingServersAnswersAsWrong(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	asked := map[string]bool{}
	lie := calc.Body(calc.Token, 1, []byte(NewKey(999999).Text))
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked[r.URL.Query().Get("input")] = true
		mu.Unlock()
		w.Write(lie) // well-formed, for another key
	}))
	t.Cleanup(ts.Close)
	sum, err := Run(context.Background(), Options{
		Targets: []string{ts.URL}, Rate: 50, Duration: time.Second, Keys: 5, Seed: 3,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Wrong != 50 || sum.Correct != 0 {
		t.Errorf("wrong %d correct %d, want 50 wrong", sum.Wrong, sum.Correct)
	}
	if sum.Score >= 0 || sum.Points != -50 {
		t.Errorf("score %v (points %v): want −50 points and below zero", sum.Score, sum.Points)
	}
	var named bool
	for _, e := range sum.Events {
		if !strings.HasPrefix(e.Reason, "answer did not match for key ") {
			continue
		}
		if e.Points != -1 || !strings.Contains(e.Reason, "an answer for another key") {
			t.Errorf("event %+v", e)
		}
		key := strings.Fields(strings.TrimPrefix(e.Reason, "answer did not match for key "))[0]
		mu.Lock()
		named = named || asked[key]
		mu.Unlock()
	}
	if !named {
		t.Errorf("no score event names a key the server was asked: %+v", sum.Events)
	}
}

func TestRunCounts503AsErrors(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", "full")
		http.Error(w, `{"error":"queue full"}`, http.StatusServiceUnavailable)
	}))
	t.Cleanup(ts.Close)
	sum, err := Run(context.Background(), Options{Targets: []string{ts.URL}, Rate: 50, Duration: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Errors != 50 || sum.ByStatus["503"] != 50 || sum.ByError["status 503"] != 50 || sum.ByServedBy["full"].Errors != 50 {
		t.Errorf("errors %d, by status %v, by error %v, by served %v", sum.Errors, sum.ByStatus, sum.ByError, sum.ByServedBy)
	}
	if sum.Score != -25 {
		t.Errorf("score %v, want 50 × −0.5", sum.Score)
	}
	var aggregated int64
	for _, e := range sum.Events {
		if strings.Contains(e.Reason, "in the last second: status 503 ×") {
			aggregated += int64(-e.Points / 0.5)
		}
	}
	if aggregated != 50 {
		t.Errorf("error events account for %d errors, want 50: %+v", aggregated, sum.Events)
	}
}

// blackHole accepts connections and reads requests but never answers. It counts the
// requests, the connections open at once and when each request came.
type blackHole struct {
	ln       net.Listener
	requests atomic.Int64
	open     atomic.Int64
	peak     atomic.Int64
	mu       sync.Mutex
	arrived  []time.Time
	wg       sync.WaitGroup
}

func newBlackHole(t *testing.T) *blackHole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackHole{ln: ln}
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := b.open.Add(1)
			for p := b.peak.Load(); n > p && !b.peak.CompareAndSwap(p, n); p = b.peak.Load() {
			}
			b.wg.Go(func() {
				defer b.open.Add(-1)
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if strings.HasPrefix(line, "GET /calc?input=") {
						b.requests.Add(1)
						b.mu.Lock()
						b.arrived = append(b.arrived, time.Now())
						b.mu.Unlock()
					}
				}
			})
		}
	})
	t.Cleanup(func() { ln.Close(); b.wg.Wait() })
	return b
}

func TestRunOpenModelDropsWhatItCannotSend(t *testing.T) {
	b := newBlackHole(t)
	const rate, inflight = 200, 20
	start := time.Now()
	sum, err := Run(context.Background(), Options{
		Targets: []string{"http://" + b.ln.Addr().String()}, Rate: rate, Duration: time.Second,
		MaxInflight: inflight, Timeout: 2 * time.Second, Keys: 100, Seed: 4,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	// Every slot is taken by a request the target never answers; nothing frees one
	// before the end, so exactly max-inflight requests are sent and the rest dropped.
	if sum.Offered != rate || sum.Requests != inflight || sum.Dropped != rate-inflight {
		t.Errorf("offered %d sent %d dropped %d; want %d, %d, %d", sum.Offered, sum.Requests, sum.Dropped, rate, inflight, rate-inflight)
	}
	if sum.Timeouts != inflight || sum.Score != -0.5*inflight {
		t.Errorf("timeouts %d score %v", sum.Timeouts, sum.Score)
	}
	if got := b.requests.Load(); got != inflight {
		t.Errorf("the target received %d requests, want %d", got, inflight)
	}
	if p := b.peak.Load(); p > inflight || sum.MaxConns > inflight {
		t.Errorf("%d connections open at once at the target (%d by the client's count), limit %d", p, sum.MaxConns, inflight)
	}
	// The target still got the offered rate until the slots were full: 20 requests
	// at 200/s take 0.1 s.
	b.mu.Lock()
	last := b.arrived[len(b.arrived)-1].Sub(start)
	b.mu.Unlock()
	if last > 600*time.Millisecond {
		t.Errorf("the %dth request arrived after %v: the offered rate was not kept", inflight, last)
	}
	// Arrivals end after 1 s; the stragglers time out 2 s after they were sent.
	if took > 3500*time.Millisecond {
		t.Errorf("run took %v, want about 2.1 s", took)
	}
}

func TestRunOpenModelSendsAgainAsSlotsFree(t *testing.T) {
	b := newBlackHole(t)
	sum, err := Run(context.Background(), Options{
		Targets: []string{"http://" + b.ln.Addr().String()}, Rate: 100, Duration: 2 * time.Second,
		MaxInflight: 10, Timeout: 300 * time.Millisecond, Keys: 10, Seed: 5,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Ten slots, each freed 0.3 s after it was taken: about 10 per 0.3 s of 2 s are
	// sent (≈ 70), the rest dropped; the sum is always the offered 200.
	if sum.Offered != 200 || sum.Requests+sum.Dropped != 200 {
		t.Errorf("offered %d = sent %d + dropped %d?", sum.Offered, sum.Requests, sum.Dropped)
	}
	if sum.Requests < 50 || sum.Requests > 90 {
		t.Errorf("sent %d, want about 70", sum.Requests)
	}
	if got := b.requests.Load(); got != sum.Requests {
		t.Errorf("target received %d, client sent %d", got, sum.Requests)
	}
	// Here connections close as requests time out, and the target still counts one the
	// client has closed until it reads the end of it, so the client's own count of open
	// connections is the bound to hold (the target's count is exact in the test above,
	// where none closes before the end).
	if sum.MaxConns > 10 {
		t.Errorf("%d connections open at once by the client's count, limit 10", sum.MaxConns)
	}
	if p := b.peak.Load(); p > 20 {
		t.Errorf("%d connections at once at the target, limit 10 (plus those closing)", p)
	}
}

func TestRunInterruptedCancelsWithoutScoring(t *testing.T) {
	t.Parallel()
	b := newBlackHole(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	sum, err := Run(ctx, Options{Targets: []string{"http://" + b.ln.Addr().String()}, Rate: 20, Duration: time.Minute}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("stopping took %v", time.Since(start))
	}
	if sum.Canceled == 0 || sum.Canceled != sum.Requests || sum.Timeouts != 0 || sum.Points != 0 {
		t.Errorf("canceled %d of %d, timeouts %d, points %v", sum.Canceled, sum.Requests, sum.Timeouts, sum.Points)
	}
}

func TestRunRefusesBadOptionsBeforeSending(t *testing.T) {
	t.Parallel()
	_, err := Run(context.Background(), Options{Targets: []string{"http://127.0.0.1:1"}, Rate: -1, Duration: time.Second}, nil)
	var oe *OptionError
	if !errors.Is(err, ErrOptions) || !errors.As(err, &oe) || oe.Name != "rate" {
		t.Errorf("err %v, want an OptionError for -rate", err)
	}
}

func TestRunCountsRefusedConnectionsAsErrors(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	sum, err := Run(context.Background(), Options{Targets: []string{"http://" + addr}, Rate: 20, Duration: 500 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Errors != 10 || sum.ByError["connection refused"] != 10 || sum.ByStatus["error"] != 10 {
		t.Errorf("errors %d, by error %v, by status %v", sum.Errors, sum.ByError, sum.ByStatus)
	}
}

func TestRunNeverOpensMoreConnectionsThanMaxInflightAcrossTargets(t *testing.T) {
	t.Parallel()
	// One target answers at once (its connections go idle between requests), the
	// other never: without a bound over both, idle connections to the first would
	// add to the second's busy ones.
	fast := calcserver(t, "fast")
	hole := newBlackHole(t)
	const inflight = 10
	sum, err := Run(context.Background(), Options{
		Targets: []string{fast, "http://" + hole.ln.Addr().String()}, Rate: 100, Duration: time.Second,
		MaxInflight: inflight, Timeout: 500 * time.Millisecond, Keys: 5, Seed: 6,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.MaxConns > inflight {
		t.Errorf("%d connections open at once, limit %d", sum.MaxConns, inflight)
	}
	if sum.ByServedBy["fast"].Correct == 0 || sum.Timeouts == 0 {
		t.Errorf("correct from the fast target %d, timeouts %d: want both", sum.ByServedBy["fast"].Correct, sum.Timeouts)
	}
}

func TestRunVerifiesTheHashFormat(t *testing.T) {
	t.Parallel()
	s := server.New(server.Options{
		Queue:  queue.Options{Cores: 4, QueueSize: 1000, WorkTime: time.Millisecond, Mode: queue.Sleep},
		Format: calc.Hash, CalcVersion: 3, Host: "hash",
	})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	o := Options{Targets: []string{ts.URL}, Rate: 20, Duration: 500 * time.Millisecond, Keys: 5, Format: calc.Hash, CalcVersion: 3}
	sum, err := Run(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Correct != 10 || sum.Wrong != 0 {
		t.Errorf("hash v3 against hash v3: correct %d wrong %d", sum.Correct, sum.Wrong)
	}
	// Expecting tokens from a server that answers hashes: every answer is wrong, and
	// the events say why.
	o.Format = calc.Token
	sum, err = Run(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Wrong != 10 || len(sum.Events) == 0 || !strings.Contains(sum.Events[len(sum.Events)-1].Reason, "the right answer in the hash format") {
		t.Errorf("token expected, hash served: wrong %d, events %+v", sum.Wrong, sum.Events)
	}
}
