package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/logging"
	"github.com/unicorn-rentals/unicorn/internal/queue"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

var tokenRE = regexp.MustCompile(`^ey[0-9A-Za-z]{230,280}$`)

// jobCountRE finds the /metrics line that counts finished jobs.
var jobCountRE = regexp.MustCompile(`(?m)^calcserver_job_duration_seconds_count .*$`)

type fixture struct {
	srv *Server
	ts  *httptest.Server
	log *svctest.Buffer
}

func newFixture(t *testing.T, mod func(*Options)) *fixture {
	t.Helper()
	logs := &svctest.Buffer{}
	o := Options{
		Queue:       queue.Options{Cores: 1, QueueSize: 5, WorkTime: 20 * time.Millisecond, Mode: queue.Sleep},
		Cache:       cache.NewChain(cache.Options{}, cache.Tier{Name: "memory", Cache: cache.NewMemory(1000, 0), Local: true}),
		CalcVersion: 1,
		Host:        "test-host",
		Version:     "test",
		Logger:      slog.New(slog.NewTextHandler(logs, nil)),
		AccessLog:   mustAccess(logs),
	}
	if mod != nil {
		mod(&o)
	}
	s := New(o)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return &fixture{srv: s, ts: ts, log: logs}
}

// do sends one request. An error fails t with Errorf and returns an empty response
// (status 0), so that do can be called from the goroutines of a burst.
func (f *fixture) do(t *testing.T, method, path string) (*http.Response, string) {
	t.Helper()
	failed := &http.Response{Header: http.Header{}}
	req, err := http.NewRequest(method, f.ts.URL+path, nil)
	if err != nil {
		t.Errorf("%s %s: %v", method, path, err)
		return failed, ""
	}
	resp, err := f.ts.Client().Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, path, err)
		return failed, ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("%s %s: reading the body: %v", method, path, err)
	}
	return resp, string(b)
}

// waitBusy waits until a job holds a core of f's queue; it fails t if none does
// within 5 s.
func (f *fixture) waitBusy(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for st := f.srv.q.Stats(); st.Busy == 0; st = f.srv.q.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("no job held a core within 5s: queue %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCalcAnswersTheContract(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := f.do(t, "GET", "/calc?input=testing")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if body != string(calc.Body(calc.Token, 1, []byte("testing"))) || !tokenRE.MatchString(body) {
		t.Fatalf("body %q is not the token for testing", body)
	}
	want := map[string]string{
		"Content-Type":  "text/plain; charset=utf-8",
		"X-Cache":       "MISS",
		"X-Served-By":   "test-host",
		"Cache-Control": "public, max-age=86400",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	r := calc.Sum(1, []byte("testing"))
	if got := resp.Header.Get("ETag"); got != fmt.Sprintf(`"%x"`, r[:]) {
		t.Errorf("ETag = %q", got)
	}
	resp, body2 := f.do(t, "GET", "/calc?input=testing")
	if resp.Header.Get("X-Cache") != "HIT" || body2 != body {
		t.Fatalf("repeat: X-Cache %q, same body %v", resp.Header.Get("X-Cache"), body2 == body)
	}
	resp, body3 := f.do(t, "HEAD", "/calc?input=testing")
	if resp.StatusCode != 200 || body3 != "" || resp.ContentLength != int64(len(body)) {
		t.Fatalf("HEAD: status %d, body %q, length %d", resp.StatusCode, body3, resp.ContentLength)
	}
}

func TestKeysAreDecodedAndPlusStaysPlus(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Queue.WorkTime = time.Millisecond })
	cases := map[string]string{
		"/calc?input=SUNhbkhhelVuaWNvcm4%2FLTg5OTk%3D": "SUNhbkhhelVuaWNvcm4/LTg5OTk=",
		"/calc?input=a+b":                            "a+b",
		"/calc?input=a%2Bb":                          "a+b",
		"/calc?x=1&input=3615-7184-2117&input=other": "3615-7184-2117",
		"/calc?input=%00%FF":                         "\x00\xff",
	}
	for path, key := range cases {
		t.Run(path, func(t *testing.T) {
			resp, body := f.do(t, "GET", path)
			if resp.StatusCode != 200 || body != string(calc.Body(calc.Token, 1, []byte(key))) {
				t.Fatalf("status %d, body %q is not the answer for %q", resp.StatusCode, body, key)
			}
		})
	}
}

func TestHashFormatAndCacheTTLHeader(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.Format = calc.Hash
		o.CacheTTL = 90 * time.Minute
		o.Queue.WorkTime = time.Millisecond
	})
	resp, body := f.do(t, "GET", "/calc?input=testing")
	if body != "Zw7ntJ/FrUZqt7tUUBFl2YSJKqclHCzvI0OlWePIThA=" {
		t.Fatalf("hash body %q", body)
	}
	if got := resp.Header.Get("Cache-Control"); got != "public, max-age=5400" {
		t.Fatalf("Cache-Control %q", got)
	}
}

func TestErrorsAreJSONAndNeverCached(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.DenyPattern = []string{"H@XX0RR333DDD"} })
	long := strings.Repeat("a", MaxKeyLen+1)
	cases := map[string]struct {
		method, path string
		code         int
	}{
		"a missing input is 400":       {"GET", "/calc", 400},
		"an empty input is 400":        {"GET", "/calc?input=", 400},
		"a key over 1024 bytes is 400": {"GET", "/calc?input=" + long, 400},
		"a bad percent escape is 400":  {"GET", "/calc?input=%zz", 400},
		"a denied key is 403":          {"GET", "/calc?input=xH@XX0RR333DDDx", 403},
		"a denied base64 key is 403":   {"GET", "/calc?input=SEBYWDBSUjMzM0RERA%3D%3D", 403},
		"POST is 405":                  {"POST", "/calc?input=testing", 405},
		"an unknown path is 404":       {"GET", "/nope", 404},
		"DELETE on healthcheck is 405": {"DELETE", "/healthcheck", 405},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			resp, body := f.do(t, c.method, c.path)
			if resp.StatusCode != c.code {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, c.code, body)
			}
			var doc struct{ Error string }
			if err := json.Unmarshal([]byte(body), &doc); err != nil || doc.Error == "" {
				t.Fatalf("body %q is not {\"error\":...}", body)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("Cache-Control %q", resp.Header.Get("Cache-Control"))
			}
			if c.code == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
				t.Fatalf("Allow %q", resp.Header.Get("Allow"))
			}
		})
	}
	// No refusal started a job. Drain returns once every job the queue took has
	// finished, so even a job that nobody waited for is in the count by now.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := f.srv.q.Drain(ctx); err != nil {
		t.Fatalf("a job was still running 5s after the refusals: %v", err)
	}
	_, metrics := f.do(t, "GET", "/metrics")
	if jobs := jobCountRE.FindString(metrics); jobs != "calcserver_job_duration_seconds_count 0" {
		t.Fatalf("a refused request started a job: %q, want 0 jobs", jobs)
	}
	// The denied key was not stored either.
	if _, _, err := f.srv.cache.Get(t.Context(), "xH@XX0RR333DDDx"); err == nil {
		t.Fatal("a denied key was stored")
	}
	// Every refusal has its access line, with the escaped path, the status and,
	// for a denied key, the key.
	lines := accessLines(f.log.String())
	for name, c := range cases {
		var key string
		if c.code == 403 {
			key, _ = inputKey(c.path[len("/calc?"):])
		}
		found := 0
		for _, l := range lines {
			if l["method"] == c.method && l["path"] == logging.EscapeURI(c.path) {
				found++
				if l["status"] != fmt.Sprint(c.code) || (c.code == 403 && l["key"] != logging.EscapeKey(key)) {
					t.Errorf("%s: access line has status=%s key=%q, want %d and %q", name, l["status"], l["key"], c.code, key)
				}
			}
		}
		if found != 1 {
			t.Errorf("%s: %d access lines for %s %s, want 1; the log:\n%s", name, found, c.method, c.path, f.log.String())
		}
	}
}

// accessLines parses the logfmt access lines of log into their fields, unquoted.
// The access log writes no space inside a value (it escapes them), so a space
// always separates fields.
func accessLines(log string) []map[string]string {
	var lines []map[string]string
	for line := range strings.Lines(log) {
		fields := map[string]string{}
		for kv := range strings.FieldsSeq(line) {
			k, v, _ := strings.Cut(kv, "=")
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			fields[k] = v
		}
		if fields["msg"] == "access" {
			lines = append(lines, fields)
		}
	}
	return lines
}

// TestDenyPatternIsCaseSensitive: a pattern matches the key, or its base64
// decoding, only with the same case (calcserver purge -match matches the same way).
func TestDenyPatternIsCaseSensitive(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.DenyPattern = []string{"hack"}
		o.Queue.WorkTime = time.Millisecond
	})
	cases := map[string]int{
		"hack":     403,
		"xhackx":   403,
		"aGFjaw==": 403, // base64 of "hack"
		"HACK":     200,
		"Hack":     200,
		"SEFDSw==": 200, // base64 of "HACK"
	}
	for key, code := range cases {
		if resp, body := f.do(t, "GET", "/calc?input="+url.QueryEscape(key)); resp.StatusCode != code {
			t.Errorf("DenyPattern hack, key %q: status %d, want %d (%s)", key, resp.StatusCode, code, body)
		}
	}
}

func TestRootAndHealthcheck(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := f.do(t, "GET", "/")
	if resp.StatusCode != 200 || body != Homepage {
		t.Fatalf("GET / = %d %q", resp.StatusCode, body)
	}
	f.do(t, "GET", "/calc?input=testing")
	f.do(t, "GET", "/calc?input=testing")
	resp, body = f.do(t, "GET", "/healthcheck")
	var h health
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || h.Status != "ok" || h.Version != "test" ||
		h.Queue != (queueHealth{Waiting: 0, Capacity: 5, Busy: 0, Cores: 1}) ||
		len(h.Cache) != 1 || h.Cache[0] != (cache.Health{Name: "memory", Healthy: true}) ||
		h.Requests != (requestCounts{Served: 2, Hits: 1, Misses: 1, Rejected: 0}) {
		t.Fatalf("healthcheck %d %s", resp.StatusCode, body)
	}
	f.srv.BeginDrain()
	resp, body = f.do(t, "GET", "/healthcheck")
	if resp.StatusCode != 503 || !strings.Contains(body, `"status":"draining"`) {
		t.Fatalf("draining healthcheck %d %s", resp.StatusCode, body)
	}
	// Everything else is still served during ShutdownDelay.
	if resp, _ := f.do(t, "GET", "/calc?input=new-key"); resp.StatusCode != 200 {
		t.Fatalf("calc while draining began: %d", resp.StatusCode)
	}
}

func TestBurstOfDistinctKeysFillsCoresAndQueueThenGets503(t *testing.T) {
	for _, cores := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d cores", cores), func(t *testing.T) {
			f := newFixture(t, func(o *Options) {
				o.Queue.Cores = cores
				o.Queue.WorkTime = 300 * time.Millisecond
			})
			const n = 12
			codes := make(chan *http.Response, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					resp, _ := f.do(t, "GET", fmt.Sprintf("/calc?input=burst-%d", i))
					codes <- resp
				})
			}
			wg.Wait()
			close(codes)
			ok, full := 0, 0
			for resp := range codes {
				switch resp.StatusCode {
				case 200:
					ok++
				case 503:
					full++
					if resp.Header.Get("Retry-After") != "1" {
						t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
					}
				}
			}
			if ok != cores+5 || full != n-cores-5 {
				t.Fatalf("200s %d, 503s %d; want %d and %d", ok, full, cores+5, n-cores-5)
			}
			if got := f.srv.rejected.Load(); got != int64(n-cores-5) {
				t.Fatalf("rejected counter %d", got)
			}
		})
	}
}

func TestBurstForOneKeyRunsOneJob(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Queue.WorkTime = 200 * time.Millisecond })
	const n = 20
	results := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, _ := f.do(t, "GET", "/calc?input=same")
			results <- fmt.Sprint(resp.StatusCode, " ", resp.Header.Get("X-Cache"))
		})
	}
	wg.Wait()
	close(results)
	count := map[string]int{}
	for r := range results {
		count[r]++
	}
	if count["200 MISS"] != 1 || count["200 MISS"]+count["200 SHARED"]+count["200 HIT"] != n {
		t.Fatalf("answers %v: want one MISS, the rest SHARED or HIT", count)
	}
	if f.srv.misses.Load()-int64(count["200 SHARED"]) != 1 {
		t.Fatalf("more than one job ran: %v", count)
	}
}

func TestAccessLogEscapesKeys(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Queue.WorkTime = time.Millisecond })
	f.do(t, "GET", "/calc?input=evil%0Aline%22quote")
	logs := f.log.String()
	if strings.Contains(logs, "evil\nline") || !strings.Contains(logs, "key=evil%0Aline%22quote") {
		t.Fatalf("key not escaped in log:\n%s", logs)
	}
	for _, field := range []string{"client=", "method=GET", "status=200", "bytes=244", "duration=", "cache=MISS", "queue_wait="} {
		if !strings.Contains(logs, field) {
			t.Errorf("access line lacks %s:\n%s", field, logs)
		}
	}
}

func TestMetricsExposeQueueAndRequests(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Queue.WorkTime = time.Millisecond })
	f.do(t, "GET", "/calc?input=m")
	f.do(t, "GET", "/calc?input=m")
	_, body := f.do(t, "GET", "/metrics")
	for _, want := range []string{
		`calcserver_calc_answers_total{cache="HIT"} 1`,
		`calcserver_calc_answers_total{cache="MISS"} 1`,
		`calcserver_http_requests_total{cache="HIT",code="200",handler="calc"} 1`,
		`calcserver_job_duration_seconds_count 1`,
		`calcserver_queue_capacity 5`,
		`calcserver_cores 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestDrainRefusesNewMissesServesHitsAndFinishesJobs(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Queue.WorkTime = 300 * time.Millisecond })
	f.do(t, "GET", "/calc?input=cached")
	inflight := make(chan int, 1)
	go func() {
		resp, _ := f.do(t, "GET", "/calc?input=slow")
		inflight <- resp.StatusCode
	}()
	f.waitBusy(t)
	drained := make(chan error, 1)
	go func() { drained <- f.srv.q.Drain(t.Context()) }()
	// Until Drain has begun, a new miss is served (after a wait in line): each try
	// asks for a key of its own, so that no earlier try's answer is a hit.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		resp, _ := f.do(t, "GET", fmt.Sprintf("/calc?input=brand-new-%d", i))
		if resp.StatusCode == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new miss was refused 503 within 5s of Drain; the last (try %d) got %d, queue %+v", i, resp.StatusCode, f.srv.q.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if resp, _ := f.do(t, "GET", "/calc?input=cached"); resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("hit during drain: %d", resp.StatusCode)
	}
	if resp, body := f.do(t, "GET", "/calc?input=another"); resp.StatusCode != 503 || !strings.Contains(body, "draining") {
		t.Fatalf("miss during drain: %d %s", resp.StatusCode, body)
	}
	if code := <-inflight; code != 200 {
		t.Fatalf("in-flight job answered %d", code)
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
}

func TestInputKeyParsing(t *testing.T) {
	cases := map[string]struct {
		raw, key string
		err      error
	}{
		"plain":              {"input=abc", "abc", nil},
		"plus stays plus":    {"input=a+b", "a+b", nil},
		"escaped name":       {"%69nput=x", "x", nil},
		"missing":            {"other=1", "", errNoKey},
		"empty":              {"input=", "", errNoKey},
		"bad escape":         {"input=%g1", "", errBadPercent},
		"exactly 1024 bytes": {"input=" + strings.Repeat("%41", 1024), strings.Repeat("A", 1024), nil},
		"1025 bytes":         {"input=" + strings.Repeat("A", 1025), "", errLongKey},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			key, err := inputKey(c.raw)
			if key != c.key || err != c.err {
				t.Fatalf("inputKey(%q) = %q, %v; want %q, %v", c.raw, key, err, c.key, c.err)
			}
		})
	}
}

func FuzzInputKey(f *testing.F) {
	for _, s := range []string{"input=abc", "input=%2B+", "a=b&input=%", "input=" + strings.Repeat("%ff", 1100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		key, err := inputKey(raw)
		if err == nil && (key == "" || len(key) > MaxKeyLen) {
			t.Fatalf("accepted %q", key)
		}
		if e := logging.EscapeKey(key); strings.ContainsAny(e, "\n\r\" \\") {
			t.Fatalf("logging.EscapeKey(%q) = %q", key, e)
		}
	})
}

// BenchmarkCalcHit is the whole /calc handler on a memory-tier hit, with the access
// log discarded before formatting.
func BenchmarkCalcHit(b *testing.B) { benchHit(b, nil) }

// BenchmarkCalcHitLogged is the hit path with a real logfmt access log.
func BenchmarkCalcHitLogged(b *testing.B) {
	benchHit(b, mustAccess(io.Discard))
}

// BenchmarkCalcHitFileLog is the hit path as the server runs it with LogLocation set:
// the access line formatted by logging.Access and queued in logging.Async, which writes it to a
// real file off the request goroutine.
func BenchmarkCalcHitFileLog(b *testing.B) {
	log, stop := fileLogger(b)
	defer stop()
	benchHit(b, log)
}

// BenchmarkInputKey is the parsing of the query into the key, with percent-decoding.
func BenchmarkInputKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := inputKey("input=SUNhbkhhelVuaWNvcm4%2FLTg5OTk%3D"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHitPathAllocations holds the hit path, logged to a real file through
// logging.Async, to its budget of at most 10 allocations (a count, not a time).
func TestHitPathAllocations(t *testing.T) {
	log, stop := fileLogger(t)
	defer stop()
	h, req, w := hitHandler(log)
	allocs := testing.AllocsPerRun(200, func() {
		clear(w.h)
		h.ServeHTTP(w, req)
	})
	if w.code != 200 {
		t.Fatalf("status %d", w.code)
	}
	if allocs > 10 {
		t.Fatalf("%.1f allocations per hit, want at most 10", allocs)
	}
	t.Logf("%.1f allocations per hit", allocs)
}

// fileLogger is the server's access logger with LogLocation set: logfmt into
// logging.Async over a file in a temporary directory.
func fileLogger(tb testing.TB) (*logging.Access, func()) {
	tb.Helper()
	f, err := logging.OpenFile(tb.TempDir() + "/calcserver.log")
	if err != nil {
		tb.Fatal(err)
	}
	a := logging.NewAsync(f, logging.BufferSize, logging.FlushInterval)
	return mustAccess(a), func() {
		if err := a.Close(); err != nil {
			tb.Error(err)
		}
		f.Close()
	}
}

// hitHandler is a server whose memory tier already holds the request's answer.
func hitHandler(log *logging.Access) (http.Handler, *http.Request, *discardWriter) {
	s := New(Options{
		Queue:     queue.Options{Cores: 1, QueueSize: 5, WorkTime: time.Millisecond, Mode: queue.Sleep},
		Cache:     cache.NewChain(cache.Options{}, cache.Tier{Name: "memory", Cache: cache.NewMemory(1000, 0), Local: true}),
		AccessLog: log,
	})
	h := s.Handler()
	req := httptest.NewRequest("GET", "/calc?input=SUNhbkhhelVuaWNvcm4%2FLTg5OTk%3D", nil)
	h.ServeHTTP(httptest.NewRecorder(), req)
	return h, req, &discardWriter{h: http.Header{}}
}

func benchHit(b *testing.B, log *logging.Access) {
	h, req, w := hitHandler(log)
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	if w.code != 200 {
		b.Fatalf("status %d", w.code)
	}
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = 200
	}
	return len(p), nil
}
func (w *discardWriter) WriteHeader(code int) { w.code = code }

func TestRequestsRefusedBeforeAHandlerAreCounted(t *testing.T) {
	s := New(Options{Queue: queue.Options{WorkTime: time.Millisecond, Mode: queue.Sleep}})
	if err := s.Open("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	addr := fmt.Sprintf("127.0.0.1:%d", s.Port())
	send := func(raw string) string { return exchange(t, addr, raw) }
	if got := send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.Contains(got, Homepage) {
		t.Fatalf("good request: %q", got)
	}
	if got := send("GARBAGE\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 400") {
		t.Fatalf("malformed request: %q", got)
	}
	big := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n"
	if got := send(big); !strings.HasPrefix(got, "HTTP/1.1 431") {
		t.Fatalf("oversized headers: %q", got[:min(len(got), 40)])
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "calcserver_http_refused_total 2\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("refused counter:\n%s", grepLines(string(b), "refused"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exchange sends raw on a new connection to addr and returns everything the server
// answers until it closes the connection.
func exchange(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write to %s: %v", addr, err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read from %s after %q: %v", addr, raw[:min(len(raw), 40)], err)
	}
	return string(b)
}

// TestRefusalsOfTheHTTPLayerArePlainText: what net/http refuses before any handler
// runs is answered in net/http's own plain text, not the contract's JSON, and
// without X-Served-By (the README says so).
func TestRefusalsOfTheHTTPLayerArePlainText(t *testing.T) {
	s := New(Options{Queue: queue.Options{WorkTime: time.Millisecond, Mode: queue.Sleep}, Host: "test-host"})
	if err := s.Open("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	addr := fmt.Sprintf("127.0.0.1:%d", s.Port())
	cases := map[string]struct{ raw, status, body string }{
		"headers over the limit are 431": {
			"GET /calc?input=testing HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n",
			"431 Request Header Fields Too Large", "431 Request Header Fields Too Large",
		},
		"HTTP/2.0 in the request line is 505": {
			"GET /calc?input=testing HTTP/2.0\r\nHost: x\r\nConnection: close\r\n\r\n",
			"505 HTTP Version Not Supported: unsupported protocol version",
			"505 HTTP Version Not Supported: unsupported protocol version",
		},
		"a garbage request line is 400": {"GARBAGE\r\n\r\n", "400 Bad Request", "400 Bad Request"},
		"HTTP/1.1 without Host is 400": {
			"GET /calc?input=testing HTTP/1.1\r\nConnection: close\r\n\r\n",
			"400 Bad Request: missing required Host header", "400 Bad Request: missing required Host header",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := exchange(t, addr, c.raw)
			want := "HTTP/1.1 " + c.status + "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" + c.body
			if got != want {
				t.Fatalf("answer\n%q\nwant net/http's plain text\n%q", got, want)
			}
		})
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// downCache is a shared backend that never answers.
type downCache struct{}

func (downCache) Get(context.Context, string) (calc.Result, error) {
	return calc.Result{}, errors.New("connection refused")
}
func (downCache) Set(context.Context, string, calc.Result) error {
	return errors.New("connection refused")
}

func TestADeadBackendDegradesHealthButNeverFailsARequest(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.Queue.WorkTime = time.Millisecond
		o.Cache = cache.NewChain(cache.Options{Failures: 1, BackoffMin: time.Hour},
			cache.Tier{Name: "memory", Cache: cache.NewMemory(100, 0), Local: true},
			cache.Tier{Name: "redis", Cache: downCache{}})
	})
	for i := range 5 {
		if resp, _ := f.do(t, "GET", fmt.Sprintf("/calc?input=k%d", i)); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	resp, body := f.do(t, "GET", "/healthcheck")
	if resp.StatusCode != 200 || !strings.Contains(body, `"status":"degraded"`) ||
		!strings.Contains(body, `{"name":"redis","healthy":false,"error":"connection refused"}`) {
		t.Fatalf("healthcheck %d %s", resp.StatusCode, body)
	}
}

func TestConditionalRequestsAndUncleanPaths(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Queue.WorkTime = time.Millisecond })
	resp, _ := f.do(t, "GET", "/calc?input=testing")
	etag := resp.Header.Get("ETag")
	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		req, _ := http.NewRequest("GET", f.ts.URL+"/calc?input=testing", nil)
		req.Header.Set("If-None-Match", inm)
		resp, err := f.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("If-None-Match %s: %d, want 304", inm, resp.StatusCode)
		}
	}
	for _, path := range []string{"//calc?input=x", "/calc/../calc?input=x", "/calc/"} {
		resp, body := f.do(t, "GET", path)
		if resp.StatusCode != 404 || !strings.Contains(body, `"error"`) || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %q, want the JSON 404", path, resp.StatusCode, body)
		}
	}
}

func TestAClientThatLeavesTheLineIsLoggedAs499NotCountedAsRejected(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Queue.WorkTime = 300 * time.Millisecond })
	busy := make(chan struct{})
	go func() { // holds the core
		defer close(busy)
		if resp, err := f.ts.Client().Get(f.ts.URL + "/calc?input=busy"); err == nil {
			resp.Body.Close()
		}
	}()
	t.Cleanup(func() { <-busy })
	f.waitBusy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.ts.URL+"/calc?input=impatient", nil)
	if _, err := f.ts.Client().Do(req); err == nil {
		t.Fatal("the impatient request was answered")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(f.log.String(), "key=impatient status=499") {
		if time.Now().After(deadline) {
			t.Fatalf("no 499 access line:\n%s", f.log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := f.srv.rejected.Load(); n != 0 {
		t.Fatalf("a client that left was counted as rejected (%d)", n)
	}
}

func TestMetricsExposeLostLogLines(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.LogWriteFailed = func() int64 { return 3 }
		o.LogDropped = func() int64 { return 7 }
	})
	_, body := f.do(t, "GET", "/metrics")
	for _, want := range []string{"calcserver_log_writes_failed_total 3", "calcserver_log_lines_dropped_total 7"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// mustAccess is the server's logfmt access log writing to w.
func mustAccess(w io.Writer) *logging.Access {
	a, err := logging.NewAccess(w, "logfmt")
	if err != nil {
		panic(err)
	}
	return a
}
