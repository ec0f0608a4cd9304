package fleet

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/gameday"
)

func TestSharedCache(t *testing.T) {
	f := startFleet(t, Options{Instances: 3, Redis: true, ServerINI: "WorkMode = sleep\nWorkTime = 300ms\n"})
	urls := f.InstanceURLs()
	const key = "SUNhbkhhelVuaWNvcm4/LTg5OTk="
	path := "/calc?input=" + url.QueryEscape(key)

	st, xc, want := get(t, urls[0]+path)
	if st != 200 || xc != "MISS" {
		t.Fatalf("instance 0: %d X-Cache %q, want 200 MISS", st, xc)
	}
	// Writes to Redis leave the request path through a queue: wait until the entry
	// is there before asking the others.
	waitRedisKey(t, f)
	for i, u := range urls[1:] {
		st, xc, body := get(t, u+path)
		if st != 200 || xc != "HIT" || body != want {
			t.Errorf("instance %d: %d X-Cache %q (body equal: %v), want 200 HIT with instance 0's answer", i+1, st, xc, body == want)
		}
	}
	st, xc, body := get(t, f.URL()+path)
	if st != 200 || xc != "HIT" || body != want {
		t.Errorf("through nginx: %d X-Cache %q (body equal: %v), want 200 HIT with instance 0's answer", st, xc, body == want)
	}
}

// waitRedisKey waits until Redis holds one unicorn entry.
func waitRedisKey(t *testing.T, f *Fleet) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := redisKeys(f.Redis().Addr)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis %s: no unicorn:* key 5 s after the miss was answered", f.Redis().Addr)
		}
		time.Sleep(10 * time.Millisecond) // Redis cannot announce a write
	}
}

func TestBalancing(t *testing.T) {
	// One core and 5 places in line each: 9 concurrent misses fit the fleet only if
	// nginx spreads them; one instance alone would refuse 3 of them.
	f := startFleet(t, Options{Instances: 3, ServerINI: "WorkMode = sleep\nWorkTime = 600ms\nCores = 1\nQueueSize = 5\n"})
	const n = 9
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			resp, err := http.Get(fmt.Sprintf("%s/calc?input=balance-%d", f.URL(), i))
			if err != nil {
				errs <- err.Error()
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "MISS" {
				errs <- fmt.Sprintf("key balance-%d: %s X-Cache %q, want 200 MISS", i, resp.Status, resp.Header.Get("X-Cache"))
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	lines, err := ReadAccessLog(f.NginxLog(), 0)
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, l := range lines {
		if strings.Contains(l.Request, "/calc?") {
			per[l.Answered()]++
		}
	}
	t.Logf("misses answered per instance: %v", per)
	// Each of nginx's 2 workers balances the connections it accepted on its own, so
	// the split need not be 3/3/3, but every instance gets at least 2 of 9.
	for i, u := range f.InstanceURLs() {
		if got := per[strings.TrimPrefix(u, "http://")]; got < 2 {
			t.Errorf("instance %d (%s) answered %d of %d concurrent misses, want at least 2: %v", i, u, got, n, per)
		}
	}
}

// load runs gameday against the fleet's nginx in the background.
type load struct {
	start time.Time
	done  chan struct{}
	sum   gameday.Summary
	err   error
	mu    sync.Mutex
	snaps []gameday.Snapshot
}

func startLoad(f *Fleet, o gameday.Options) *load {
	o.Targets = []string{f.URL()}
	l := &load{done: make(chan struct{}), start: time.Now()}
	go func() {
		defer close(l.done)
		l.sum, l.err = gameday.Run(context.Background(), o, func(s gameday.Snapshot) {
			l.mu.Lock()
			l.snaps = append(l.snaps, s)
			l.mu.Unlock()
		})
	}()
	return l
}

func (l *load) wait(t *testing.T) gameday.Summary {
	t.Helper()
	<-l.done
	if l.err != nil {
		t.Fatalf("gameday: %v", l.err)
	}
	return l.sum
}

// lastBad is the elapsed time of the first snapshot by which every error, timeout
// and wrong answer of the run had been counted: the last one came within the second
// before. It is 0 for a run without any.
func (l *load) lastBad() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.snaps) == 0 {
		return 0
	}
	bad := func(s gameday.Snapshot) int64 { return s.Errors + s.Timeouts + s.Wrong }
	final := bad(l.snaps[len(l.snaps)-1])
	if final == 0 {
		return 0
	}
	for _, s := range l.snaps {
		if bad(s) == final {
			return s.Elapsed
		}
	}
	return l.snaps[len(l.snaps)-1].Elapsed
}

// byStatus counts the answers other than 200 that gameday saw, by kind.
func byStatus(s gameday.Summary) map[string]int64 {
	out := map[string]int64{}
	for k, v := range s.ByStatus {
		if k != "200" {
			out[k] = v
		}
	}
	return out
}

// rejections counts the /calc 503s the instances logged, over every run of every
// instance (the logs of restarted runs stay): those before the run's "shutdown
// begins" line are queue-full refusals, those after it draining refusals (once a
// server drains, a miss can only be refused as draining).
func rejections(t *testing.T, f *Fleet) (queueFull, draining int) {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(f.o.Dir, "calcserver-*", "calcserver.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no instance logs under %s: %v", f.o.Dir, err)
	}
	for _, p := range logs {
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		inDrain := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.Contains(line, `msg="shutdown begins"`):
				inDrain = true
			case strings.Contains(line, "msg=access") && strings.Contains(line, `path="/calc?`) && strings.Contains(line, " status=503 "):
				if inDrain {
					draining++
				} else {
					queueFull++
				}
			}
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	return queueFull, draining
}

// nginxVerdicts checks that nginx itself refused nothing: every answer a client got
// came from an instance (no 502 "no live upstreams" or lost connection, no 504), and
// returns the 503s, the requests nginx retried on another instance, and every line.
func nginxVerdicts(t *testing.T, f *Fleet) (n503, retried int, lines []AccessLine) {
	t.Helper()
	lines, err := ReadAccessLog(f.NginxLog(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for _, l := range lines {
		last := ""
		if len(l.UpstreamStatus) > 0 {
			last = l.UpstreamStatus[len(l.UpstreamStatus)-1]
		}
		switch {
		case l.Status == 200:
		case l.Status == 503 && last == "503":
			n503++
		default:
			bad = append(bad, l.Raw)
		}
		if l.Retried() {
			retried++
		}
	}
	if len(bad) > 0 {
		t.Errorf("nginx gave %d answers of its own (not 200, not an instance's 503), the first:\n%s", len(bad), strings.Join(bad[:min(5, len(bad))], "\n"))
	}
	return n503, retried, lines
}

// TestRollingRestart restarts every instance under a steady load the way Restart
// does it behind stock nginx (out of the upstream and nginx reloaded, SIGTERM, a new
// process, back in): no answer but a right 200, none refused by an instance or made
// up by nginx, and each restarted instance answers again.
func TestRollingRestart(t *testing.T) {
	// 8 cores of 200 ms jobs per instance: two instances carry the load while the
	// third restarts. ShutdownDelay 0: nginx is told before the SIGTERM.
	const n = 3
	f := startFleet(t, Options{Instances: n, Redis: true, ServerINI: "WorkMode = sleep\nWorkTime = 200ms\nCores = 8\nQueueSize = 20\nShutdownDelay = 0s\nShutdownTimeout = 5s\n"})
	const rate = 40
	const loadFor = 9 * time.Second
	ld := startLoad(f, gameday.Options{Rate: rate, Duration: loadFor, Timeout: 3 * time.Second, Keys: 300, Seed: 2})

	time.Sleep(time.Second) // steady load before the roll
	rollStart := time.Since(ld.start)
	for i := range n {
		t0 := time.Now()
		if err := f.Restart(t.Context(), i); err != nil {
			t.Fatal(err)
		}
		t.Logf("instance %d restarted in %v", i, time.Since(t0).Round(time.Millisecond))
	}
	rollEnd := time.Since(ld.start)
	if rollEnd > loadFor-time.Second {
		t.Errorf("the roll ended %.1f s into a %v load; the load must outlast it", rollEnd.Seconds(), loadFor)
	}
	r := finishRoll(t, f, ld, rollStart, rollEnd)
	sum, n503, queueFull, draining := r.sum, r.n503, r.queueFull, r.draining

	if sum.Wrong != 0 || sum.Timeouts != 0 || sum.Dropped != 0 {
		t.Errorf("%d wrong answers, %d timeouts, %d dropped; want none", sum.Wrong, sum.Timeouts, sum.Dropped)
	}
	if other := byStatus(sum); len(other) != 0 {
		t.Errorf("answers other than 200: %v; a roll nginx is told of costs none", other)
	}
	if n503 != 0 || queueFull != 0 || draining != 0 {
		t.Errorf("nginx logged %d 503s, the instances %d queue-full and %d draining; want none", n503, queueFull, draining)
	}
	if sum.Requests < int64(rate*loadFor/time.Second)*9/10 || sum.Correct != sum.Requests {
		t.Errorf("%d requests sent, %d correct", sum.Requests, sum.Correct)
	}
	// Every restarted instance is back in rotation.
	for i, u := range f.InstanceURLs() {
		if r.after[strings.TrimPrefix(u, "http://")] == 0 {
			t.Errorf("nginx sent restarted instance %d no request after the roll: %v", i, r.after)
		}
	}
}

// roll is what a rolling restart cost, from gameday and the logs.
type roll struct {
	sum                       gameday.Summary
	n503, queueFull, draining int
	after                     map[string]int // 200s after the roll by the instance that gave them
}

// finishRoll waits for the load to end, closes the fleet (which flushes the
// instances' logs), checks nginx made up no answer, counts the 503s, and logs the
// figures of the roll, which ran from rollStart to rollEnd into the load.
func finishRoll(t *testing.T, f *Fleet, ld *load, rollStart, rollEnd time.Duration) roll {
	t.Helper()
	offAfterRoll := f.LogOffset()
	var r roll
	r.sum = ld.wait(t)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var retried int
	r.n503, retried, _ = nginxVerdicts(t, f)
	r.queueFull, r.draining = rejections(t, f)
	sum := r.sum
	t.Logf("roll %.1f–%.1f s; requests %d, 200 %d, 503 %d (queue full %d, draining %d), other %v, wrong %d, timeouts %d, dropped %d; nginx retried %d; p50 %.1f ms, p99 %.1f ms, max %.1f ms",
		rollStart.Seconds(), rollEnd.Seconds(), sum.Requests, sum.ByStatus["200"], sum.ByStatus["503"], r.queueFull, r.draining, byStatus(sum),
		sum.Wrong, sum.Timeouts, sum.Dropped, retried, sum.Latency.P50, sum.Latency.P99, sum.Latency.Max)
	after, err := ReadAccessLog(f.NginxLog(), offAfterRoll)
	if err != nil {
		t.Fatal(err)
	}
	r.after = map[string]int{}
	for _, l := range after {
		if l.Status == 200 {
			r.after[l.Answered()]++
		}
	}
	return r
}

// TestRollingRestartInPlace restarts every instance with SIGTERM while nginx still
// lists it, as a plain `systemctl restart` does: it costs at most a few draining 503s
// (a miss that reaches the instance before it closes its listener) and nginx keeps a
// restarted instance out for fail_timeout, so the roll waits that long between
// instances.
func TestRollingRestartInPlace(t *testing.T) {
	// ShutdownDelay = 0s as deploy/compose-server.ini has it behind nginx: stock nginx
	// never sees /healthcheck turn 503, so a delay would only postpone the stop.
	// 8 cores of 200 ms jobs per instance: one instance alone carries the whole load
	// while the other restarts.
	f := startFleet(t, Options{Instances: 2, Redis: true, ServerINI: "WorkMode = sleep\nWorkTime = 200ms\nCores = 8\nQueueSize = 20\nShutdownDelay = 0s\nShutdownTimeout = 5s\n"})
	pause := f.FailTimeout() + time.Second
	const rate = 40
	ld := startLoad(f, gameday.Options{Rate: rate, Duration: 2*time.Second + pause + 5*time.Second, Timeout: 3 * time.Second, Keys: 300, Seed: 1})

	time.Sleep(time.Second) // steady load before the roll
	var rollStart, rollEnd time.Duration
	for i := range 2 {
		if i > 0 {
			// nginx took instance i-1 out for fail_timeout when its restart refused
			// connections: wait until it is back, or nginx may find no live instance.
			time.Sleep(pause)
		}
		t0 := time.Now()
		if i == 0 {
			rollStart = t0.Sub(ld.start)
		}
		if err := f.RestartInPlace(t.Context(), i); err != nil {
			t.Fatal(err)
		}
		t.Logf("instance %d restarted in %v", i, time.Since(t0).Round(time.Millisecond))
		rollEnd = time.Since(ld.start)
	}
	r := finishRoll(t, f, ld, rollStart, rollEnd)
	sum, n503, queueFull, draining := r.sum, r.n503, r.queueFull, r.draining

	if sum.Wrong != 0 || sum.Timeouts != 0 {
		t.Errorf("%d wrong answers, %d timeouts; want none", sum.Wrong, sum.Timeouts)
	}
	for k, v := range byStatus(sum) {
		if k != "503" {
			t.Errorf("%d answers %s; only 200 and 503 are allowed", v, k)
		}
	}
	if sum.Requests < rate*int64(2*time.Second+pause+5*time.Second)/int64(time.Second)*9/10 {
		t.Errorf("only %d requests sent", sum.Requests)
	}
	// Every 503 the client saw is one an instance logged: none made up on the way.
	if got := int(sum.ByStatus["503"]); got != n503 || got != queueFull+draining {
		t.Errorf("gameday saw %d 503s, nginx logged %d from instances, the instances logged %d (queue full %d, draining %d); want all equal", got, n503, queueFull+draining, queueFull, draining)
	}
	// The roll costs no capacity: nothing was refused for a full queue. A miss that
	// reaches a draining instance between SIGTERM and the close of its listener
	// (a job's time, 200 ms) is refused 503 draining, as deploy/nginx.conf says.
	if queueFull != 0 {
		t.Errorf("%d queue-full 503s during the roll; the fleet has headroom for it", queueFull)
	}
	if draining > 5 {
		t.Errorf("%d draining 503s; a miss can meet a draining instance only within a job's time after SIGTERM", draining)
	}
	// Restarted instance 0 is back in rotation (instance 1's restart ends the roll).
	if got := r.after[strings.TrimPrefix(f.InstanceURLs()[0], "http://")]; got == 0 {
		t.Errorf("nginx sent restarted instance 0 no request after the roll: %v", r.after)
	}
}

func TestInstanceLoss(t *testing.T) {
	// 500 ms jobs, 16 cores each: two instances carry the load the three shared, and
	// requests are in flight on the one killed.
	f := startFleet(t, Options{Instances: 3, Redis: true, ServerINI: "WorkMode = sleep\nWorkTime = 500ms\nCores = 16\nQueueSize = 20\n"})
	const rate, victim = 40, 1
	ld := startLoad(f, gameday.Options{Rate: rate, Duration: 7 * time.Second, Timeout: 3 * time.Second, Keys: 300, Seed: 1})
	victimAddr := strings.TrimPrefix(f.InstanceURLs()[victim], "http://")

	time.Sleep(2500 * time.Millisecond)
	off := f.LogOffset()
	if err := f.Kill(victim); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Since(ld.start)
	sum := ld.wait(t)
	lastBad := ld.lastBad()

	_, retried, _ := nginxVerdicts(t, f)
	after, err := ReadAccessLog(f.NginxLog(), off)
	if err != nil {
		t.Fatal(err)
	}
	// A request on the killed instance's connection when it died (nginx: "upstream
	// prematurely closed connection"), or sent to it afterwards (connection refused),
	// is sent again to another instance: nginx has written nothing to the client yet.
	var rescued int
	for _, l := range after {
		if l.Retried() && l.Upstream[0] == victimAddr && l.Status == 200 {
			rescued++
		}
		if l.Answered() == victimAddr && l.Status == 200 {
			t.Errorf("the killed instance answered: %s", l.Raw)
		}
	}
	bad := sum.Errors + sum.Timeouts + sum.Wrong
	since := "none"
	if lastBad > 0 {
		since = fmt.Sprintf("%.1f s", (lastBad - killedAt).Seconds())
	}
	t.Logf("killed instance %d at %.1f s; requests %d, 200 %d, 503 %d, errors %d (%v), timeouts %d, wrong %d; last error within the second before kill + %s; nginx retried %d requests (%d first sent to the killed instance, answered 200 by another); p99 %.1f ms, max %.1f ms",
		victim, killedAt.Seconds(), sum.Requests, sum.ByStatus["200"], sum.ByStatus["503"], sum.Errors, sum.ByError, sum.Timeouts, sum.Wrong, since, retried, rescued, sum.Latency.P99, sum.Latency.Max)

	if sum.Wrong != 0 {
		t.Errorf("%d wrong answers", sum.Wrong)
	}
	if nonQueue := bad - sum.ByStatus["503"]; nonQueue > 3 {
		t.Errorf("%d errors other than 503 (%v) and %d timeouts after losing 1 of 3 instances; want at most 3", sum.Errors-sum.ByStatus["503"], sum.ByError, sum.Timeouts)
	}
	if sum.ByStatus["503"] != 0 {
		t.Errorf("%d queue-full 503s; two instances have room for the load", sum.ByStatus["503"])
	}
	// Snapshots come once a second: an error counted in the snapshot at lastBad came
	// within the second before it.
	if lastBad > 0 && lastBad-killedAt > 3*time.Second {
		t.Errorf("errors went on until %.1f s after the kill (snapshot resolution 1 s); want none later than 2 s", (lastBad - killedAt).Seconds())
	}
	if rescued == 0 {
		t.Errorf("nginx retried no request first sent to the killed instance; did the kill reach it? (%d lines after the kill)", len(after))
	}
}
