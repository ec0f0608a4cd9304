package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/gameday"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// Poison under load (issue 10, point 7) and its figures in RELIABILITY.md:
//
//	go test -race -count=1 -run Poison -v ./cmd/calcserver
const (
	poisonRate     = 300 // arrivals per second
	poisonDuration = 4 * time.Second
	poisonKeys     = 300 // gameday's popular keys 1..poisonKeys
)

// poisonKinds are the values the poisoner writes over a key's entry, in turn.
var poisonKinds = []string{"garbage", "another key's value", "version 2's answer", "one byte flipped", "another key's token under this key"}

// poisonValue is what the poisoner writes over the entry of key (an index into texts)
// in round: each kind in turn, shifted by key so that every round writes every kind.
func poisonValue(texts []string, key, round int, rng *rand.Rand) []byte {
	text := texts[key]
	other := texts[(key+1+rng.IntN(len(texts)-1))%len(texts)]
	switch (key + round) % len(poisonKinds) {
	case 0: // garbage, sometimes empty
		b := make([]byte, rng.IntN(300))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	case 1: // a valid value, of another key
		return cache.EncodeValue(1, other, calc.Sum(1, []byte(other)))
	case 2: // this key's answer, at another version
		return cache.EncodeValue(2, text, calc.Sum(2, []byte(text)))
	case 3: // this key's value with one bit of one byte flipped
		b := cache.EncodeValue(1, text, calc.Sum(1, []byte(text)))
		b[rng.IntN(len(b))] ^= 1 << rng.IntN(8)
		return b
	default: // another key's token followed by this key, so that purge would match it
		b := cache.EncodeValue(1, other, calc.Sum(1, []byte(other)))
		return append(b[:calc.TokenSize+1], text...)
	}
}

// poisoner overwrites, round after round until ctx ends, the Redis entry of every key
// of the run (present or not) and every other unicorn:v1:* entry SCAN finds.
type poisoner struct {
	rounds, writes int64
}

func (p *poisoner) run(ctx context.Context, t *testing.T, rdb *goredis.Client) {
	texts := make([]string, poisonKeys)
	names := make([]string, poisonKeys)
	known := map[string]bool{}
	for i := range texts {
		texts[i] = gameday.NewKey(int64(i) + 1).Text
		names[i] = cache.StorageKey(1, texts[i])
		known[names[i]] = true
	}
	rng := rand.New(rand.NewPCG(7, 11))
	for round := 0; ctx.Err() == nil; round++ {
		pipe := rdb.Pipeline()
		for i, name := range names {
			pipe.Set(ctx, name, poisonValue(texts, i, round, rng), 0)
		}
		iter := rdb.Scan(ctx, 0, cache.StoragePrefix+"1:*", 1000).Iterator()
		for iter.Next(ctx) {
			if !known[iter.Val()] {
				pipe.Set(ctx, iter.Val(), "garbage", 0)
			}
		}
		n := pipe.Len()
		if _, err := pipe.Exec(ctx); err != nil || iter.Err() != nil {
			if ctx.Err() == nil {
				t.Errorf("poisoner: %v / %v", err, iter.Err())
			}
			return
		}
		p.rounds++
		p.writes += int64(n)
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// metric reads one sample of calcserver's /metrics; a series it lacks fails t.
func metric(t *testing.T, p *proc, series string) float64 {
	t.Helper()
	body := p.get(t, "GET", "/metrics").body
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics has no %s:\n%s", series, grep(body, "calcserver_cache_operations_total"))
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestEndToEndPoisonUnderLoad: while gameday offers a constant rate and verifies every
// answer, a poisoner keeps overwriting every Redis entry with garbage, other keys'
// values, other versions' answers and near misses. Every answer must still be right,
// every status 200 (or a queue-full 503), and the corrupt counter must rise.
func TestEndToEndPoisonUnderLoad(t *testing.T) {
	rp := svctest.Redis(t)
	// No memory tier: every lookup reaches Redis. 64 cores of 10 ms are 6 400 misses a
	// second, far above the rate even if every lookup is poisoned.
	s := start(t, fmt.Sprintf("RedisHost = 127.0.0.1\nRedisPort = %d\nMemoryCacheSize = 0\nWorkMode = sleep\nWorkTime = 10ms\nCores = 64\nQueueSize = 64\n", rp.Port))
	rdb := goredis.NewClient(&goredis.Options{Addr: rp.Addr})
	t.Cleanup(func() { rdb.Close() })

	const (
		corrupt   = `calcserver_cache_operations_total{backend="redis",result="corrupt"}`
		hits      = `calcserver_cache_operations_total{backend="redis",result="hit"}`
		queueFull = `calcserver_rejections_total{reason="queue_full"}`
	)
	corruptBefore := metric(t, s, corrupt)

	ctx, stop := context.WithCancel(context.Background())
	var pois poisoner
	var wg sync.WaitGroup
	wg.Go(func() { pois.run(ctx, t, rdb) })
	// Let the first rounds land before the load starts, so that even the first
	// lookups find poison.
	time.Sleep(50 * time.Millisecond)

	began := time.Now()
	sum, err := gameday.Run(context.Background(), gameday.Options{
		Targets:  []string{s.base},
		Rate:     poisonRate,
		Duration: poisonDuration,
		Timeout:  3 * time.Second,
		Keys:     poisonKeys,
		Seed:     1,
	}, nil)
	took := time.Since(began)
	stop()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}

	corrupted := metric(t, s, corrupt) - corruptBefore
	t.Logf("poison under load: %d requests sent in %v (%d offered, %d dropped): %d correct, %d wrong, %d errors %v, %d timeouts; "+
		"poisoner: %d rounds, %d writes; redis: %.0f corrupt values found and deleted, %.0f hits; p99 %.1f ms",
		sum.Requests, took.Round(time.Millisecond), sum.Offered, sum.Dropped, sum.Correct, sum.Wrong, sum.Errors, sum.ByError, sum.Timeouts,
		pois.rounds, pois.writes, corrupted, metric(t, s, hits), sum.Latency.P99)

	if sum.Wrong != 0 {
		t.Errorf("%d wrong answers; the latest:\n%v", sum.Wrong, sum.Events[max(0, len(sum.Events)-3):])
	}
	for status, n := range sum.ByStatus {
		if status != "200" && status != "503" {
			t.Errorf("%d answers %s; want only 200 and queue-full 503 (%v)", n, status, sum.ByError)
		}
	}
	if n503 := sum.ByStatus["503"]; n503 > 0 {
		if full := metric(t, s, queueFull); full < float64(n503) {
			t.Errorf("%d answers 503, but only %.0f queue-full rejections", n503, full)
		}
	}
	if least := int64(poisonRate * poisonDuration / time.Second * 9 / 10); sum.Requests < least || sum.Correct < sum.Requests-sum.ByStatus["503"] {
		t.Errorf("%d requests sent, %d correct; want at least %d sent, each correct or 503", sum.Requests, sum.Correct, least)
	}
	if pois.rounds < 10 {
		t.Errorf("the poisoner ran only %d rounds", pois.rounds)
	}
	if corrupted < 1 {
		t.Errorf("%s did not rise (poisoner: %d rounds)", corrupt, pois.rounds)
	}
}
