package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/config"
	"github.com/unicorn-rentals/unicorn/internal/queue"
	"github.com/unicorn-rentals/unicorn/internal/server"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// Load runs against an in-process calcserver over loopback HTTP, with real backends.
// They report their figures with b.ReportMetric; run them once each:
//
//	go test -run '^$' -bench 'Load|Outage' -benchtime 1x -count 5 ./cmd/calcserver

// sample is one answered request of a load run.
type sample struct {
	start, end time.Duration // since the run began
	code       int
	cache      string
}

func (s sample) latency() time.Duration { return s.end - s.start }

// loadRun sends requests for keys from workers closed-loop clients until ctx ends.
func loadRun(ctx context.Context, base string, keys []string, workers int) []sample {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	begin := time.Now()
	var mu sync.Mutex
	var all []sample
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var mine []sample
			for i := w; ctx.Err() == nil; i += workers {
				s := sample{start: time.Since(begin)}
				resp, err := client.Get(base + "/calc?input=" + keys[i%len(keys)])
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					s.code, s.cache = resp.StatusCode, resp.Header.Get("X-Cache")
				}
				s.end = time.Since(begin)
				mine = append(mine, s)
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.SortFunc(all, func(a, b sample) int { return int(a.start - b.start) })
	return all
}

func percentile(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return lat[int(float64(len(lat)-1)*p)]
}

// benchServer starts an in-process calcserver for cfg with the real wiring of serve.
func benchServer(b *testing.B, cfg config.Config) (*server.Server, *cache.Chain) {
	b.Helper()
	goredis.SetLogger(redisLog{slog.New(slog.DiscardHandler)})
	var mem *cache.Memory
	if cfg.MemoryCacheSize > 0 {
		mem = cache.NewMemory(cfg.MemoryCacheSize, cfg.CacheTTL)
		b.Cleanup(mem.Close)
	}
	backends, err := openBackends(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, be := range backends {
		if be.mysql != nil {
			if err := be.mysql.Init(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		b.Cleanup(func() { _ = be.close() })
	}
	reg := prometheus.NewRegistry()
	chain := cache.NewChain(cache.Options{Timeout: cfg.CacheTimeout, Registerer: reg}, tiers(cfg, mem, backends)...)
	b.Cleanup(func() { _ = chain.Close(context.Background()) })
	srv := server.New(server.Options{
		Queue:    queue.Options{Cores: cfg.Cores, QueueSize: cfg.QueueSize, WorkTime: cfg.WorkTime, Mode: queue.Sleep},
		Cache:    chain,
		Registry: reg,
		Host:     "bench",
	})
	if err := srv.Open("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	return srv, chain
}

// benchBackend is a backend the load runs use, started fresh.
type benchBackend struct {
	name  string
	start func(b *testing.B, cfg *config.Config) *svctest.Proc // nil Proc: nothing to kill
}

func benchBackends() []benchBackend {
	return []benchBackend{
		{"memory", func(b *testing.B, cfg *config.Config) *svctest.Proc { return nil }},
		{"redis", func(b *testing.B, cfg *config.Config) *svctest.Proc {
			p := svctest.Redis(b)
			cfg.RedisHost, cfg.RedisPort = "127.0.0.1", p.Port
			return p
		}},
		{"memcached", func(b *testing.B, cfg *config.Config) *svctest.Proc {
			p := svctest.Memcached(b)
			cfg.MemcacheServers = []string{p.Addr}
			return p
		}},
		{"file", func(b *testing.B, cfg *config.Config) *svctest.Proc {
			cfg.FsPath = b.TempDir()
			return nil
		}},
		{"mysql", func(b *testing.B, cfg *config.Config) *svctest.Proc {
			p := svctest.MariaDB(b)
			cfg.MysqlHost, cfg.MysqlPort, cfg.MysqlUser, cfg.MysqlDb, cfg.MysqlCreateTable = "127.0.0.1", p.Port, "root", "mysql", true
			return p
		}},
	}
}

func benchConfig() config.Config {
	cfg := config.Default()
	cfg.MemoryCacheSize = 0 // every lookup reaches the backend under test
	cfg.WorkTime = time.Millisecond
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

// BenchmarkLoadHit measures cache hits through HTTP: 16 clients, 2 s, 1000 warm keys,
// each backend alone (no memory tier) and the memory tier as the baseline.
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
			var lat []time.Duration
			var hits, total int
			var elapsed time.Duration
			for range b.N {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				begin := time.Now()
				samples := loadRun(ctx, base, keys, 16)
				elapsed += time.Since(begin)
				cancel()
				for _, s := range samples {
					if s.code == 200 && s.cache == "HIT" {
						hits++
						lat = append(lat, s.latency())
					}
					total++
				}
			}
			if total == 0 || hits < total*99/100 {
				b.Fatalf("%d of %d requests were hits", hits, total)
			}
			b.ReportMetric(float64(percentile(lat, 0.5).Microseconds()), "p50-µs")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
			b.ReportMetric(float64(hits)/elapsed.Seconds(), "hits/s")
		})
	}
}

// BenchmarkOutage kills a backend under load (8 clients, 200 warm keys) and restarts
// it 2 s later; the hang variants freeze it (SIGSTOP, like a partition) instead and
// continue it 2 s later. It reports how long after the kill requests took to be fast again
// (every answer under 20 ms; they are computed meanwhile), the slowest answer while
// it was down, and, after the restart,
// how long until the backend was healthy and until its first hit.
func BenchmarkOutage(b *testing.B) {
	type outage struct {
		name       string
		down, back func(p *svctest.Proc) error
	}
	kill := outage{"kill", (*svctest.Proc).Kill, (*svctest.Proc).Restart}
	hang := outage{"hang", (*svctest.Proc).Pause, (*svctest.Proc).Resume}
	for _, be := range benchBackends() {
		if be.name == "memory" || be.name == "file" {
			continue // nothing to kill
		}
		for _, o := range []outage{kill, hang} {
			b.Run(be.name+"-"+o.name, func(b *testing.B) {
				var toNormal, worst, toHealthy, toHit []time.Duration
				for range b.N {
					cfg := benchConfig()
					p := be.start(b, &cfg)
					srv, chain := benchServer(b, cfg)
					base := fmt.Sprintf("http://127.0.0.1:%d", srv.Port())
					keys := warm(b, base, chain, 200)

					ctx, cancel := context.WithTimeout(context.Background(), 7*time.Second)
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
					samples := loadRun(ctx, base, keys, 8)
					wg.Wait()
					cancel()

					var lastSlow, slowest, firstHit time.Duration
					for _, s := range samples {
						if s.code != 200 {
							b.Fatalf("a request was answered %d during the outage", s.code)
						}
						if s.end > killAt && s.start < upAt {
							slowest = max(slowest, s.latency())
							if s.latency() > 20*time.Millisecond {
								lastSlow = max(lastSlow, s.end)
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
				}
				b.ReportMetric(float64(percentile(toNormal, 0.5).Milliseconds()), "ms-to-fast-after-kill")
				b.ReportMetric(float64(percentile(worst, 0.5).Microseconds())/1000, "max-ms-while-down")
				b.ReportMetric(float64(percentile(toHealthy, 0.5).Milliseconds()), "ms-to-healthy-after-restart")
				b.ReportMetric(float64(percentile(toHit, 0.5).Milliseconds()), "ms-to-hit-after-restart")
			})
		}
	}
}
