package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/unicorn-rentals/unicorn/internal/gameday"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// Chaos under load (the figures in RELIABILITY.md):
//
//	go test -race -count=1 -run Chaos -v ./cmd/calcserver
//
// Each fault runs against its own calcserver process with one shared backend and no
// memory tier, under a constant arrival rate (an open model: an answer that comes late
// is counted late, never held back), in phases: warm, the fault, recovery, after.
const (
	chaosRate  = 100 // arrivals per second
	chaosKeys  = 100 // gameday's popular keys 1..chaosKeys
	chaosWarm  = 2 * time.Second
	chaosReady = 4 * time.Second // then, at most this long for the backend to be healthy
	chaosFault = 2 * time.Second
	chaosLoad  = 15 * time.Second // the whole load: warm, ready, fault, and at least 7 s after
	// chaosCacheTimeout is calcserver's CacheTimeout. 500 ms, as the other tests give
	// the SQL, MongoDB and DynamoDB backends: with less, a lookup on a busy machine
	// (FerretDB runs in the -race test process) sometimes times out by itself and
	// opens the breaker before the fault.
	chaosCacheTimeout = 500 * time.Millisecond
	chaosWorkTime     = 20 * time.Millisecond
	// chaosSlack is what a request may take beyond one CacheTimeout and one job: the
	// handler, a -race binary, and two cores shared with the backends and gameday. It
	// is less than a CacheTimeout, so a request that waited twice on the backend fails
	// the bound.
	chaosSlack = 300 * time.Millisecond
	// chaosResume is how soon after the recovery hits must come back.
	chaosResume = 5 * time.Second
)

// chaosConfig is calcserver's configuration for every fault: no memory tier, so every
// lookup reaches the backend, and enough cores that computing every request while the
// backend is out never fills the queue (100/s of 20 ms jobs need 2 cores).
var chaosConfig = fmt.Sprintf("MemoryCacheSize = 0\nWorkMode = sleep\nWorkTime = %v\nCores = 32\nQueueSize = 64\nCacheTimeout = %v\n",
	chaosWorkTime, chaosCacheTimeout)

// fault breaks a backend and mends it.
type fault struct {
	name           string // what is done, for the log
	inject, repair func(t *testing.T) error
	// readable marks a fault that leaves lookups working (a read-only file system):
	// hits go on through it, only writes fail.
	readable bool
	// stalls marks a fault that makes operations hang rather than fail at once: some
	// requests must then have waited for a CacheTimeout.
	stalls bool
}

// chaosCase is a backend and the fault done to it.
type chaosCase struct {
	name  string // the subtest's name
	setup func(t *testing.T) (backendCase, fault)
}

// killed is the fault of a backend whose server crashes (SIGKILL, every connection
// dropped) and is started again on its port.
func killed(bc backendCase) fault {
	return fault{name: "killed and restarted",
		inject: func(*testing.T) error { return bc.svc.Kill() },
		repair: func(*testing.T) error { return bc.svc.Restart() }}
}

// chaosCases are the faults, one per shared backend, plus a Redis behind a proxy that
// turns into a black hole.
func chaosCases() []chaosCase {
	var cases []chaosCase
	for _, s := range backendCases() {
		if s.name == "file" {
			cases = append(cases, chaosCase{"file made read-only", func(t *testing.T) (backendCase, fault) {
				bc := s.setup(t)
				return bc, readOnly(t, bc.store.(fileStore).dir)
			}})
			continue
		}
		cases = append(cases, chaosCase{s.name + " killed and restarted", func(t *testing.T) (backendCase, fault) {
			bc := s.setup(t)
			return bc, killed(bc)
		}})
	}
	return append(cases, chaosCase{"redis black-holed", blackHoledRedis})
}

// readOnly is the fault of a shared file system that turns read-only. The tests run
// as root, whom file modes do not stop, so it sets the immutable attribute (chattr +i)
// on dir and everything below it: no file can then be created, renamed, removed or
// written there, by root either, while every entry can still be read. repair clears
// it again, and so does a cleanup, so that dir can be removed whatever happens.
func readOnly(t *testing.T, dir string) fault {
	chattr := func(flag string) error {
		out, err := exec.Command("chattr", "-R", flag, dir).CombinedOutput()
		if err != nil {
			return fmt.Errorf("chattr -R %s %s: %v\n%s", flag, dir, err, out)
		}
		return nil
	}
	t.Cleanup(func() { _ = chattr("-i") })
	return fault{name: "made read-only (chattr +i)", readable: true,
		inject: func(t *testing.T) error {
			if err := chattr("+i"); err != nil {
				return err
			}
			// The fault must be real for root too.
			probe := filepath.Join(dir, "unicorn", "chaos-probe")
			if err := os.WriteFile(probe, []byte("x"), 0o644); err == nil {
				return fmt.Errorf("%s: root could still create a file in %s after chattr +i", probe, dir)
			}
			return nil
		},
		repair: func(*testing.T) error { return chattr("-i") }}
}

// blackHoledRedis is Redis behind a HangProxy: calcserver talks to the proxy, which
// black-holes every connection (accepts, never answers) during the fault.
func blackHoledRedis(t *testing.T) (backendCase, fault) {
	p := svctest.Redis(t)
	proxy := svctest.HangProxyFor(t, p.Addr)
	c := goredis.NewClient(&goredis.Options{Addr: p.Addr})
	t.Cleanup(func() { c.Close() })
	bc := backendCase{name: "redis", ini: fmt.Sprintf("RedisHost = 127.0.0.1\nRedisPort = %d\n", proxy.Port), store: redisStore{c}}
	return bc, fault{name: "black-holed by a proxy", stalls: true,
		inject: func(*testing.T) error { proxy.BlackHole(); return nil },
		repair: func(*testing.T) error { proxy.PassThrough(); return nil }}
}

// chaosResult is what one fault's run measured.
type chaosResult struct {
	sum          gameday.Summary
	queueFull    float64
	unhealthy    bool          // /healthcheck showed the backend down during the fault
	repairTook   time.Duration // the restart, chmod or switch itself
	hitsAfter    time.Duration // from the end of the repair to the first hit; -1: none
	healthyAfter time.Duration // from the end of the repair to a healthy /healthcheck; -1: never
	faultMax     time.Duration // slowest request that began during the fault
	faultP99     time.Duration
	runMax       time.Duration // slowest request of the run
	faultReqs    int           // requests that began during the fault
	errorsSeen   float64       // the backend's failed operations during the fault
	hitsDuring   float64       // the backend's hits during the fault
}

// TestEndToEndChaosUnderLoad breaks each shared backend in turn (killed and restarted,
// made read-only, black-holed) while gameday offers a constant rate and verifies every
// answer. Every answer must be right and 200 (or a queue-full 503), /healthcheck must
// show the outage, hits must come back within chaosResume of the repair, and no request
// may wait on the broken backend for more than one CacheTimeout.
func TestEndToEndChaosUnderLoad(t *testing.T) {
	for _, cc := range chaosCases() {
		t.Run(cc.name, func(t *testing.T) {
			// Two at a time (-parallel defaults to the 2 CPUs): most of a run is waiting.
			t.Parallel()
			bc, f := cc.setup(t)
			testChaos(t, bc, f)
		})
	}
}

func testChaos(t *testing.T, bc backendCase, f fault) {
	// The cases set their own CacheTimeout for the other tests; this one sets its own.
	ini := regexp.MustCompile(`(?m)^CacheTimeout = .*\n`).ReplaceAllString(bc.ini, "") + chaosConfig
	s := startWith(t, bc, ini)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(s.logPath)
			t.Logf("calcserver's log, without access lines:\n%s", grepOut(string(b), "msg=access"))
		}
	})
	series := func(result string) string {
		return fmt.Sprintf(`calcserver_cache_operations_total{backend=%q,result=%q}`, bc.name, result)
	}
	backendHealthy := func() bool {
		for _, c := range health(t, s).Cache {
			if c.Name == bc.name {
				return c.Healthy
			}
		}
		t.Fatalf("/healthcheck does not list %s: %+v", bc.name, health(t, s))
		return false
	}
	if !backendHealthy() {
		t.Fatalf("%s is not healthy before the fault: %+v", bc.name, health(t, s))
	}

	var r chaosResult
	var faultAt, repairedAt time.Time
	load := make(chan error, 1)
	began := time.Now()
	go func() {
		var err error
		r.sum, err = gameday.Run(context.Background(), gameday.Options{
			Targets:  []string{s.base},
			Rate:     chaosRate,
			Duration: chaosLoad,
			Timeout:  3 * time.Second,
			Keys:     chaosKeys,
			Seed:     1,
		}, nil)
		load <- err
	}()
	loadEnd := began.Add(chaosLoad)

	// The fault must find the backend healthy and serving hits: a lookup that timed
	// out while warming (a busy machine) may have opened the breaker.
	time.Sleep(chaosWarm)
	hitsWarm := metric(t, s, series("hit"))
	for !backendHealthy() || metric(t, s, series("hit")) == hitsWarm {
		if time.Since(began) > chaosWarm+chaosReady {
			t.Fatalf("%s not healthy, or no hit, %v into the load: %+v", bc.name, time.Since(began).Round(time.Millisecond), health(t, s))
		}
		time.Sleep(50 * time.Millisecond)
	}
	errorsBefore, hitsBefore := metric(t, s, series("error")), metric(t, s, series("hit"))
	faultAt = time.Now()
	if err := f.inject(t); err != nil {
		t.Errorf("%s %s: %v", bc.name, f.name, err)
	}
	// Poll /healthcheck for the fault's length.
	for time.Since(faultAt) < chaosFault {
		if !backendHealthy() {
			r.unhealthy = true
		}
		time.Sleep(50 * time.Millisecond)
	}
	repairStart := time.Now()
	if err := f.repair(t); err != nil {
		t.Errorf("repair of %s (%s): %v", bc.name, f.name, err)
	}
	repairedAt = time.Now()
	r.repairTook = repairedAt.Sub(repairStart)
	r.errorsSeen = metric(t, s, series("error")) - errorsBefore
	hits := metric(t, s, series("hit"))
	r.hitsDuring = hits - hitsBefore

	// Every 100 ms: has a hit come, is the backend healthy again?
	r.hitsAfter, r.healthyAfter = -1, -1
	for (r.hitsAfter < 0 || r.healthyAfter < 0) && time.Now().Before(loadEnd) {
		time.Sleep(100 * time.Millisecond)
		since := time.Since(repairedAt)
		if r.hitsAfter < 0 && metric(t, s, series("hit")) > hits {
			r.hitsAfter = since
		}
		if r.healthyAfter < 0 && backendHealthy() {
			r.healthyAfter = since
		}
	}
	if err := <-load; err != nil {
		t.Fatalf("gameday: %v", err)
	}
	r.queueFull = metric(t, s, `calcserver_rejections_total{reason="queue_full"}`)
	lat := accessLatencies(t, s, r.sum.Requests)
	var during []time.Duration
	for _, l := range lat {
		r.runMax = max(r.runMax, l.took)
		if !l.start.Before(faultAt) && l.start.Before(repairedAt) {
			during = append(during, l.took)
		}
	}
	r.faultReqs = len(during)
	if len(during) > 0 {
		slices.Sort(during)
		r.faultMax = during[len(during)-1]
		r.faultP99 = during[len(during)*99/100]
	}

	t.Logf("chaos: %s %s: timeline: fault %v into the load, repaired at %v (took %v), load of %.1f s, access log from %v to %v",
		bc.name, f.name, faultAt.Sub(began).Round(time.Millisecond), repairedAt.Sub(began).Round(time.Millisecond), r.repairTook.Round(time.Millisecond),
		r.sum.Duration, lat[0].start.Sub(began).Round(time.Millisecond), lat[len(lat)-1].start.Sub(began).Round(time.Millisecond))
	t.Logf("chaos: %s %s: %d requests sent (%d offered, %d dropped): %v, %d wrong, %d errors %v, %d timeouts, %.0f queue-full; "+
		"%s failed %.0f operations and hit %.0f times during the fault; outage in /healthcheck: %v; repair took %v; hits again %v and healthy %v after it; "+
		"requests begun during the fault: %d, max %v, p99 %v (CacheTimeout %v); slowest of the run %v; gameday p99 %.1f ms, max %.1f ms",
		bc.name, f.name, r.sum.Requests, r.sum.Offered, r.sum.Dropped, r.sum.ByStatus, r.sum.Wrong, r.sum.Errors, r.sum.ByError, r.sum.Timeouts, r.queueFull,
		bc.name, r.errorsSeen, r.hitsDuring, r.unhealthy, r.repairTook.Round(time.Millisecond), r.hitsAfter.Round(time.Millisecond), r.healthyAfter.Round(time.Millisecond),
		r.faultReqs, r.faultMax.Round(time.Millisecond), r.faultP99.Round(time.Millisecond), chaosCacheTimeout, r.runMax.Round(time.Millisecond),
		r.sum.Latency.P99, r.sum.Latency.Max)

	// Every answer right, and 200 or a queue-full 503.
	if r.sum.Wrong != 0 {
		t.Errorf("%d wrong answers; the latest:\n%v", r.sum.Wrong, r.sum.Events[max(0, len(r.sum.Events)-3):])
	}
	for status, n := range r.sum.ByStatus {
		if status != "200" && status != "503" {
			t.Errorf("%d answers %s; want only 200 and queue-full 503 (%v)", n, status, r.sum.ByError)
		}
	}
	if n503 := r.sum.ByStatus["503"]; n503 > 0 && r.queueFull < float64(n503) {
		t.Errorf("%d answers 503, but only %.0f queue-full rejections", n503, r.queueFull)
	}
	offered := int64(chaosLoad / time.Second * chaosRate)
	if least := offered * 9 / 10; r.sum.Requests < least || r.sum.Correct < r.sum.Requests-r.sum.ByStatus["503"] {
		t.Errorf("%d requests sent, %d correct; want at least %d sent, each correct or 503", r.sum.Requests, r.sum.Correct, least)
	}
	if f.readable {
		// The fault was real: writes failed. Lookups went on working: hits never
		// stopped, so there is nothing to resume.
		if r.errorsSeen < 1 {
			t.Errorf("%s: no failed operation during the fault: it did not reach calcserver", bc.name)
		}
		if r.hitsDuring < 1 {
			t.Errorf("%s: no hit while it was read-only; its entries can still be read", bc.name)
		}
	} else if r.hitsAfter < 0 || r.hitsAfter > chaosResume {
		t.Errorf("%s: no hit within %v of the repair (hits again after %v; -1: not before the load ended, %v after the repair)",
			bc.name, chaosResume, r.hitsAfter, loadEnd.Sub(repairedAt).Round(time.Millisecond))
	}
	if !r.unhealthy {
		t.Errorf("/healthcheck never showed %s unhealthy during the fault", bc.name)
	}
	if r.healthyAfter < 0 {
		t.Errorf("%s: /healthcheck did not show it healthy again before the load ended", bc.name)
	}
	// A broken backend costs a request at most one CacheTimeout.
	if bound := chaosCacheTimeout + chaosWorkTime + chaosSlack; r.runMax > bound {
		t.Errorf("the slowest request took %v; a broken backend may cost at most CacheTimeout %v (+ WorkTime %v + %v slack = %v)",
			r.runMax, chaosCacheTimeout, chaosWorkTime, chaosSlack, bound)
	}
	if f.stalls && r.faultMax < chaosCacheTimeout {
		t.Errorf("no request begun during the stall waited for CacheTimeout %v (the slowest took %v): the stall did not reach calcserver",
			chaosCacheTimeout, r.faultMax)
	}
	if r.faultReqs < int(chaosFault/time.Second*chaosRate/2) {
		t.Errorf("only %d requests began during the %v fault", r.faultReqs, chaosFault)
	}
	// Writes work again: a new key is stored.
	if a := s.get(t, "GET", "/calc?input=chaos-after-repair"); a.code != 200 || a.cache != "MISS" {
		t.Fatalf("a new key after the repair: %d %s, want 200 MISS", a.code, a.cache)
	}
	eventually(t, bc.name+" storing a new key after the repair", func() bool {
		return string(stored(t, bc, "chaos-after-repair")) == string(want("chaos-after-repair"))
	})
}

// accessLine is one /calc request of the access log.
type accessLine struct {
	start time.Time // when it reached the handler
	took  time.Duration
}

var accessRE = regexp.MustCompile(`^time=(\S+) level=INFO msg=access .* path="?/calc\?.* duration=(\S+) cache=`)

// accessLatencies reads the /calc lines of p's access log, waiting (at most 5 s) until
// it holds at least n of them.
func accessLatencies(t *testing.T, p *proc, n int64) []accessLine {
	t.Helper()
	var lines []accessLine
	parse := func(logs string) bool {
		lines = lines[:0]
		for l := range strings.SplitSeq(logs, "\n") {
			m := accessRE.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			end, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil {
				t.Fatalf("%s: access line with a bad time: %v\n%s", p.logPath, err, l)
			}
			took, err := time.ParseDuration(m[2])
			if err != nil {
				t.Fatalf("%s: access line with a bad duration: %v\n%s", p.logPath, err, l)
			}
			lines = append(lines, accessLine{end.Add(-took), took})
		}
		return int64(len(lines)) >= n
	}
	if !parse(p.logUntil(parse)) {
		t.Fatalf("%s holds %d /calc access lines; gameday sent %d requests", p.logPath, len(lines), n)
	}
	return lines
}

// grepOut returns the lines of s that do not contain sub.
func grepOut(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if !strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
