package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/gameday"
)

// Targets for a burst beyond Cores+QueueSize: how fast the refusals (503) come, and
// how fast /healthcheck still answers meanwhile.
const (
	rejectP99Target = 5 * time.Millisecond
	healthP99Target = 10 * time.Millisecond
	// heapSlack is how far above its idle level the heap may stay after a burst and
	// still count as returned: the admitted answers stay in the memory tier, and the
	// runtime keeps some buffers of its own.
	heapSlack = 1 << 20
)

// dialParallel bounds how many connections the probe opens at once before a burst.
const dialParallel = 64

// OverloadOptions configure Overload.
type OverloadOptions struct {
	Calcserver       string
	Cores, QueueSize int
	WorkTime         time.Duration // long enough that no core frees during the burst
	Factor           int           // the burst is Factor × (Cores+QueueSize) requests
	Rounds           int
	Settle           time.Duration // how long goroutines may take to return to idle
	Bare             string        // the bareserver binary for the baseline burst; "" = none
	CPUProfile       string        // if set, the server's CPU profile of round N goes to CPUProfile-N.pprof
	Dir              string        // for the server's files
	Progress         io.Writer     // one line per round; nil = none

	tag int64 // makes the keys of one run new to every server
}

// overloadRound is what one burst measured.
type overloadRound struct {
	burst, admitted, rejected int
	burstTook                 time.Duration // from the release to the last expected 503
	reject                    latency       // the 503s, as the client saw them
	serverReject              latency       // the 503s' durations in the access log
	health                    latency       // /healthcheck polls during the burst
	idle, after               usage
	settled                   bool
	settleTook                time.Duration
	serverCPU, probeCPU       time.Duration // CPU time spent during the burst

	// The same burst at the bare net/http baseline: every request answered 200.
	bare              latency
	bareTook, bareCPU time.Duration
}

// Overload starts calcserver with o's Cores, QueueSize and WorkTime (sleep mode, the
// memory tier) and, each round, sends Factor × (Cores+QueueSize) never-seen keys at
// once, each on a connection of its own opened beforehand. Every request not admitted
// must be answered 503 with Retry-After and a JSON error, every admitted one 200 with
// the right answer. Meanwhile /healthcheck is polled back to back on its own
// connection until the expected 503s are in. Afterwards the server's goroutines must
// return to their idle count within o.Settle, and its heap (after a collection) to
// its idle level.
func Overload(ctx context.Context, o OverloadOptions) (report, []overloadRound, error) {
	if o.Cores < 1 || o.QueueSize < 0 || o.Factor < 2 || o.Rounds < 1 || o.WorkTime <= 0 {
		return report{}, nil, fmt.Errorf("overload: need cores ≥ 1, queue ≥ 0, factor ≥ 2, rounds ≥ 1 and a positive work time (got %d, %d, %d, %d, %v)",
			o.Cores, o.QueueSize, o.Factor, o.Rounds, o.WorkTime)
	}
	if _, err := raiseOpenFiles(); err != nil {
		return report{}, nil, err
	}
	s, err := startServer(ctx, o.Calcserver, o.Dir,
		fmt.Sprintf("Cores = %d", o.Cores), fmt.Sprintf("QueueSize = %d", o.QueueSize),
		fmt.Sprintf("WorkTime = %v", o.WorkTime), "WorkMode = sleep")
	if err != nil {
		return report{}, nil, err
	}
	defer func() { _ = s.stop() }()
	var bare *bareServer
	if o.Bare != "" {
		if bare, err = startBare(ctx, o.Bare, o.Dir); err != nil {
			return report{}, nil, err
		}
		defer bare.stop()
	}
	var rep report
	rounds := make([]overloadRound, 0, o.Rounds)
	o.tag = time.Now().UnixNano()
	for i := range o.Rounds {
		r, err := overloadOnce(ctx, s, bare, o, i, &rep)
		if err != nil {
			return report{}, nil, fmt.Errorf("overload round %d: %w", i+1, err)
		}
		rounds = append(rounds, r)
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "overload round %d/%d: %d × 200, %d × 503, 503 p99 %s ms, healthcheck p99 %s ms, goroutines %d → %d\n",
				i+1, o.Rounds, r.admitted, r.rejected, ms(r.reject.p99), ms(r.health.p99), r.idle.goroutines, r.after.goroutines)
		}
	}
	if err := s.stop(); err != nil {
		return report{}, nil, err
	}
	overloadTables(&rep, o, rounds)
	return rep, rounds, nil
}

func overloadOnce(ctx context.Context, s *server, bare *bareServer, o OverloadOptions, round int, rep *report) (overloadRound, error) {
	prefix := fmt.Sprintf("overload-%d-%d-", o.tag, round)
	admit := o.Cores + o.QueueSize
	n := o.Factor * admit
	targets := make([]string, n)
	for i := range targets {
		targets[i] = "/calc?input=" + url.QueryEscape(prefix+fmt.Sprint(i))
	}
	// The admitted jobs take ceil(admit/Cores) work times one after another.
	timeout := time.Duration(math.Ceil(float64(admit)/float64(o.Cores)))*o.WorkTime + 30*time.Second

	var r overloadRound
	if bare != nil {
		// The same burst at the baseline first: every request is answered at once.
		b, err := runBurst(ctx, bare.Addr(), bare.Pid(), targets, n, timeout, nil, nil)
		if err != nil {
			return overloadRound{}, fmt.Errorf("the baseline: %w", err)
		}
		var took []time.Duration
		for i, a := range b.answers {
			if b.errs[i] != nil {
				return overloadRound{}, fmt.Errorf("the baseline: %w", b.errs[i])
			}
			took = append(took, a.took)
		}
		r.bare, r.bareTook, r.bareCPU = latencies(took), b.took, b.serverCPU
	}

	idle, err := s.usage(ctx)
	if err != nil {
		return overloadRound{}, err
	}
	health := &http.Client{
		Timeout:   scrapeTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true},
	}
	defer health.CloseIdleConnections()
	healthURL := "http://" + s.Addr() + "/healthcheck"
	if _, err := getHealth(ctx, health, healthURL); err != nil { // opens its connection
		return overloadRound{}, err
	}
	// A profile starts once the connections are open, so it shows the burst only.
	var prof *profiler
	var ready func() error
	if o.CPUProfile != "" {
		ready = func() (err error) {
			prof, err = s.startProfile(ctx, o.WorkTime)
			return err
		}
	}
	b, err := runBurst(ctx, s.Addr(), s.Pid(), targets, n-admit, timeout,
		func() (time.Duration, error) { return getHealth(ctx, health, healthURL) }, ready)
	if err != nil {
		return overloadRound{}, err
	}
	health.CloseIdleConnections()
	if prof != nil {
		if err := prof.save(fmt.Sprintf("%s-%d.pprof", o.CPUProfile, round+1)); err != nil {
			return overloadRound{}, err
		}
	}

	r.burst, r.burstTook, r.idle, r.health = n, b.took, idle, latencies(b.polls)
	r.serverCPU, r.probeCPU = b.serverCPU, b.probeCPU
	var rejectTimes []time.Duration
	retry := fmt.Sprint(max(1, int(math.Ceil(o.WorkTime.Seconds()))))
	var bad []string
	for i, a := range b.answers {
		key := prefix + fmt.Sprint(i)
		switch {
		case b.errs[i] != nil:
			bad = append(bad, b.errs[i].Error())
		case a.status == http.StatusOK:
			r.admitted++
			if !calc.Verify(calc.Token, 1, []byte(key), a.body) {
				bad = append(bad, "a wrong answer: "+gameday.WrongReason(calc.Token, 1, key, a.body))
			}
		case a.status == http.StatusServiceUnavailable:
			r.rejected++
			rejectTimes = append(rejectTimes, a.took)
			if why := checkRejection(a, retry); why != "" {
				bad = append(bad, fmt.Sprintf("the 503 for key %s %s", key, why))
			}
		default:
			bad = append(bad, fmt.Sprintf("key %s answered %d (want 200 or 503): %.200q", key, a.status, a.body))
		}
	}
	r.reject = latencies(rejectTimes)
	if len(bad) > 0 {
		rep.failf("%d of %d requests of a burst were not answered as they should be; the first: %s", len(bad), n, bad[0])
	}
	// Exactly Cores+QueueSize are admitted, unless a core freed before the burst was
	// over and took one more.
	if r.admitted != admit && !(b.took >= o.WorkTime && r.admitted > admit) {
		rep.failf("%d of a burst of %d were admitted in %v; Cores %d + QueueSize %d should be",
			r.admitted, n, b.took.Round(time.Millisecond), o.Cores, o.QueueSize)
	}

	settledAt := 0
	r.settleTook, r.settled, err = pollUntil(ctx, o.Settle, 50*time.Millisecond, func() (bool, error) {
		m, err := s.metrics(ctx)
		settledAt = int(m["go_goroutines"])
		return err == nil && settledAt <= idle.goroutines, err
	})
	if err != nil {
		return overloadRound{}, err
	}
	if r.after, err = s.usage(ctx); err != nil {
		return overloadRound{}, err
	}
	// The goroutines are those the poll saw: the forced collections of usage can
	// leave one of the probe's own connections to the pprof listener open for a while.
	r.after.goroutines = settledAt
	if r.serverReject, err = loggedDurations(s.Log(), prefix, http.StatusServiceUnavailable); err != nil {
		return overloadRound{}, err
	}
	return r, nil
}

// burstResult is what runBurst saw.
type burstResult struct {
	answers []answer
	errs    []error
	took    time.Duration   // from the release to the quickAt-th answer
	polls   []time.Duration // the poll's durations until then
	// serverCPU and probeCPU are the CPU time the server and this process spent
	// from just before the release to the quickAt-th answer.
	serverCPU, probeCPU time.Duration
}

// runBurst opens one connection per target to addr (the server's process pid), calls
// ready (if not nil), then sends every target at once and waits for all the answers.
// Until quickAt answers are in, poll (if not nil) is called back to back.
func runBurst(ctx context.Context, addr string, pid int, targets []string, quickAt int, timeout time.Duration,
	poll func() (time.Duration, error), ready func() error) (burstResult, error) {
	n := len(targets)
	conns, err := dialAll(ctx, addr, n, dialParallel)
	if err != nil {
		return burstResult{}, err
	}
	defer closeAll(conns)
	if ready != nil {
		if err := ready(); err != nil {
			return burstResult{}, err
		}
	}
	b := burstResult{answers: make([]answer, n), errs: make([]error, n)}
	// CPU time is read before the goroutines exist, so that no error can leave them
	// waiting for a release that never comes.
	server0, err := cpuTime(pid)
	if err != nil {
		return burstResult{}, err
	}
	probe0, err := cpuTime(os.Getpid())
	if err != nil {
		return burstResult{}, err
	}
	release := make(chan struct{})
	quick := make(chan struct{}) // closed once quickAt answers are in
	var answered atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-release
			b.answers[i], b.errs[i] = conns[i].get(targets[i], timeout)
			conns[i].close()
			if answered.Add(1) == int64(quickAt) {
				close(quick)
			}
		})
	}
	var pollErr error
	polled := make(chan struct{})
	if poll == nil {
		close(polled)
	} else {
		go func() {
			defer close(polled)
			for {
				took, err := poll()
				if err != nil {
					pollErr = err
					return
				}
				b.polls = append(b.polls, took)
				select {
				case <-quick:
					return
				default:
				}
			}
		}()
	}
	start := time.Now()
	close(release)
	<-quick
	b.took = time.Since(start)
	server1, serr := cpuTime(pid)
	probe1, perr := cpuTime(os.Getpid())
	b.serverCPU, b.probeCPU = server1-server0, probe1-probe0
	wg.Wait()
	<-polled
	if err := errors.Join(serr, perr); err != nil {
		return burstResult{}, err
	}
	return b, pollErr
}

// getHealth reads /healthcheck and returns how long it took; anything but a 200 with
// status "ok" is an error.
func getHealth(ctx context.Context, c *http.Client, u string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", u, err)
	}
	var h struct {
		Status string `json:"status"`
	}
	err = json.NewDecoder(resp.Body).Decode(&h)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %s: the body is not JSON: %w", u, resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || h.Status != "ok" {
		return 0, fmt.Errorf("GET %s: %s, status %q (want 200, \"ok\")", u, resp.Status, h.Status)
	}
	return took, nil
}

// checkRejection says what is wrong with a 503 for a full queue, or "".
func checkRejection(a answer, retry string) string {
	if got := a.header.Get("Retry-After"); got != retry {
		return fmt.Sprintf("has Retry-After %q, want %q", got, retry)
	}
	if got := a.header.Get("Cache-Control"); got != "no-store" {
		return fmt.Sprintf("has Cache-Control %q, want no-store", got)
	}
	var e struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error == nil || *e.Error == "" {
		return fmt.Sprintf("has the body %.200q, want JSON {\"error\":\"…\"}", a.body)
	}
	if !strings.Contains(*e.Error, "queue full") {
		return fmt.Sprintf("says %q, want a queue full error", *e.Error)
	}
	return ""
}

var durationRE = regexp.MustCompile(`(?:^| )duration=(\S+)`)

// loggedDurations reads the access log for the /calc requests whose key starts with
// prefix and that were answered status, and returns their durations as the server
// logged them (from the handler's start to its end, without the time a request spent
// waiting to be read).
func loggedDurations(log, prefix string, status int) (latency, error) {
	b, err := os.ReadFile(log)
	if err != nil {
		return latency{}, fmt.Errorf("read the access log: %w", err)
	}
	want := fmt.Sprintf(" status=%d ", status)
	var d []time.Duration
	for line := range strings.Lines(string(b)) {
		if !strings.Contains(line, "msg=access") || !strings.Contains(line, prefix) || !strings.Contains(line, want) {
			continue
		}
		m := durationRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, err := time.ParseDuration(m[1])
		if err != nil {
			return latency{}, fmt.Errorf("access log %s: duration %q: %w", log, m[1], err)
		}
		d = append(d, v)
	}
	if len(d) == 0 {
		return latency{}, errors.New("the access log " + log + " holds no " + strings.TrimSpace(want) + " line for keys " + prefix + "…")
	}
	return latencies(d), nil
}

func overloadTables(rep *report, o OverloadOptions, rounds []overloadRound) {
	msOf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	med := func(f func(overloadRound) float64) float64 { return medianOf(rounds, f) }
	perReq := func(d time.Duration, r overloadRound) float64 {
		return float64(d) / float64(time.Microsecond) / float64(r.burst)
	}
	withBare := o.Bare != ""

	// The burst, one column per figure.
	type column struct {
		name string
		f    func(overloadRound) float64
		fmt  func(float64) string
		bare bool // a baseline column
	}
	us := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	ratio := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	cols := []column{
		{"200", func(r overloadRound) float64 { return float64(r.admitted) }, num, false},
		{"503", func(r overloadRound) float64 { return float64(r.rejected) }, num, false},
		{"503 p50 (ms)", func(r overloadRound) float64 { return msOf(r.reject.p50) }, msf, false},
		{"503 p99 (ms)", func(r overloadRound) float64 { return msOf(r.reject.p99) }, msf, false},
		{"503 max (ms)", func(r overloadRound) float64 { return msOf(r.reject.max) }, msf, false},
		{"503 p99 in the log (ms)", func(r overloadRound) float64 { return msOf(r.serverReject.p99) }, msf, false},
		{"burst (ms)", func(r overloadRound) float64 { return msOf(r.burstTook) }, msf, false},
		{"bare p99 (ms)", func(r overloadRound) float64 { return msOf(r.bare.p99) }, msf, true},
		{"bare burst (ms)", func(r overloadRound) float64 { return msOf(r.bareTook) }, msf, true},
		{"p99 ratio", func(r overloadRound) float64 { return float64(r.reject.p99) / float64(r.bare.p99) }, ratio, true},
		{"server CPU per request (µs)", func(r overloadRound) float64 { return perReq(r.serverCPU, r) }, us, false},
		{"bare CPU per request (µs)", func(r overloadRound) float64 { return perReq(r.bareCPU, r) }, us, true},
		{"probe CPU per request (µs)", func(r overloadRound) float64 { return perReq(r.probeCPU, r) }, us, false},
		{"healthchecks", func(r overloadRound) float64 { return float64(r.health.n) }, num, false},
		{"healthcheck p99 (ms)", func(r overloadRound) float64 { return msOf(r.health.p99) }, msf, false},
	}
	if !withBare {
		cols = slices.DeleteFunc(cols, func(c column) bool { return c.bare })
	}
	t := table{
		title: fmt.Sprintf("Overload: Cores %d, QueueSize %d, WorkTime %v (sleep), bursts of %d distinct new keys, each on its own connection",
			o.Cores, o.QueueSize, o.WorkTime, o.Factor*(o.Cores+o.QueueSize)),
		header: []string{"round"},
	}
	for _, c := range cols {
		t.header = append(t.header, c.name)
	}
	for i, r := range append(rounds, overloadRound{}) {
		row := []string{fmt.Sprint(i + 1)}
		if i == len(rounds) {
			row[0] = "median"
		}
		for _, c := range cols {
			if i == len(rounds) {
				row = append(row, c.fmt(med(c.f)))
			} else {
				row = append(row, c.fmt(c.f(r)))
			}
		}
		t.rows = append(t.rows, row)
	}
	rep.tables = append(rep.tables, t)

	// After the burst.
	t = table{
		title:  "After each burst, once the admitted jobs finished (after a forced GC)",
		header: []string{"round", "goroutines idle → after", "back in (s)", "heap idle → after (MB)", "RSS idle → after (MB)"},
	}
	settled, heapBack := 0, 0
	for i, r := range rounds {
		back := fmt.Sprintf("%.2f", r.settleTook.Seconds())
		if !r.settled {
			back = fmt.Sprintf("not in %v", o.Settle)
		}
		t.rows = append(t.rows, []string{fmt.Sprint(i + 1), fmt.Sprintf("%d → %d", r.idle.goroutines, r.after.goroutines), back,
			mb(r.idle.heap) + " → " + mb(r.after.heap), mb(r.idle.rss) + " → " + mb(r.after.rss)})
		if r.settled {
			settled++
		}
		if r.after.heap <= r.idle.heap+heapSlack {
			heapBack++
		}
	}
	rep.tables = append(rep.tables, t)

	rejectP99 := med(func(r overloadRound) float64 { return msOf(r.reject.p99) })
	healthP99 := med(func(r overloadRound) float64 { return msOf(r.health.p99) })
	n := len(rounds)
	targets := table{
		header: []string{"target", "figure", "target", "verdict"},
		rows: [][]string{
			{"503 p99, median of the rounds", msf(rejectP99) + " ms", "< " + ms(rejectP99Target) + " ms",
				rep.target(rejectP99 < msOf(rejectP99Target), "503 p99 %s ms ≥ %s ms", msf(rejectP99), ms(rejectP99Target))},
			{"/healthcheck p99 during the burst, median", msf(healthP99) + " ms", "< " + ms(healthP99Target) + " ms",
				rep.target(healthP99 < msOf(healthP99Target), "healthcheck p99 %s ms ≥ %s ms", msf(healthP99), ms(healthP99Target))},
			{"goroutines back to idle", fmt.Sprintf("%d of %d rounds", settled, n), fmt.Sprintf("all, within %v", o.Settle),
				rep.target(settled == n, "goroutines back to idle in %d of %d rounds", settled, n)},
			{"heap back to idle (after a GC, within 1 MiB)", fmt.Sprintf("%d of %d rounds", heapBack, n), "all",
				rep.target(heapBack == n, "heap back to idle in %d of %d rounds", heapBack, n)},
		},
	}
	var bareNote string
	if withBare {
		targets.rows = slices.Insert(targets.rows, 1, []string{"the same burst at a bare net/http server: p99, median",
			msf(med(func(r overloadRound) float64 { return msOf(r.bare.p99) })) + " ms", "baseline", "—"})
		bareNote = "\"bare\" is the same burst (new connections, the same requests) at internal/bareserver, which answers each at once, just before. "
	}
	rep.tables = append(rep.tables, targets)
	rep.notes = append(rep.notes, "The latencies run from writing the request on an already open connection to reading the whole answer; "+
		"\"in the log\" is the server's own duration of the same 503s (its handler only). "+
		"\"burst\" is the time from the release to the last expected 503; /healthcheck is polled back to back on one keep-alive connection meanwhile. "+
		bareNote+"CPU per request is the process's CPU time from the release to the last 503 over the requests of the burst. "+
		"Goroutines, heap (go_memstats_heap_inuse_bytes) and RSS are read after a forced GC, before the burst and once the admitted jobs have finished.")
}
