package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/queue"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// TestRequestsStillWaitingWhenDrainTimesOutGet503 runs the shutdown as
// cmd/calcserver does (Drain, then Close when it timed out): a request waiting in
// line and one waiting for its running job must both be answered 503 draining
// with Retry-After, and logged as 503, rather than have their connection closed.
func TestRequestsStillWaitingWhenDrainTimesOutGet503(t *testing.T) {
	logs := &svctest.Buffer{}
	s := New(Options{
		Queue:     queue.Options{Cores: 1, QueueSize: 2, WorkTime: 1500 * time.Millisecond, Mode: queue.Sleep},
		Host:      "test-host",
		AccessLog: mustAccess(logs),
	})
	if err := s.Open("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url := "http://" + s.ln.Addr().String()
	type answer struct {
		code            int
		retry, servedBy string
		body            string
		err             error
	}
	answers := make(chan answer, 2)
	var wg sync.WaitGroup
	for _, key := range []string{"running", "waiting"} {
		wg.Go(func() {
			resp, err := http.Get(url + "/calc?input=" + key)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			answers <- answer{resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("X-Served-By"), string(b), nil}
		})
		deadline := time.Now().Add(5 * time.Second)
		for st := s.q.Stats(); st.Busy+st.Waiting < 1+boolInt(key == "waiting"); st = s.q.Stats() {
			if time.Now().After(deadline) {
				t.Fatalf("%s never reached the queue: %+v", key, st)
			}
			time.Sleep(time.Millisecond)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Drain(ctx); err == nil {
		t.Fatal("Drain did not time out")
	}
	s.Close() // as cmd/calcserver does after a timed-out Drain
	wg.Wait()
	close(answers)
	for a := range answers {
		if a.err != nil {
			t.Fatalf("a waiting request got no answer: %v", a.err)
		}
		if a.code != 503 || a.retry != "2" || a.servedBy != "test-host" || !strings.Contains(a.body, "draining") {
			t.Fatalf("answer %d Retry-After %q X-Served-By %q %s, want 503 draining, Retry-After 2", a.code, a.retry, a.servedBy, a.body)
		}
	}
	for _, key := range []string{"running", "waiting"} {
		if !strings.Contains(logs.String(), "key="+key+" status=503") {
			t.Errorf("no 503 access line for %s:\n%s", key, logs.String())
		}
	}
	if n := s.rejected.Load(); n != 2 {
		t.Errorf("rejected %d, want 2", n)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestNotModifiedIsCountedApart: a 304 is no served answer, in /healthcheck as in
// /metrics.
func TestNotModifiedIsCountedApart(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Queue.WorkTime = time.Millisecond })
	resp, _ := f.do(t, "GET", "/calc?input=testing")
	req, _ := http.NewRequest("GET", f.ts.URL+"/calc?input=testing", nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	resp, err := f.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("status %d, want 304", resp.StatusCode)
	}
	_, body := f.do(t, "GET", "/healthcheck")
	var h health
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatal(err)
	}
	if want := (requestCounts{Served: 1, Misses: 1, NotModified: 1}); h.Requests != want {
		t.Fatalf("requests %+v, want %+v", h.Requests, want)
	}
	if !strings.Contains(body, `"not_modified":1`) {
		t.Fatalf("healthcheck %s", body)
	}
	_, metrics := f.do(t, "GET", "/metrics")
	for _, want := range []string{
		`calcserver_calc_answers_total{cache="HIT"} 0`,
		`calcserver_calc_answers_total{cache="MISS"} 1`,
		`calcserver_calc_not_modified_total{cache="HIT"} 1`,
		`calcserver_http_requests_total{cache="HIT",code="304",handler="calc"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestSeriesStartAtZero: every series whose labels are known is exported before
// its first event, and none that can never have one.
func TestSeriesStartAtZero(t *testing.T) {
	f := newFixture(t, nil)
	_, body := f.do(t, "GET", "/metrics")
	for _, want := range []string{
		`calcserver_rejections_total{reason="queue_full"} 0`,
		`calcserver_rejections_total{reason="draining"} 0`,
		`calcserver_calc_answers_total{cache="SHARED"} 0`,
		`calcserver_calc_not_modified_total{cache="MISS"} 0`,
		`calcserver_http_requests_total{cache="HIT",code="200",handler="calc"} 0`,
		`calcserver_http_requests_total{cache="",code="200",handler="healthcheck"} 0`,
		`calcserver_singleflight_joins_total 0`,
		`calcserver_http_refused_total 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, never := range []string{
		`calcserver_http_requests_total{cache="",code="200",handler="calc"}`,
		`calcserver_http_requests_total{cache="HIT",code="200",handler="healthcheck"}`,
	} {
		if strings.Contains(body, never) {
			t.Errorf("metrics export %s, which can never count", never)
		}
	}
}

// TestErrorAnswersCarryXServedBy: a refusal names the instance that made it.
func TestErrorAnswersCarryXServedBy(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.DenyPattern = []string{"denied"} })
	check := func(method, path string, code int) {
		t.Helper()
		resp, body := f.do(t, method, path)
		if resp.StatusCode != code || resp.Header.Get("X-Served-By") != "test-host" {
			t.Errorf("%s %s: %d X-Served-By %q (%s), want %d from test-host",
				method, path, resp.StatusCode, resp.Header.Get("X-Served-By"), body, code)
		}
	}
	check("GET", "/calc", 400)
	check("GET", "/calc?input=denied", 403)
	check("GET", "/nope", 404)
	check("POST", "/calc?input=x", 405)
	if err := f.srv.q.Drain(t.Context()); err != nil { // nothing runs: returns at once
		t.Fatal(err)
	}
	f.srv.BeginDrain()
	check("GET", "/calc?input=new", 503)
	check("GET", "/healthcheck", 503)
}

func TestQueueFullCarriesXServedBy(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.Queue = queue.Options{Cores: 1, QueueSize: 0, WorkTime: 300 * time.Millisecond, Mode: queue.Sleep}
	})
	done := make(chan struct{})
	go func() { defer close(done); f.do(t, "GET", "/calc?input=busy") }()
	defer func() { <-done }()
	f.waitBusy(t)
	resp, body := f.do(t, "GET", "/calc?input=other")
	if resp.StatusCode != 503 || resp.Header.Get("X-Served-By") != "test-host" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("queue full: %d X-Served-By %q %s", resp.StatusCode, resp.Header.Get("X-Served-By"), body)
	}
}

func TestClientOfBelievesOnlyTrustedProxies(t *testing.T) {
	s := New(Options{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32"),
	}})
	tests := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"an untrusted peer's header is never believed", "198.51.100.7:4000", []string{"203.0.113.9"}, "198.51.100.7:4000"},
		{"a trusted peer without a header is the client", "10.0.0.5:4000", nil, "10.0.0.5:4000"},
		{"a trusted peer's header names the client", "10.0.0.5:4000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"the rightmost untrusted address wins: the left part is the client's own", "10.0.0.5:4000",
			[]string{"1.2.3.4, 203.0.113.9, 10.9.9.9"}, "203.0.113.9"},
		{"several headers are one list", "10.0.0.5:4000", []string{"1.2.3.4", "203.0.113.9", "10.1.1.1"}, "203.0.113.9"},
		{"all trusted: the leftmost", "10.0.0.5:4000", []string{"10.1.1.1,10.2.2.2"}, "10.1.1.1"},
		{"garbage ends the search at the last address believed", "10.0.0.5:4000",
			[]string{"1.2.3.4, <script>, 10.2.2.2"}, "10.2.2.2"},
		{"garbage at once leaves the peer", "10.0.0.5:4000", []string{"unknown"}, "10.0.0.5:4000"},
		{"IPv6 peer and an item with a port", "[2001:db8::1]:4000", []string{"[2001:db8:ffff::9]:555, 2001:db8::2"}, "[2001:db8:ffff::9]:555"},
		{"an IPv4-mapped peer is matched as IPv4", "[::ffff:10.0.0.5]:4000", []string{"203.0.113.9"}, "203.0.113.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/calc?input=x", nil)
			r.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := s.clientOf(r); got != tt.want {
				t.Fatalf("client %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAccessLogRecordsForwardedClientOnlyFromTrustedPeers(t *testing.T) {
	for _, tt := range []struct {
		name    string
		trusted []netip.Prefix
		want    string
	}{
		{"default: nobody is trusted", nil, "client=127.0.0.1:"},
		{"the peer is not trusted", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, "client=127.0.0.1:"},
		{"the peer is trusted", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "client=203.0.113.9 "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) { o.TrustedProxies = tt.trusted })
			req, _ := http.NewRequest("GET", f.ts.URL+"/", nil)
			req.Header.Set("X-Forwarded-For", "203.0.113.9")
			resp, err := f.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if line := grepLines(f.log.String(), "msg=access"); !strings.Contains(line, tt.want) {
				t.Fatalf("access line %q lacks %q", line, tt.want)
			}
		})
	}
}

// TestHitPathAllocationsWithTrustedProxies: believing X-Forwarded-For costs a hit no
// allocation, whether the peer is trusted or not.
func TestHitPathAllocationsWithTrustedProxies(t *testing.T) {
	log, stop := fileLogger(t)
	defer stop()
	base, req, w := hitHandler(log)
	baseline := testing.AllocsPerRun(200, func() { clear(w.h); base.ServeHTTP(w, req) })
	for _, trusted := range []string{"192.0.2.0/24", "10.0.0.0/8"} {
		s := New(Options{
			Queue:          queue.Options{Cores: 1, QueueSize: 5, WorkTime: time.Millisecond, Mode: queue.Sleep},
			Cache:          cache.NewChain(cache.Options{}, cache.Tier{Name: "memory", Cache: cache.NewMemory(1000, 0), Local: true}),
			AccessLog:      log,
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix(trusted)},
		})
		h := s.Handler()
		r := req.Clone(context.Background())
		r.RemoteAddr = "192.0.2.1:1234"
		r.Header.Set("X-Forwarded-For", "203.0.113.9, 10.1.1.1")
		h.ServeHTTP(httptest.NewRecorder(), r)
		allocs := testing.AllocsPerRun(200, func() { clear(w.h); h.ServeHTTP(w, r) })
		if w.code != 200 {
			t.Fatalf("status %d", w.code)
		}
		if allocs > baseline {
			t.Errorf("TrustedProxies %s: %.1f allocations per hit, %.1f without", trusted, allocs, baseline)
		}
	}
}
