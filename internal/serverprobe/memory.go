package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/gameday"
)

// Targets for the resident memory: at idle, and holding the idle connections
// (megabytes of 10^6 bytes).
const (
	idleRSSTarget  = 30e6
	connsRSSTarget = 150e6
)

const (
	// quiet is how long the server is left alone before a reading, for the requests
	// just served to finish their bookkeeping.
	quiet = time.Second
	// fdReserve is how many descriptors the probe and the server need besides the
	// idle connections (listeners, log file, scrape connections, …).
	fdReserve = 64
	// sampleSize is how many of the filled keys are asked again to check that the
	// memory tier kept them.
	sampleSize = 1000
	// goroutineSlack is how many of the server's idle goroutines may come and go
	// between two readings.
	goroutineSlack = 5
	// memoryTimeout bounds one request of the memory probe.
	memoryTimeout = 30 * time.Second
)

// MemoryOptions configure Memory.
type MemoryOptions struct {
	Calcserver string
	Conns      int // idle keep-alive connections held open
	Entries    int // distinct keys put in the memory tier
	Workers    int // connections that fill the cache and open the idle ones
	Rounds     int
	Bare       string // the bareserver binary, measured with as many idle connections first; "" = none
	// HeapProfile, if set, receives the server's heap profile with the idle
	// connections open, of round N in HeapProfile-N.pprof.
	HeapProfile string
	Dir         string
	Progress    io.Writer
}

// memoryRound is what one round measured.
type memoryRound struct {
	fdLimit int // the server's soft limit on open files

	idleRSS     float64 // VmRSS a second after the start, before any request
	connsRSS    float64 // VmRSS a second after the last idle connection opened
	idle, conns usage   // before and with the idle connections (after a GC)

	bareIdleRSS, bareConnsRSS float64 // the same of the bare net/http baseline

	fillBefore, fillAfter usage
	fillTook              time.Duration
	misses                float64 // calcserver_calc_answers_total{cache="MISS"} rise during the fill
	sampleHits            int     // of the sample asked again
	sample                int
}

// Memory measures, each round on fresh calcserver processes: the RSS at idle after the
// start; the RSS with o.Conns idle keep-alive connections open, each after one request
// (a cache hit); and, on a server with 1024 cores and a WorkTime of 1ms, the heap and
// RSS that o.Entries distinct keys in the memory tier cost.
func Memory(ctx context.Context, o MemoryOptions) (report, []memoryRound, error) {
	if o.Conns < 1 || o.Entries < 1 || o.Workers < 1 || o.Rounds < 1 {
		return report{}, nil, fmt.Errorf("memory: need conns, entries, workers and rounds ≥ 1 (got %d, %d, %d, %d)", o.Conns, o.Entries, o.Workers, o.Rounds)
	}
	limit, err := raiseOpenFiles()
	if err != nil {
		return report{}, nil, err
	}
	if need := uint64(o.Conns + o.Workers + fdReserve); limit < need {
		return report{}, nil, fmt.Errorf("memory: %d connections need %d open files, but this process may open %d (raise the hard limit: ulimit -Hn)", o.Conns, need, limit)
	}
	var rep report
	rounds := make([]memoryRound, 0, o.Rounds)
	for i := range o.Rounds {
		r, err := memoryOnce(ctx, o, i, &rep)
		if err != nil {
			return report{}, nil, fmt.Errorf("memory round %d: %w", i+1, err)
		}
		rounds = append(rounds, r)
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "memory round %d/%d: idle RSS %s MB, with %d connections %s MB, %d entries +%s MB heap\n",
				i+1, o.Rounds, mb(r.idleRSS), o.Conns, mb(r.connsRSS), o.Entries, mb(r.fillAfter.heap-r.fillBefore.heap))
		}
	}
	memoryTables(&rep, o, rounds)
	return rep, rounds, nil
}

func memoryOnce(ctx context.Context, o MemoryOptions, round int, rep *report) (memoryRound, error) {
	var r memoryRound
	dir := filepath.Join(o.Dir, fmt.Sprint(round+1))
	if o.Bare != "" {
		if err := bareConns(ctx, o, filepath.Join(dir, "bare"), &r); err != nil {
			return r, fmt.Errorf("the baseline: %w", err)
		}
	}
	var heapProfile string
	if o.HeapProfile != "" {
		heapProfile = fmt.Sprintf("%s-%d.pprof", o.HeapProfile, round+1)
	}
	if err := idleConns(ctx, o, filepath.Join(dir, "conns"), heapProfile, &r, rep); err != nil {
		return r, err
	}
	return r, fill(ctx, o, filepath.Join(dir, "fill"), &r, rep)
}

// idleConns measures the idle server and the same server holding o.Conns idle
// connections.
func idleConns(ctx context.Context, o MemoryOptions, dir, heapProfile string, r *memoryRound, rep *report) (err error) {
	s, err := startServer(ctx, o.Calcserver, dir, "WorkTime = 10ms", "WorkMode = sleep")
	if err != nil {
		return err
	}
	defer func() {
		if serr := s.stop(); err == nil {
			err = serr
		}
	}()
	if r.fdLimit, err = openFilesLimit(s.Pid()); err != nil {
		return err
	}
	if need := o.Conns + fdReserve; r.fdLimit < need {
		return fmt.Errorf("calcserver (pid %d) may open %d files, fewer than the %d its %d connections need", s.Pid(), r.fdLimit, need, o.Conns)
	}
	if r.idleRSS, err = quietRSS(ctx, s.Pid()); err != nil {
		return err
	}
	if r.idle, err = s.usage(ctx); err != nil {
		return err
	}
	conns, err := holdConns(ctx, s.Addr(), o.Conns, o.Workers, s.Alive)
	defer closeAll(conns)
	if err != nil {
		return err
	}
	// The RSS as it is, then the heap and stacks after a collection.
	if r.connsRSS, err = quietRSS(ctx, s.Pid()); err != nil {
		return err
	}
	if r.conns, err = s.usage(ctx); err != nil {
		return err
	}
	if heapProfile != "" {
		if err := s.saveHeapProfile(ctx, heapProfile); err != nil {
			return err
		}
	}
	// One goroutine serves each connection; a few of the idle count come and go.
	if got, want := r.conns.goroutines-r.idle.goroutines, o.Conns; got < want-goroutineSlack {
		rep.failf("with %d idle connections open the server runs only %d goroutines more than at idle: it closed some", want, got)
	}
	return nil
}

// bareConns measures the bare net/http baseline the same way: its RSS at idle and with
// o.Conns idle connections.
func bareConns(ctx context.Context, o MemoryOptions, dir string, r *memoryRound) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("baseline work directory: %w", err)
	}
	b, err := startBare(ctx, o.Bare, dir)
	if err != nil {
		return err
	}
	defer b.stop()
	if r.bareIdleRSS, err = quietRSS(ctx, b.Pid()); err != nil {
		return err
	}
	conns, err := holdConns(ctx, b.Addr(), o.Conns, o.Workers, b.Alive)
	defer closeAll(conns)
	if err != nil {
		return err
	}
	r.bareConnsRSS, err = quietRSS(ctx, b.Pid())
	return err
}

// quietRSS lets process pid settle for quiet, then reads its RSS.
func quietRSS(ctx context.Context, pid int) (float64, error) {
	if err := sleep(ctx, quiet); err != nil {
		return 0, err
	}
	return vmRSS(pid)
}

// quietUsage lets the server settle for quiet, then reads its usage and its metrics.
func quietUsage(ctx context.Context, s *server) (usage, map[string]float64, error) {
	if err := sleep(ctx, quiet); err != nil {
		return usage{}, nil, err
	}
	u, err := s.usage(ctx)
	if err != nil {
		return usage{}, nil, err
	}
	m, err := s.metrics(ctx)
	return u, m, err
}

// connKey is the key every idle connection asks for once: for calcserver a hit after
// the first, and the key whose answer the baseline sends.
const connKey = "testing"

// holdConns opens n connections to addr, at most par at a time, each asking for
// connKey once and wanting the right answer, and returns them open. On an error it
// returns the connections opened so far, with alive's verdict on the server when it
// has one.
func holdConns(ctx context.Context, addr string, n, par int, alive func() error) ([]*conn, error) {
	conns := make([]*conn, n)
	warm, err := dial(ctx, addr)
	if err != nil {
		return conns, err
	}
	err = askCorrect(warm, connKey) // calcserver's one miss: every later request is a hit
	warm.close()
	if err != nil {
		return conns, err
	}
	err = forEach(ctx, n, par, func(i int) error {
		c, err := dial(ctx, addr)
		if err != nil {
			return err
		}
		conns[i] = c
		if err := askCorrect(c, connKey); err != nil {
			return err
		}
		c.release()
		return nil
	})
	if err != nil {
		if aerr := alive(); aerr != nil {
			return conns, aerr
		}
	}
	return conns, err
}

// fill measures what o.Entries distinct keys in the memory tier cost.
func fill(ctx context.Context, o MemoryOptions, dir string, r *memoryRound, rep *report) (err error) {
	s, err := startServer(ctx, o.Calcserver, dir, "Cores = 1024", "QueueSize = 1024", "WorkTime = 1ms", "WorkMode = sleep",
		fmt.Sprintf("MemoryCacheSize = %d", max(o.Entries, 100000)))
	if err != nil {
		return err
	}
	defer func() {
		if serr := s.stop(); err == nil {
			err = serr
		}
	}()
	var before, after map[string]float64
	if r.fillBefore, before, err = quietUsage(ctx, s); err != nil {
		return err
	}
	start := time.Now()
	if err := onWorkers(ctx, s, o.Workers, o.Entries, func(c *conn, i int) error { return askCorrect(c, fillKey(i)) }); err != nil {
		return err
	}
	r.fillTook = time.Since(start)
	if r.fillAfter, after, err = quietUsage(ctx, s); err != nil {
		return err
	}
	const misses = `calcserver_calc_answers_total{cache="MISS"}`
	r.misses = after[misses] - before[misses]
	if int(r.misses) != o.Entries {
		rep.failf("filling %d distinct keys ran %g misses", o.Entries, r.misses)
	}

	// Ask a sample again: each should be a hit, or the figure counts fewer entries.
	r.sample = min(sampleSize, o.Entries)
	step := o.Entries / r.sample
	var mu sync.Mutex
	err = onWorkers(ctx, s, o.Workers, r.sample, func(c *conn, i int) error {
		a, err := c.get("/calc?input="+url.QueryEscape(fillKey(i*step)), memoryTimeout)
		if err != nil {
			return err
		}
		if a.header.Get("X-Cache") == "HIT" {
			mu.Lock()
			r.sampleHits++
			mu.Unlock()
		}
		return nil
	})
	return err
}

// fillKey is the i-th key of the fill, shaped like the events' keys: base64 of
// "ICanHazUnicorn?-<i>", 28 to 32 characters.
func fillKey(i int) string {
	return base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "ICanHazUnicorn?-%d", i))
}

// onWorkers opens workers keep-alive connections and calls f(conn, i) for i in 0..n-1
// spread over them.
func onWorkers(ctx context.Context, s *server, workers, n int, f func(c *conn, i int) error) error {
	workers = min(workers, n)
	conns, err := dialAll(ctx, s.Addr(), workers, workers)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	idx := make(chan *conn, workers)
	for _, c := range conns {
		idx <- c
	}
	err = forEach(ctx, n, workers, func(i int) error {
		c := <-idx
		defer func() { idx <- c }()
		return f(c, i)
	})
	if err != nil {
		if aerr := s.Alive(); aerr != nil {
			return aerr
		}
	}
	return err
}

// askCorrect asks c for key and wants a 200 with the right answer.
func askCorrect(c *conn, key string) error {
	a, err := c.get("/calc?input="+url.QueryEscape(key), memoryTimeout)
	if err != nil {
		return err
	}
	if a.status != http.StatusOK {
		return fmt.Errorf("GET /calc?input=%s: %d: %.200q", key, a.status, a.body)
	}
	if !calc.Verify(calc.Token, 1, []byte(key), a.body) {
		return fmt.Errorf("GET /calc?input=%s: %s", key, gameday.WrongReason(calc.Token, 1, key, a.body))
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func memoryTables(rep *report, o MemoryOptions, rounds []memoryRound) {
	withBare := o.Bare != ""
	med := func(f func(memoryRound) float64) float64 { return medianOf(rounds, f) }
	idle := med(func(r memoryRound) float64 { return r.idleRSS })
	conns := med(func(r memoryRound) float64 { return r.connsRSS })
	perConn := func(r memoryRound) float64 { return (r.connsRSS - r.idleRSS) / float64(o.Conns) }
	barePerConn := func(r memoryRound) float64 { return (r.bareConnsRSS - r.bareIdleRSS) / float64(o.Conns) }
	kb := func(v float64) string { return fmt.Sprintf("%.1f", v/1e3) }

	t := table{
		title: fmt.Sprintf("Memory: RSS at idle and with %d idle keep-alive connections (each made one request, a cache hit)", o.Conns),
		header: []string{"round", "server's open files limit", "RSS idle (MB)", "RSS with the connections (MB)", "per connection (KB)",
			"goroutines", "heap + stacks with them (MB)"},
	}
	if withBare {
		t.header = append(t.header, "bare: RSS idle (MB)", "bare: with the connections (MB)", "bare: per connection (KB)")
	}
	for i, r := range rounds {
		row := []string{fmt.Sprint(i + 1), fmt.Sprint(r.fdLimit), mb(r.idleRSS), mb(r.connsRSS), kb(perConn(r)),
			fmt.Sprint(r.conns.goroutines), mb(r.conns.heap) + " + " + mb(r.conns.stacks)}
		if withBare {
			row = append(row, mb(r.bareIdleRSS), mb(r.bareConnsRSS), kb(barePerConn(r)))
		}
		t.rows = append(t.rows, row)
	}
	row := []string{"median", "", mb(idle), mb(conns), kb(med(perConn)),
		num(med(func(r memoryRound) float64 { return float64(r.conns.goroutines) })),
		mb(med(func(r memoryRound) float64 { return r.conns.heap })) + " + " + mb(med(func(r memoryRound) float64 { return r.conns.stacks }))}
	if withBare {
		row = append(row, mb(med(func(r memoryRound) float64 { return r.bareIdleRSS })),
			mb(med(func(r memoryRound) float64 { return r.bareConnsRSS })), kb(med(barePerConn)))
	}
	t.rows = append(t.rows, row)
	rep.tables = append(rep.tables, t)

	heapPer := func(r memoryRound) float64 { return (r.fillAfter.heap - r.fillBefore.heap) / float64(o.Entries) }
	rssPer := func(r memoryRound) float64 { return (r.fillAfter.rss - r.fillBefore.rss) / float64(o.Entries) }
	t = table{
		title: fmt.Sprintf("Memory: %d distinct keys in the memory tier (Cores 1024, WorkTime 1ms, sleep)", o.Entries),
		header: []string{"round", "heap before → after (MB)", "heap per entry (B)", "RSS before → after (MB)", "RSS per entry (B)",
			"fill (s)", "sample asked again: hits"},
	}
	for i, r := range rounds {
		t.rows = append(t.rows, []string{fmt.Sprint(i + 1),
			mb(r.fillBefore.heap) + " → " + mb(r.fillAfter.heap), fmt.Sprintf("%.0f", heapPer(r)),
			mb(r.fillBefore.rss) + " → " + mb(r.fillAfter.rss), fmt.Sprintf("%.0f", rssPer(r)),
			fmt.Sprintf("%.1f", r.fillTook.Seconds()), fmt.Sprintf("%d of %d", r.sampleHits, r.sample)})
	}
	t.rows = append(t.rows, []string{"median",
		mb(med(func(r memoryRound) float64 { return r.fillBefore.heap })) + " → " + mb(med(func(r memoryRound) float64 { return r.fillAfter.heap })),
		fmt.Sprintf("%.0f", med(heapPer)),
		mb(med(func(r memoryRound) float64 { return r.fillBefore.rss })) + " → " + mb(med(func(r memoryRound) float64 { return r.fillAfter.rss })),
		fmt.Sprintf("%.0f", med(rssPer)), fmt.Sprintf("%.1f", med(func(r memoryRound) float64 { return r.fillTook.Seconds() })), ""})
	rep.tables = append(rep.tables, t)

	targets := table{
		header: []string{"target", "figure (median)", "target", "verdict"},
		rows: [][]string{
			{"RSS at idle", mb(idle) + " MB", "≤ " + mb(idleRSSTarget) + " MB",
				rep.target(idle <= idleRSSTarget, "idle RSS %s MB > %s MB", mb(idle), mb(idleRSSTarget))},
			{fmt.Sprintf("RSS with %d idle keep-alive connections", o.Conns), mb(conns) + " MB", "≤ " + mb(connsRSSTarget) + " MB",
				rep.target(conns <= connsRSSTarget, "RSS with %d connections %s MB > %s MB", o.Conns, mb(conns), mb(connsRSSTarget))},
			{fmt.Sprintf("%d entries in the memory tier", o.Entries),
				fmt.Sprintf("%s MB heap (%.0f B each), %s MB RSS", mb(med(heapPer)*float64(o.Entries)), med(heapPer), mb(med(rssPer)*float64(o.Entries))),
				"reported", "—"},
		},
	}
	var bareNote string
	if withBare {
		targets.rows = slices.Insert(targets.rows, 2, []string{fmt.Sprintf("the bare net/http server with %d idle connections", o.Conns),
			mb(med(func(r memoryRound) float64 { return r.bareConnsRSS })) + " MB", "baseline", "—"})
		bareNote = "\"bare\" is internal/bareserver, a bare net/http server, holding as many, measured just before. "
	}
	rep.tables = append(rep.tables, targets)
	rep.notes = append(rep.notes, "RSS is VmRSS from /proc/PID/status, read a second after the last request (the idle one a second after the start, before any request); "+
		"MB are 10^6 bytes. Heap (go_memstats_heap_inuse_bytes) and stacks (go_memstats_stack_inuse_bytes) are read after a forced GC (pprof's heap profile with gc=1). "+
		"Each idle connection made one request and stays open (the server's IdleTimeout is 120 s); "+
		bareNote+
		"The fill runs on a fresh server, one request per key over keep-alive connections; "+
		"\"sample asked again\" asks a spread of the keys once more to check that the memory tier kept them.")
}
