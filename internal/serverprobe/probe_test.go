package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// The probes run against release builds of calcserver and of the bare baseline, with
// small numbers: these tests check what the probes assert and report, not timings
// (scripts/bench-server.sh measures those).
func TestProbes(t *testing.T) {
	calcserver := svctest.BuildStatic(t, "./cmd/calcserver", "test")
	bare := svctest.BuildStatic(t, "./internal/bareserver", "test")
	ctx := t.Context()

	t.Run("a burst is answered Cores+QueueSize 200s and proper 503s, and goroutines and heap return to idle", func(t *testing.T) {
		o := OverloadOptions{Calcserver: calcserver, Bare: bare, Cores: 2, QueueSize: 2, WorkTime: 2 * time.Second,
			Factor: 10, Rounds: 1, Settle: 10 * time.Second, Dir: t.TempDir()}
		rep, rounds, err := Overload(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		noFailures(t, rep)
		r := rounds[0]
		if r.burst != 40 || r.admitted != 4 || r.rejected != 36 {
			t.Errorf("a burst of %d got %d × 200 and %d × 503; want 40: 4 and 36", r.burst, r.admitted, r.rejected)
		}
		if r.reject.n != 36 || r.serverReject.n != 36 {
			t.Errorf("latencies of %d 503s seen and %d in the access log; want 36 each", r.reject.n, r.serverReject.n)
		}
		if r.health.n < 1 {
			t.Error("/healthcheck was not polled during the burst")
		}
		if r.bare.n != 40 {
			t.Errorf("the baseline answered %d of the burst of 40", r.bare.n)
		}
		if !r.settled || r.after.goroutines > r.idle.goroutines {
			t.Errorf("goroutines %d at idle, %d after the burst (settled: %v)", r.idle.goroutines, r.after.goroutines, r.settled)
		}
		if r.after.heap > r.idle.heap+heapSlack {
			t.Errorf("heap %.0f B at idle, %.0f B after the burst", r.idle.heap, r.after.heap)
		}
		if r.serverCPU <= 0 || r.probeCPU <= 0 {
			t.Errorf("CPU time during the burst: server %v, probe %v; want both above 0", r.serverCPU, r.probeCPU)
		}
		wantTables(t, rep, "| median |", "503 p99, median of the rounds", "goroutines back to idle")
	})

	t.Run("concurrent requests for one new key run one job and all get the right answer", func(t *testing.T) {
		o := CoalesceOptions{Calcserver: calcserver, Clients: 200, WorkTime: time.Second, Rounds: 2, Dir: t.TempDir()}
		rep, rounds, err := Coalesce(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		noFailures(t, rep)
		for i, r := range rounds {
			if r.jobs != 1 || r.miss != 1 || r.shared+r.hit != 199 || r.correct != 200 || int(r.joins) != r.shared {
				t.Errorf("round %d: %g jobs, %d MISS, %d SHARED, %d HIT, %g joins, %d correct; want 1 job, 1 MISS, 199 others, 200 correct",
					i+1, r.jobs, r.miss, r.shared, r.hit, r.joins, r.correct)
			}
		}
		wantTables(t, rep, "rounds with exactly one job", "| 2 | 1 | 1 |")
	})

	t.Run("memory is read at idle, with idle connections open and with the cache filled", func(t *testing.T) {
		o := MemoryOptions{Calcserver: calcserver, Bare: bare, Conns: 300, Entries: 2000, Workers: 16, Rounds: 1, Dir: t.TempDir()}
		rep, rounds, err := Memory(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		noFailures(t, rep)
		r := rounds[0]
		if r.idleRSS <= 0 || r.connsRSS <= r.idleRSS || r.bareIdleRSS <= 0 || r.bareConnsRSS <= r.bareIdleRSS {
			t.Errorf("RSS: calcserver %.0f B idle, %.0f B with the connections; baseline %.0f B, %.0f B; want each above 0 and growing",
				r.idleRSS, r.connsRSS, r.bareIdleRSS, r.bareConnsRSS)
		}
		if r.conns.goroutines < r.idle.goroutines+300-goroutineSlack {
			t.Errorf("%d goroutines at idle, %d with 300 connections open", r.idle.goroutines, r.conns.goroutines)
		}
		if r.fdLimit < 300 {
			t.Errorf("the server may open %d files", r.fdLimit)
		}
		if r.misses != 2000 || r.sample != 1000 || r.sampleHits != 1000 {
			t.Errorf("the fill ran %g misses and %d of %d keys asked again were hits; want 2000 and all", r.misses, r.sampleHits, r.sample)
		}
		if r.fillAfter.heap <= r.fillBefore.heap {
			t.Errorf("heap %.0f B before the fill, %.0f B after", r.fillBefore.heap, r.fillAfter.heap)
		}
		wantTables(t, rep, "RSS at idle", "the bare net/http server with 300 idle connections", "2000 entries in the memory tier")
	})

	t.Run("the command prints its command line and table and exits 0", func(t *testing.T) {
		var out, errOut bytes.Buffer
		code := run(ctx, []string{"coalesce", "-calcserver", calcserver, "-clients", "20", "-rounds", "1", "-work-time", "200ms"}, &out, &errOut)
		if code != exitOK {
			t.Fatalf("exit %d; stderr:\n%s", code, errOut.String())
		}
		for _, want := range []string{"serverprobe coalesce -calcserver=calcserver -clients=20 ", "| 1 | 1 | 1 |", "| met |"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("the output lacks %q:\n%s", want, out.String())
			}
		}
	})
}

func noFailures(t *testing.T, rep report) {
	t.Helper()
	for _, f := range rep.failures {
		t.Error(f)
	}
}

// wantTables checks that the printed report holds each of wants.
func wantTables(t *testing.T, rep report, wants ...string) {
	t.Helper()
	var b bytes.Buffer
	rep.write(&b)
	for _, want := range wants {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, b.String())
		}
	}
}

func TestCheckRejection(t *testing.T) {
	good := func() answer {
		h := http.Header{}
		h.Set("Retry-After", "2")
		h.Set("Cache-Control", "no-store")
		return answer{status: http.StatusServiceUnavailable, header: h, body: []byte(`{"error":"queue full: retry later"}`)}
	}
	if why := checkRejection(good(), "2"); why != "" {
		t.Fatalf("a proper 503 was found wanting: %s", why)
	}
	tests := map[string]func(a *answer){
		"a 503 without Retry-After is refused":         func(a *answer) { a.header.Del("Retry-After") },
		"a 503 with another Retry-After is refused":    func(a *answer) { a.header.Set("Retry-After", "4") },
		"a 503 a CDN may keep is refused":              func(a *answer) { a.header.Del("Cache-Control") },
		"a 503 whose body is not JSON is refused":      func(a *answer) { a.body = []byte("queue full") },
		"a 503 whose JSON has no error is refused":     func(a *answer) { a.body = []byte(`{"status":"queue full"}`) },
		"a 503 that is not about the queue is refused": func(a *answer) { a.body = []byte(`{"error":"draining"}`) },
	}
	for name, spoil := range tests {
		t.Run(name, func(t *testing.T) {
			a := good()
			spoil(&a)
			if why := checkRejection(a, "2"); why == "" {
				t.Errorf("accepted %d %v %q", a.status, a.header, a.body)
			}
		})
	}
}

func TestCommandLineErrors(t *testing.T) {
	tests := map[string][]string{
		"no subcommand is a usage error":         nil,
		"an unknown subcommand is a usage error": {"stress"},
		"a missing -calcserver is a usage error": {"overload"},
		"zero rounds are a usage error":          {"memory", "-calcserver", "x", "-rounds", "0"},
		"an argument after the flags is refused": {"coalesce", "-calcserver", "x", "extra"},
		"an unknown flag is a usage error":       {"coalesce", "-calcserver", "x", "-conns", "5"},
	}
	for name, args := range tests {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(context.Background(), args, &out, &errOut); code != exitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, exitUsage, errOut.String())
			}
			if errOut.Len() == 0 {
				t.Error("nothing said on stderr")
			}
		})
	}
}

func TestMedianAndRank(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median of 3 1 2 = %g", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median of 4 1 3 2 = %g", got)
	}
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	l := latencies(d)
	if l.p50 != 100*time.Millisecond || l.p99 != 198*time.Millisecond || l.max != 200*time.Millisecond || l.n != 200 {
		t.Errorf("latencies of 1..200 ms: %+v", l)
	}
}
