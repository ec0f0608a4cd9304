package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/unicorn-rentals/unicorn/internal/app"
	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/config"
	"github.com/unicorn-rentals/unicorn/internal/gameday"
	"github.com/unicorn-rentals/unicorn/internal/server"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
	"github.com/unicorn-rentals/unicorn/internal/svctest/ferret"
)

// Load runs against an in-process calcserver over loopback HTTP, with real backends,
// driven at a constant arrival rate by gameday's pacer (an open model: a slow answer
// does not slow the arrivals down, so every late answer is counted). They report their
// figures with b.ReportMetric; run them once each:
//
//	go test -run '^$' -bench 'Load|Outage' -benchtime 1x -count 5 ./cmd/calcserver

// sample is one request of a load run.
type sample struct {
	start, end time.Duration // since the run began; start is when the pacer scheduled it
	code       int           // 0: no answer (see timeout)
	cache      string
	timeout    bool // no full answer within the run's timeout
}

func (s sample) latency() time.Duration { return s.end - s.start }

// load is what an open-loop load run offered and got.
type load struct {
	samples []sample // every request sent, by start
	dropped int      // arrivals that found maxInflight requests in flight: never sent
}

// errors counts the requests that got no 200: timeouts, transport errors, other
// statuses.
func (l load) errors() (timeouts, others int) {
	for _, s := range l.samples {
		switch {
		case s.timeout:
			timeouts++
		case s.code != http.StatusOK:
			others++
		}
	}
	return timeouts, others
}

// openRun offers rate requests per second for d, on gameday's pacer (gameday.Pace),
// cycling through keys, and records every one. As gameday does, an arrival that finds
// maxInflight requests in flight is dropped and counted, never queued; each request
// has timeout to answer in full. Every 200 must carry the right answer for its key, or
// the benchmark fails. When ctx ends, no more arrivals are offered.
func openRun(b *testing.B, ctx context.Context, base string, keys []string, rate int, d time.Duration, maxInflight int, timeout time.Duration) load {
	b.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: maxInflight, MaxConnsPerHost: maxInflight}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	sem := make(chan struct{}, maxInflight)
	var (
		mu     sync.Mutex
		out    load
		wrong  []string
		wg     sync.WaitGroup
		reqCtx = context.WithoutCancel(ctx)
		begin  = time.Now()
	)
	gameday.Pace(ctx, float64(rate), 0, d, begin, func(n uint64, due time.Duration) {
		select {
		case sem <- struct{}{}:
		default:
			out.dropped++
			return
		}
		key := keys[n%uint64(len(keys))]
		wg.Go(func() {
			defer func() { <-sem }()
			s, body := get(reqCtx, client, base, key, timeout)
			s.start = due
			s.end = time.Since(begin)
			mu.Lock()
			defer mu.Unlock()
			out.samples = append(out.samples, s)
			if s.code == http.StatusOK && !calc.Verify(calc.Token, 1, []byte(key), body) {
				wrong = append(wrong, key)
			}
		})
	})
	wg.Wait()
	if len(wrong) > 0 {
		b.Fatalf("%d wrong answers, the first for key %q", len(wrong), wrong[0])
	}
	slices.SortFunc(out.samples, func(a, b sample) int { return int(a.start - b.start) })
	return out
}

// get sends one request and reads the whole answer.
func get(ctx context.Context, client *http.Client, base, key string, timeout time.Duration) (sample, []byte) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var s sample
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/calc?input="+key, nil)
	if err != nil {
		panic(err) // base and key are the benchmark's own
	}
	resp, err := client.Do(req)
	if err != nil {
		s.timeout = ctx.Err() != nil
		return s, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.timeout = ctx.Err() != nil
		return s, nil
	}
	s.code, s.cache = resp.StatusCode, resp.Header.Get("X-Cache")
	return s, body
}

func percentile(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return lat[int(float64(len(lat)-1)*p)]
}

// benchServer starts an in-process calcserver for cfg, built as serve builds it.
func benchServer(b *testing.B, cfg config.Config) (*server.Server, *cache.Chain) {
	b.Helper()
	goredis.SetLogger(redisLog{slog.New(slog.DiscardHandler)})
	a, err := app.New(cfg, app.Options{Host: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(a.Close) // after the chain's Close, registered below: cleanups run last first
	b.Cleanup(func() { _ = a.Chain.Close(context.Background()) })
	if err := a.Server.Open("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = a.Server.Close() })
	return a.Server, a.Chain
}

// outageTarget is a backend's server that an outage run crashes or freezes: a
// *svctest.Proc, or a FerretDB server (ferretService).
type outageTarget interface {
	service
	Pause() error  // freeze: connections stay open, nothing is answered
	Resume() error // undo Pause
}

// benchBackend is a backend the load runs use, started fresh.
type benchBackend struct {
	name  string
	start func(b *testing.B, cfg *config.Config) outageTarget // nil: nothing to kill
}

func benchBackends() []benchBackend {
	return []benchBackend{
		{"memory", func(b *testing.B, cfg *config.Config) outageTarget { return nil }},
		{"redis", func(b *testing.B, cfg *config.Config) outageTarget {
			p := svctest.Redis(b)
			cfg.RedisHost, cfg.RedisPort = "127.0.0.1", p.Port
			return p
		}},
		{"memcached", func(b *testing.B, cfg *config.Config) outageTarget {
			p := svctest.Memcached(b)
			cfg.MemcacheServers = []string{p.Addr}
			return p
		}},
		{"file", func(b *testing.B, cfg *config.Config) outageTarget {
			cfg.FsPath = b.TempDir()
			return nil
		}},
		{"mysql", func(b *testing.B, cfg *config.Config) outageTarget {
			p := svctest.MariaDB(b)
			cfg.MysqlHost, cfg.MysqlPort, cfg.MysqlUser, cfg.MysqlDb, cfg.MysqlCreateTable = "127.0.0.1", p.Port, "root", "mysql", true
			return p
		}},
		{"pgsql", func(b *testing.B, cfg *config.Config) outageTarget {
			p := svctest.Postgres(b)
			cfg.PgsqlHost, cfg.PgsqlPort, cfg.PgsqlUser, cfg.PgsqlDb = "127.0.0.1", p.Port, "postgres", "postgres"
			cfg.PgsqlSSLMode, cfg.PgsqlCreateTable = "disable", true
			return p
		}},
		// FerretDB on SQLite, in this process: a stand-in that speaks MongoDB's
		// protocol, not MongoDB's or DocumentDB's speed.
		{"mongodb", func(b *testing.B, cfg *config.Config) outageTarget {
			f := ferret.ForTest(b, ferret.Options{})
			cfg.MongoDbHost, cfg.MongoDbPort, cfg.MongoDbDatabase = "127.0.0.1", f.Port, "unicorn"
			return ferretService{f}
		}},
		// dynalite (Node.js, in memory): DynamoDB's API, not its speed. It loses its
		// table when killed; DynamoCreateTable makes it again.
		{"dynamodb", func(b *testing.B, cfg *config.Config) outageTarget {
			d := svctest.Dynalite(b)
			for _, kv := range d.Env() {
				k, v, _ := strings.Cut(kv, "=")
				b.Setenv(k, v)
			}
			cfg.DynamoTable, cfg.DynamoCreateTable, cfg.AwsRegion = "unicorntable", true, svctest.DynamoRegion
			return d
		}},
	}
}

func benchConfig() config.Config {
	cfg := config.Default()
	cfg.MemoryCacheSize = 0 // every lookup reaches the backend under test
	cfg.WorkMode, cfg.WorkTime = "sleep", time.Millisecond
	cfg.Cores, cfg.QueueSize = 64, 10000
	return cfg
}

func warm(b *testing.B, base string, chain *cache.Chain, n int) []string {
	b.Helper()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench-%d", i)
		resp, err := http.Get(base + "/calc?input=" + keys[i])
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	for chain.Pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return keys
}

// Arrivals per second of the load runs: well within what the driver, a calcserver and
// the slowest backend (MySQL) sustain together on a shared 2-core machine, so that the
// figures compare each backend's latency at the same offered load.
const (
	loadHitRate = 2000
	outageRate  = 1000
	// lateAfter is what counts as a late answer: about ten times a shared
	// backend's hit, far below a miss.
	lateAfter = 20 * time.Millisecond
)

// BenchmarkLoadHit measures cache hits through HTTP: loadHitRate arrivals per second
// for 2 s over 1000 warm keys, each backend alone (no memory tier) and the memory tier
// as the baseline.
func BenchmarkLoadHit(b *testing.B) {
	for _, be := range benchBackends() {
		b.Run(be.name, func(b *testing.B) {
			cfg := benchConfig()
			if be.name == "memory" {
				cfg.MemoryCacheSize = 100000
			}
			be.start(b, &cfg)
			srv, chain := benchServer(b, cfg)
			base := fmt.Sprintf("http://127.0.0.1:%d", srv.Port())
			keys := warm(b, base, chain, 1000)
			b.ResetTimer()
			const d = 2 * time.Second
			var lat []time.Duration
			var hits, total, late, dropped, timeouts, errs int
			for range b.N {
				l := openRun(b, context.Background(), base, keys, loadHitRate, d, 256, time.Second)
				for _, s := range l.samples {
					if s.code == 200 && s.cache == "HIT" {
						hits++
					}
					if s.code == 200 {
						lat = append(lat, s.latency())
						if s.latency() > lateAfter {
							late++
						}
					}
					total++
				}
				t, e := l.errors()
				dropped, timeouts, errs = dropped+l.dropped, timeouts+t, errs+e
			}
			if hits == 0 {
				b.Fatalf("none of %d requests was a hit", total)
			}
			b.ReportMetric(float64(percentile(lat, 0.5).Microseconds()), "p50-µs")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
			b.ReportMetric(float64(hits)/(d.Seconds()*float64(b.N)), "hits/s")
			// A backend that cannot keep up misses CacheTimeout, then opens its
			// breaker: those requests are computed, answered correctly but not hits.
			b.ReportMetric(float64(total-hits)/float64(b.N), "not-hits")
			b.ReportMetric(float64(late)/float64(b.N), "late")
			b.ReportMetric(float64(dropped)/float64(b.N), "dropped")
			b.ReportMetric(float64(timeouts)/float64(b.N), "timeouts")
			b.ReportMetric(float64(errs)/float64(b.N), "errors")
		})
	}
}

// BenchmarkOutage kills a backend under load (outageRate arrivals per second over 200
// warm keys) and restarts it 2 s later; the hang variants freeze it (SIGSTOP, like a
// partition) instead and continue it 2 s later. It reports how long after the kill
// requests took to be fast again (every answer within lateAfter; they are computed
// meanwhile), the slowest answer while it was down, and, after the restart, how long
// until the backend was healthy and until its first hit; the answers later than
// lateAfter while it was down and over the whole run; and the requests that timed out
// (the contest checker's 8 s) or failed, and the arrivals dropped because 1000
// requests were in flight.
func BenchmarkOutage(b *testing.B) {
	type outage struct {
		name       string
		down, back func(p outageTarget) error
	}
	kill := outage{"kill", outageTarget.Kill, outageTarget.Restart}
	hang := outage{"hang", outageTarget.Pause, outageTarget.Resume}
	for _, be := range benchBackends() {
		if be.name == "memory" || be.name == "file" {
			continue // nothing to kill
		}
		for _, o := range []outage{kill, hang} {
			if be.name == "dynamodb" && o.name == "kill" {
				// dynalite keeps its data in memory: a killed one comes back empty,
				// without its table, so the run would time dynalite's rebuild rather
				// than the backend's recovery, and no warm key hits again.
				continue
			}
			b.Run(be.name+"-"+o.name, func(b *testing.B) {
				var toNormal, worst, toHealthy, toHit []time.Duration
				var late, lateDown, dropped, timeouts, errs int
				for range b.N {
					cfg := benchConfig()
					p := be.start(b, &cfg)
					srv, chain := benchServer(b, cfg)
					base := fmt.Sprintf("http://127.0.0.1:%d", srv.Port())
					keys := warm(b, base, chain, 200)

					const d = 7 * time.Second
					ctx, cancel := context.WithTimeout(context.Background(), d)
					begin := time.Now()
					var killAt, upAt, healthyAt time.Duration
					var wg sync.WaitGroup
					wg.Go(func() {
						time.Sleep(time.Second)
						killAt = time.Since(begin)
						if err := o.down(p); err != nil {
							b.Error(err)
						}
						time.Sleep(2 * time.Second)
						if err := o.back(p); err != nil {
							b.Error(err)
						}
						upAt = time.Since(begin)
						for ctx.Err() == nil && !chain.Health()[0].Healthy {
							time.Sleep(time.Millisecond)
						}
						healthyAt = time.Since(begin)
					})
					l := openRun(b, context.Background(), base, keys, outageRate, d, 1000, gameday.DefaultTimeout)
					wg.Wait()
					cancel()

					var lastSlow, slowest, firstHit time.Duration
					for _, s := range l.samples {
						if s.code != 200 && s.code != 0 {
							b.Fatalf("a request was answered %d during the outage", s.code)
						}
						if s.latency() > lateAfter {
							late++
						}
						if s.end > killAt && s.start < upAt {
							slowest = max(slowest, s.latency())
							if s.latency() > lateAfter {
								lastSlow = max(lastSlow, s.end)
								lateDown++
							}
						}
						if s.start > upAt && s.cache == "HIT" && firstHit == 0 {
							firstHit = s.end
						}
					}
					if firstHit == 0 {
						b.Fatal("no hit after the backend came back")
					}
					toNormal = append(toNormal, max(lastSlow-killAt, 0))
					worst = append(worst, slowest)
					toHealthy = append(toHealthy, healthyAt-upAt)
					toHit = append(toHit, firstHit-upAt)
					t, e := l.errors()
					dropped, timeouts, errs = dropped+l.dropped, timeouts+t, errs+e
				}
				b.ReportMetric(float64(percentile(toNormal, 0.5).Milliseconds()), "ms-to-fast-after-kill")
				b.ReportMetric(float64(percentile(worst, 0.5).Microseconds())/1000, "max-ms-while-down")
				b.ReportMetric(float64(percentile(toHealthy, 0.5).Milliseconds()), "ms-to-healthy-after-restart")
				b.ReportMetric(float64(percentile(toHit, 0.5).Milliseconds()), "ms-to-hit-after-restart")
				b.ReportMetric(float64(late)/float64(b.N), "late")
				b.ReportMetric(float64(lateDown)/float64(b.N), "late-while-down")
				b.ReportMetric(float64(dropped)/float64(b.N), "dropped")
				b.ReportMetric(float64(timeouts)/float64(b.N), "timeouts")
				b.ReportMetric(float64(errs)/float64(b.N), "errors")
			})
		}
	}
}
