package queue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/queue"
)

// Most tests run in a synctest bubble: time is fake and only advances when every
// goroutine is blocked, so WorkTime can be asserted exactly and synctest.Wait
// replaces sleeps. A bubble also fails the test if a goroutine is left blocked.

const work = 10 * time.Millisecond

// TestMain checks that the tests, including those outside a bubble, leave no
// goroutine behind.
func TestMain(m *testing.M) {
	base := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // polling: goroutine exit cannot be signalled
		}
		if n := runtime.NumGoroutine(); n > base {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Fprintf(os.Stderr, "leaked goroutines: %d, want at most %d\n%s\n", n, base, buf)
			code = 1
		}
	}
	os.Exit(code)
}

// result is what one Do returned, and when (in bubble time since the test began).
type result struct {
	key    string
	val    []byte
	shared bool
	wait   time.Duration
	err    error
	at     time.Duration
}

// recorder remembers the keys whose fn ran, in order.
type recorder struct {
	mu   sync.Mutex
	keys []string
}

func (r *recorder) fn(key string) func() ([]byte, error) {
	return func() ([]byte, error) {
		r.mu.Lock()
		r.keys = append(r.keys, key)
		r.mu.Unlock()
		return []byte("value of " + key), nil
	}
}

func (r *recorder) ran() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.keys...)
}

// gated returns fn after it has waited for gate to close.
func gated(gate <-chan struct{}, fn func() ([]byte, error)) func() ([]byte, error) {
	return func() ([]byte, error) {
		<-gate
		return fn()
	}
}

// start calls q.Do on a new goroutine and delivers its result on the returned channel.
func start(ctx context.Context, q *queue.Queue, key string, fn func() ([]byte, error)) <-chan result {
	begin := time.Now()
	c := make(chan result, 1)
	go func() {
		val, shared, wait, err := q.Do(ctx, key, fn)
		c <- result{key: key, val: val, shared: shared, wait: wait, err: err, at: time.Since(begin)}
	}()
	return c
}

// startInOrder starts one Do per key and waits, after each, until it has taken its
// place, so that the arrival order is the order of keys.
func startInOrder(q *queue.Queue, r *recorder, keys ...string) []<-chan result {
	var cs []<-chan result
	for _, k := range keys {
		cs = append(cs, start(context.Background(), q, k, r.fn(k)))
		synctest.Wait()
	}
	return cs
}

// ready returns the result on c if there is one already.
func ready(c <-chan result) (result, bool) {
	select {
	case r := <-c:
		return r, true
	default:
		return result{}, false
	}
}

func wantStats(t *testing.T, q *queue.Queue, want queue.Stats) {
	t.Helper()
	if got := q.Stats(); got != want {
		t.Fatalf("Stats() = %+v, want %+v", got, want)
	}
}

func wantRan(t *testing.T, r *recorder, want ...string) {
	t.Helper()
	if got := r.ran(); !slicesEqual(got, want) {
		t.Fatalf("fn ran for %q, want %q", got, want)
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sleepQueue(cores, size int) queue.Options {
	return queue.Options{Cores: cores, QueueSize: size, WorkTime: work, Mode: queue.Sleep}
}

func TestParseMode(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    queue.Mode
		wantErr bool
	}{
		"burn is Burn":             {in: "burn", want: queue.Burn},
		"sleep is Sleep":           {in: "sleep", want: queue.Sleep},
		"case does not matter":     {in: "Sleep", want: queue.Sleep},
		"an empty mode is wrong":   {in: "", wantErr: true},
		"an unknown mode is wrong": {in: "spin", wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := queue.ParseMode(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseMode(%q) = %v, want an error", tt.in, got)
				}
				for _, allowed := range []string{"burn", "sleep", strconv.Quote(tt.in)} {
					if !strings.Contains(err.Error(), allowed) {
						t.Errorf("error %q does not mention %s", err, allowed)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseMode(%q) = %v, %v; want %v, nil", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestModeStringRoundTrips(t *testing.T) {
	for _, m := range []queue.Mode{queue.Burn, queue.Sleep} {
		if got, err := queue.ParseMode(m.String()); err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", m.String(), got, err, m)
		}
	}
	if got := queue.Mode(7).String(); got != "Mode(7)" {
		t.Errorf("Mode(7).String() = %q", got)
	}
}

func TestNewFixesOptionsOutOfRange(t *testing.T) {
	q := queue.New(queue.Options{Cores: 0, QueueSize: -3})
	wantStats(t, q, queue.Stats{Cores: 1})
}

func TestAFullQueueRefusesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(sleepQueue(1, 5))
		var r recorder
		var cs []<-chan result
		for i := range 10 {
			k := "key" + strconv.Itoa(i)
			cs = append(cs, start(context.Background(), q, k, r.fn(k)))
		}
		synctest.Wait()
		wantStats(t, q, queue.Stats{Waiting: 5, Capacity: 5, Busy: 1, Cores: 1})

		var full, ok int
		for _, c := range cs {
			res := <-c
			switch {
			case errors.Is(res.err, queue.ErrFull):
				full++
				if res.at != 0 || res.wait != 0 {
					t.Errorf("%s refused after %v (wait %v), want at once", res.key, res.at, res.wait)
				}
			case res.err == nil:
				ok++
				if string(res.val) != "value of "+res.key {
					t.Errorf("%s got %q", res.key, res.val)
				}
			default:
				t.Errorf("%s: unexpected error %v", res.key, res.err)
			}
		}
		if full != 4 || ok != 6 {
			t.Fatalf("%d refused and %d served, want 4 and 6", full, ok)
		}
		if n := len(r.ran()); n != 6 {
			t.Fatalf("fn ran %d times, want 6", n)
		}
		wantStats(t, q, queue.Stats{Capacity: 5, Cores: 1})
	})
}

// TestAFullQueueRefusesAtOnceOnRealTime checks the same on the real scheduler:
// every job is held by a gate, so a refusal that arrives before the gate opens was
// given without waiting for any work.
func TestAFullQueueRefusesAtOnceOnRealTime(t *testing.T) {
	q := queue.New(queue.Options{Cores: 1, QueueSize: 5, Mode: queue.Sleep})
	gate := make(chan struct{})
	var r recorder
	results := make(chan result, 10)
	for i := range 10 {
		k := "key" + strconv.Itoa(i)
		go func() {
			val, shared, wait, err := q.Do(context.Background(), k, gated(gate, r.fn(k)))
			results <- result{key: k, val: val, shared: shared, wait: wait, err: err}
		}()
	}
	for range 4 {
		if res := <-results; !errors.Is(res.err, queue.ErrFull) {
			t.Errorf("%s: got %v while the gate was shut, want ErrFull", res.key, res.err)
		}
	}
	wantStats(t, q, queue.Stats{Waiting: 5, Capacity: 5, Busy: 1, Cores: 1})
	close(gate)
	for range 6 {
		if res := <-results; res.err != nil {
			t.Errorf("%s: %v", res.key, res.err)
		}
	}
	if n := len(r.ran()); n != 6 {
		t.Fatalf("fn ran %d times, want 6", n)
	}
}

func TestAZeroSizedQueueServesOnlyTheCores(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(sleepQueue(2, 0))
		var r recorder
		cs := startInOrder(q, &r, "a", "b", "c")
		if res := <-cs[2]; !errors.Is(res.err, queue.ErrFull) {
			t.Fatalf("third job: %v, want ErrFull", res.err)
		}
		for _, c := range cs[:2] {
			if res := <-c; res.err != nil || res.at != work {
				t.Errorf("%s: %v after %v", res.key, res.err, res.at)
			}
		}
	})
}

func TestJobsStartInArrivalOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(sleepQueue(1, 5))
		var r recorder
		keys := []string{"k0", "k1", "k2", "k3", "k4", "k5"}
		cs := startInOrder(q, &r, keys...)
		for i, c := range cs {
			res := <-c
			if res.err != nil {
				t.Fatalf("%s: %v", res.key, res.err)
			}
			wantWait := time.Duration(i) * work
			if res.wait != wantWait || res.at != wantWait+work || res.shared {
				t.Errorf("%s: wait %v, done after %v, shared %v; want wait %v, done after %v, not shared",
					res.key, res.wait, res.at, res.shared, wantWait, wantWait+work)
			}
		}
		wantRan(t, &r, keys...)
	})
}

func TestEachCoreRunsAJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(sleepQueue(2, 1))
		var r recorder
		cs := startInOrder(q, &r, "a", "b", "c")
		wantStats(t, q, queue.Stats{Waiting: 1, Capacity: 1, Busy: 2, Cores: 2})
		for i, c := range cs {
			res := <-c
			wantAt := work
			if i == 2 {
				wantAt = 2 * work
			}
			if res.err != nil || res.at != wantAt {
				t.Errorf("%s: %v after %v, want done after %v", res.key, res.err, res.at, wantAt)
			}
		}
		wantStats(t, q, queue.Stats{Capacity: 1, Cores: 2})
	})
}

func TestCallersOfOneKeyShareOneJobAndOnePlace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(sleepQueue(1, 2))
		var r recorder
		blocker := startInOrder(q, &r, "blocker")[0]

		var runs atomic.Int32
		hot := func() ([]byte, error) {
			runs.Add(1)
			return []byte("hot value"), nil
		}
		var cs []<-chan result
		for range 50 {
			cs = append(cs, start(context.Background(), q, "hot", hot))
		}
		synctest.Wait()
		wantStats(t, q, queue.Stats{Waiting: 1, Capacity: 2, Busy: 1, Cores: 1})

		// The 50 callers took one place: another key still gets the last one.
		other := startInOrder(q, &r, "other")[0]
		wantStats(t, q, queue.Stats{Waiting: 2, Capacity: 2, Busy: 1, Cores: 1})
		if res := <-start(context.Background(), q, "extra", r.fn("extra")); !errors.Is(res.err, queue.ErrFull) {
			t.Fatalf("a new key in a full line: %v, want ErrFull", res.err)
		}
		// Joining costs no place, so it works even when the line is full.
		late := start(context.Background(), q, "hot", hot)
		synctest.Wait()
		if res, ok := ready(late); ok {
			t.Fatalf("a joiner of a full line returned early: %+v", res)
		}

		var shared int
		for _, c := range cs {
			res := <-c
			if res.err != nil || string(res.val) != "hot value" || res.wait != work {
				t.Errorf("hot: %q, %v, wait %v", res.val, res.err, res.wait)
			}
			if res.shared {
				shared++
			}
		}
		if shared != 49 {
			t.Errorf("%d callers shared, want 49", shared)
		}
		if res := <-late; res.err != nil || !res.shared || string(res.val) != "hot value" {
			t.Errorf("late joiner: %q, shared %v, %v", res.val, res.shared, res.err)
		}
		if n := runs.Load(); n != 1 {
			t.Errorf("fn ran %d times for 51 callers, want 1", n)
		}
		for _, c := range []<-chan result{blocker, other} {
			if res := <-c; res.err != nil {
				t.Errorf("%s: %v", res.key, res.err)
			}
		}
	})
}

func TestAFinishedJobIsNotJoined(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(sleepQueue(1, 0))
		var r recorder
		for range 2 {
			res := <-start(context.Background(), q, "k", r.fn("k"))
			if res.err != nil || res.shared {
				t.Fatalf("k: %v, shared %v", res.err, res.shared)
			}
		}
		wantRan(t, &r, "k", "k")
	})
}

func TestWaitCountsFromArrivalToStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(sleepQueue(1, 1))
		var r recorder
		startInOrder(q, &r, "running", "waiting")
		time.Sleep(work / 4)
		joinRunning := start(context.Background(), q, "running", r.fn("running"))
		joinWaiting := start(context.Background(), q, "waiting", r.fn("waiting"))

		if res := <-joinRunning; res.err != nil || !res.shared || res.wait != 0 {
			t.Errorf("joiner of a running job: shared %v, wait %v, %v; want shared, wait 0", res.shared, res.wait, res.err)
		}
		if res := <-joinWaiting; res.err != nil || !res.shared || res.wait != work*3/4 {
			t.Errorf("joiner of a waiting job: shared %v, wait %v, %v; want shared, wait %v", res.shared, res.wait, res.err, work*3/4)
		}
	})
}

func TestAWaitingJobLeavesWithItsLastCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(sleepQueue(1, 2))
		var r recorder
		blocker := startInOrder(q, &r, "blocker")[0]
		ctx, cancel := context.WithCancel(context.Background())
		leaving := start(ctx, q, "leaving", r.fn("leaving"))
		synctest.Wait()
		next := startInOrder(q, &r, "next")[0]
		wantStats(t, q, queue.Stats{Waiting: 2, Capacity: 2, Busy: 1, Cores: 1})

		time.Sleep(work / 2)
		cancel()
		synctest.Wait()
		res, ok := ready(leaving)
		if !ok {
			t.Fatal("Do did not return when its context was canceled")
		}
		if !errors.Is(res.err, context.Canceled) || res.wait != work/2 || res.at != work/2 {
			t.Errorf("leaving: %v, wait %v after %v; want context.Canceled, wait %v", res.err, res.wait, res.at, work/2)
		}
		wantStats(t, q, queue.Stats{Waiting: 1, Capacity: 2, Busy: 1, Cores: 1})

		// The freed place is usable, and the next job advances to the head.
		after := startInOrder(q, &r, "after")[0]
		for _, c := range []<-chan result{blocker, next, after} {
			if res := <-c; res.err != nil {
				t.Errorf("%s: %v", res.key, res.err)
			}
		}
		wantRan(t, &r, "blocker", "next", "after")
	})
}

func TestAWaitingJobStaysWhileACallerRemains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(sleepQueue(1, 1))
		var r recorder
		blocker := startInOrder(q, &r, "blocker")[0]
		ctx, cancel := context.WithCancel(context.Background())
		first := start(ctx, q, "a", r.fn("a"))
		synctest.Wait()
		second := start(context.Background(), q, "a", r.fn("a"))
		synctest.Wait()

		cancel()
		if res := <-first; !errors.Is(res.err, context.Canceled) {
			t.Fatalf("canceled caller: %v, want context.Canceled", res.err)
		}
		wantStats(t, q, queue.Stats{Waiting: 1, Capacity: 1, Busy: 1, Cores: 1})
		if res := <-second; res.err != nil || !res.shared || string(res.val) != "value of a" || res.at != 2*work {
			t.Errorf("remaining caller: %q, shared %v, %v after %v", res.val, res.shared, res.err, res.at)
		}
		<-blocker
		wantRan(t, &r, "blocker", "a")
	})
}

func TestAStartedJobRunsToTheEndWithoutCallers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var held []time.Duration
		opts := sleepQueue(1, 0)
		opts.Observe = func(d time.Duration) {
			mu.Lock()
			held = append(held, d)
			mu.Unlock()
		}
		q := queue.New(opts)
		var r recorder
		ctx, cancel := context.WithCancel(context.Background())
		c := start(ctx, q, "k", r.fn("k"))
		time.Sleep(work / 2)
		cancel()
		synctest.Wait()
		res, ok := ready(c)
		if !ok || !errors.Is(res.err, context.Canceled) || res.wait != 0 {
			t.Fatalf("caller of a running job: ready %v, %v, wait %v; want context.Canceled at once, wait 0", ok, res.err, res.wait)
		}
		wantRan(t, &r)
		wantStats(t, q, queue.Stats{Busy: 1, Cores: 1})

		time.Sleep(work)
		synctest.Wait()
		wantRan(t, &r, "k")
		wantStats(t, q, queue.Stats{Cores: 1})
		mu.Lock()
		defer mu.Unlock()
		if len(held) != 1 || held[0] != work {
			t.Errorf("Observe got %v, want [%v]", held, work)
		}
	})
}

func TestACanceledContextStartsNoJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(sleepQueue(1, 0))
		var r recorder
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, _, err := q.Do(ctx, "k", r.fn("k")); !errors.Is(err, context.Canceled) {
			t.Fatalf("Do = %v, want context.Canceled", err)
		}
		synctest.Wait()
		wantRan(t, &r)
		wantStats(t, q, queue.Stats{Cores: 1})
	})
}

func TestFnErrorsAndPanicsReachEveryCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(sleepQueue(1, 2))
		errBoom := errors.New("boom")
		failing := func() ([]byte, error) { return nil, errBoom }
		panicking := func() ([]byte, error) { panic("kaboom") }

		a1 := start(context.Background(), q, "a", failing)
		a2 := start(context.Background(), q, "a", failing)
		p := start(context.Background(), q, "p", panicking)
		var r recorder
		after := start(context.Background(), q, "after", r.fn("after"))

		for _, c := range []<-chan result{a1, a2} {
			if res := <-c; !errors.Is(res.err, errBoom) {
				t.Errorf("a: %v, want %v", res.err, errBoom)
			}
		}
		if res := <-p; res.err == nil || !strings.Contains(res.err.Error(), "kaboom") {
			t.Errorf("panicking fn: %v, want an error naming the panic", res.err)
		}
		// The panicking job gave its core back.
		if res := <-after; res.err != nil {
			t.Errorf("after: %v", res.err)
		}
	})
}

func TestDrainFinishesTheWorkAndRefusesNewJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(sleepQueue(1, 2))
		var r recorder
		cs := startInOrder(q, &r, "running", "waiting")
		drained := make(chan error, 1)
		go func() { drained <- q.Drain(context.Background()) }()
		synctest.Wait()
		select {
		case err := <-drained:
			t.Fatalf("Drain returned %v while jobs were left", err)
		default:
		}

		if _, _, _, err := q.Do(context.Background(), "new", r.fn("new")); !errors.Is(err, queue.ErrDraining) {
			t.Fatalf("a new key while draining: %v, want ErrDraining", err)
		}
		joiner := start(context.Background(), q, "waiting", r.fn("waiting"))

		if err := <-drained; err != nil {
			t.Fatalf("Drain = %v", err)
		}
		for _, c := range append(cs, joiner) {
			if res := <-c; res.err != nil {
				t.Errorf("%s: %v", res.key, res.err)
			}
		}
		wantRan(t, &r, "running", "waiting")

		if err := q.Drain(context.Background()); err != nil {
			t.Fatalf("second Drain = %v", err)
		}
		if _, _, _, err := q.Do(context.Background(), "running", r.fn("running")); !errors.Is(err, queue.ErrDraining) {
			t.Fatalf("a new job after draining: %v, want ErrDraining", err)
		}
	})
}

func TestDrainTakesAsLongAsTheWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(sleepQueue(1, 1))
		var r recorder
		startInOrder(q, &r, "a", "b")
		begin := time.Now()
		if err := q.Drain(context.Background()); err != nil {
			t.Fatalf("Drain = %v", err)
		}
		if d := time.Since(begin); d != 2*work {
			t.Fatalf("Drain took %v, want %v", d, 2*work)
		}
	})
}

func TestDrainOfAnIdleQueueReturnsAtOnce(t *testing.T) {
	q := queue.New(sleepQueue(1, 1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := q.Drain(ctx); err != nil {
		t.Fatalf("Drain = %v", err)
	}
	var r recorder
	if _, _, _, err := q.Do(context.Background(), "k", r.fn("k")); !errors.Is(err, queue.ErrDraining) {
		t.Fatalf("Do after Drain = %v, want ErrDraining", err)
	}
}

func TestDrainGivesUpWhenItsContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.New(sleepQueue(1, 1))
		var r recorder
		cs := startInOrder(q, &r, "a")
		ctx, cancel := context.WithTimeout(context.Background(), work/10)
		defer cancel()
		if err := q.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Drain = %v, want context.DeadlineExceeded", err)
		}
		wantStats(t, q, queue.Stats{Capacity: 1, Busy: 1, Cores: 1})
		if res := <-cs[0]; res.err != nil {
			t.Fatalf("a: %v", res.err)
		}
		if err := q.Drain(context.Background()); err != nil {
			t.Fatalf("second Drain = %v", err)
		}
	})
}

func BenchmarkDo(b *testing.B) {
	q := queue.New(queue.Options{Cores: 1, QueueSize: 1, Mode: queue.Sleep})
	val := []byte("value")
	fn := func() ([]byte, error) { return val, nil }
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := q.Do(ctx, "key", fn); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDoParallel(b *testing.B) {
	q := queue.New(queue.Options{Cores: runtime.GOMAXPROCS(0), QueueSize: 1 << 20, Mode: queue.Sleep})
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "key" + strconv.Itoa(i)
	}
	val := []byte("value")
	fn := func() ([]byte, error) { return val, nil }
	ctx := context.Background()
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, _, err := q.Do(ctx, keys[next.Add(1)%uint64(len(keys))], fn); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkDoShared(b *testing.B) {
	q := queue.New(queue.Options{Cores: 1, QueueSize: 1 << 20, WorkTime: time.Microsecond, Mode: queue.Sleep})
	val := []byte("value")
	fn := func() ([]byte, error) { return val, nil }
	ctx := context.Background()
	var shared atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			got, s, _, err := q.Do(ctx, "hot", fn)
			if err != nil || !bytes.Equal(got, val) {
				b.Errorf("Do = %q, %v", got, err)
				return
			}
			if s {
				shared.Add(1)
			}
		}
	})
	b.ReportMetric(float64(shared.Load())/float64(b.N), "shared/op")
}
