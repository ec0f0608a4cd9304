package board

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/gameday"
)

// sseEvent is one server-sent event as a client reads it.
type sseEvent struct {
	name string // "" for a plain message
	data string
}

// stream is an open /events response read by a goroutine.
type stream struct {
	resp   *http.Response
	events chan sseEvent // closed when the stream ends
	cancel context.CancelFunc
}

// openStream GETs url and reads its events until the stream ends or the test does.
func openStream(t *testing.T, url string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &stream{resp: resp, events: make(chan sseEvent, 4096), cancel: cancel}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	go func() {
		defer close(s.events)
		r := bufio.NewReaderSize(resp.Body, 1<<16)
		var ev sseEvent
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if ev.data != "" || ev.name != "" {
					select {
					case s.events <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "data: "):
				ev.data += strings.TrimPrefix(line, "data: ")
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			}
		}
	}()
	return s
}

// next returns the next event, failing the test if none comes within d.
func (s *stream) next(t *testing.T, d time.Duration) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(d):
		t.Fatalf("no event within %v", d)
	}
	panic("unreachable")
}

// nextSnapshot returns the next plain message decoded.
func (s *stream) nextSnapshot(t *testing.T) wireSnapshot {
	t.Helper()
	ev := s.next(t, 5*time.Second)
	if ev.name != "" {
		t.Fatalf("got event %q, want a snapshot", ev.name)
	}
	var w wireSnapshot
	if err := json.Unmarshal([]byte(ev.data), &w); err != nil {
		t.Fatalf("%v in %q", err, ev.data)
	}
	return w
}

func newTestBoard(t *testing.T, o Options) (*Board, *httptest.Server) {
	t.Helper()
	b := New(o)
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(func() {
		b.Close()
		srv.Close()
	})
	return b, srv
}

func snap(second int, score float64) gameday.Snapshot {
	return gameday.Snapshot{
		Elapsed:  time.Duration(second) * time.Second,
		Second:   second,
		Requests: int64(second * 10),
		Correct:  int64(second * 9),
		Wrong:    1,
		Errors:   2,
		Timeouts: 3,
		Dropped:  4,
		Inflight: 5,
		Score:    score,
		Trend:    120,
		Rate:     9.5,
		Latency:  gameday.Latency{P50: 12.5, P90: 40, P99: 850, Max: 1200},
		Cost:     16,
		Events: []gameday.ScoreEvent{
			{At: 1500 * time.Millisecond, Points: -50, Reason: "answer did not match for key abc (got x, expected y)"}, // no AtMS
			{At: time.Duration(second) * time.Second, AtMS: int64(second) * 1000, Points: 90, Reason: "9 correct answers"},
		},
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkNoLeak fails if a goroutine of this package's Board or client is still running.
func checkNoLeak(t *testing.T) {
	t.Helper()
	var dump string
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		dump = string(buf[:runtime.Stack(buf, true)])
		var left []string
		for g := range strings.SplitSeq(dump, "\n\n") {
			if strings.Contains(g, "board.(*Board)") || strings.Contains(g, "board.(*client)") || strings.Contains(g, "board.waitTimeout") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of the board are left:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEventsStream(t *testing.T) {
	b, srv := newTestBoard(t, Options{})
	b.Publish(snap(1, 10))
	b.Publish(snap(2, 100)) // the latest: what a new client gets first

	s := openStream(t, srv.URL+"/events")
	if s.resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", s.resp.StatusCode)
	}
	if ct := s.resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := s.resp.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control %q", cc)
	}

	first := s.nextSnapshot(t)
	if first.Score != 100 || first.Second != 2 {
		t.Fatalf("first event: score %v second %d, want the latest (100, 2)", first.Score, first.Second)
	}
	want := snap(2, 100)
	if first.Requests != want.Requests || first.Correct != want.Correct || first.Wrong != 1 || first.Errors != 2 ||
		first.Timeouts != 3 || first.Dropped != 4 || first.Inflight != 5 || first.Trend != 120 || first.Rate != 9.5 ||
		first.Latency != want.Latency || first.Cost != 16 {
		t.Errorf("fields differ: %+v", first.Snapshot)
	}
	if len(first.Events) != 2 || first.Events[0].AtMS != 1500 || first.Events[1].AtMS != 2000 || first.Events[0].Points != -50 ||
		!strings.HasPrefix(first.Events[0].Reason, "answer did not match") {
		t.Errorf("events: %+v", first.Events)
	}
	if b.Clients() != 1 {
		t.Errorf("Clients() = %d", b.Clients())
	}

	// The JSON names are the contract's.
	var raw map[string]any
	if err := json.Unmarshal([]byte(mustGet(t, srv.URL+"/snapshot")), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"second", "requests", "correct", "wrong", "errors", "timeouts", "dropped", "inflight", "score", "trend", "rate", "latency_ms", "cost", "events"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("/snapshot has no %q: %v", k, raw)
		}
	}
	lat, _ := raw["latency_ms"].(map[string]any)
	for _, k := range []string{"p50", "p90", "p99", "max"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latency_ms has no %q", k)
		}
	}

	// A value JSON cannot hold does not stop the snapshot.
	nan := snap(3, 200)
	nan.Latency.P99 = math.NaN()
	nan.Trend = math.Inf(1)
	nan.RunLatency.Max = math.Inf(-1)
	nan.Events[0].Points = math.NaN()
	b.Publish(nan)
	if got := s.nextSnapshot(t); got.Score != 200 || got.Latency.P99 != 0 || got.Trend != 0 || got.RunLatency.Max != 0 || got.Events[0].Points != 0 {
		t.Fatalf("with NaN and Inf: %+v", got.Snapshot)
	}

	for i, score := range []float64{250, -40.5, 300} {
		b.Publish(snap(3+i, score))
		if got := s.nextSnapshot(t); got.Score != score || got.Second != 3+i {
			t.Fatalf("after Publish(%v): got score %v second %d", score, got.Score, got.Second)
		}
	}
}

func TestEventsBeforeFirstSnapshot(t *testing.T) {
	b, srv := newTestBoard(t, Options{})
	if code := statusOf(t, srv.URL+"/snapshot"); code != http.StatusNoContent {
		t.Errorf("/snapshot before Publish: %d, want 204", code)
	}
	s := openStream(t, srv.URL+"/events")
	waitFor(t, 5*time.Second, "the client to register", func() bool { return b.Clients() == 1 })
	b.Publish(snap(0, 7))
	if got := s.nextSnapshot(t); got.Score != 7 {
		t.Fatalf("score %v", got.Score)
	}
}

// bigSnap is a snapshot of about 64 KB, so that a client that reads nothing fills
// the connection's buffers after a few hundred.
func bigSnap(second int, score float64) gameday.Snapshot {
	s := snap(second, score)
	s.Events = nil
	for i := range 64 {
		s.Events = append(s.Events, gameday.ScoreEvent{At: time.Duration(i) * time.Millisecond, Points: -1, Reason: strings.Repeat("x", 1000)})
	}
	return s
}

// stuckClient asks for /events and then reads nothing.
func stuckClient(t *testing.T, srv *httptest.Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetReadBuffer(4096) // fill up sooner
	}
	if _, err := fmt.Fprintf(c, "GET /events HTTP/1.1\r\nHost: board\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return c
}

// blockedWriters counts the stream handlers blocked in a write to their client.
func blockedWriters() int {
	buf := make([]byte, 1<<20)
	n := 0
	for g := range strings.SplitSeq(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "board.(*client).write") && strings.Contains(g, "[IO wait") {
			n++
		}
	}
	return n
}

func TestStuckClientDoesNotBlockPublish(t *testing.T) {
	b, srv := newTestBoard(t, Options{ClientBuffer: 4, WriteTimeout: time.Minute})
	stuckClient(t, srv)
	waitFor(t, 5*time.Second, "the stuck client to register", func() bool { return b.Clients() == 1 })
	good := openStream(t, srv.URL+"/events")
	waitFor(t, 5*time.Second, "the good client to register", func() bool { return b.Clients() == 2 })

	// ~16 MB for a client that reads nothing: far more than the socket buffers hold.
	const n = 250
	var slowest time.Duration
	start := time.Now()
	for i := range n {
		s := bigSnap(i, float64(i))
		t0 := time.Now()
		b.Publish(s)
		slowest = max(slowest, time.Since(t0))
		if i%50 == 0 {
			time.Sleep(5 * time.Millisecond) // let the good client keep up now and then
		}
	}
	total := time.Since(start)
	t.Logf("%d publishes in %v, slowest %v", n, total, slowest)
	if slowest > time.Second {
		t.Errorf("a Publish took %v with a stuck client", slowest)
	}

	// The good client still gets the newest snapshot (older ones may be dropped).
	deadline := time.After(20 * time.Second)
	for last := -1; last != n-1; {
		select {
		case ev, ok := <-good.events:
			if !ok {
				t.Fatal("the good client's stream ended")
			}
			var w wireSnapshot
			if err := json.Unmarshal([]byte(ev.data), &w); err != nil {
				t.Fatal(err)
			}
			if w.Second <= last {
				t.Fatalf("second %d after %d: out of order", w.Second, last)
			}
			last = w.Second
		case <-deadline:
			t.Fatal("the good client did not get the last snapshot")
		}
	}
	// And the stuck one really is stuck in a write (this test tests that case).
	waitFor(t, 10*time.Second, "the stuck client's handler to block in a write", func() bool { return blockedWriters() >= 1 })
	if b.Clients() != 2 {
		t.Errorf("Clients() = %d, want 2", b.Clients())
	}

	// Close cuts the stuck stream and ends the good one, promptly.
	t0 := time.Now()
	b.Close()
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
	if b.Clients() != 0 {
		t.Errorf("Clients() = %d after Close", b.Clients())
	}
	checkNoLeak(t)
}

func TestStuckClientIsDropped(t *testing.T) {
	b, srv := newTestBoard(t, Options{ClientBuffer: 2, WriteTimeout: 300 * time.Millisecond})
	stuckClient(t, srv)
	waitFor(t, 5*time.Second, "the stuck client to register", func() bool { return b.Clients() == 1 })
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; b.Clients() > 0; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the stuck client was not dropped")
		}
		b.Publish(bigSnap(i, float64(i)))
		time.Sleep(2 * time.Millisecond)
	}
	checkNoLeak(t)
}

func TestCloseEndsStreams(t *testing.T) {
	b, srv := newTestBoard(t, Options{})
	b.Publish(snap(1, 42))
	streams := []*stream{openStream(t, srv.URL+"/events"), openStream(t, srv.URL+"/events")}
	for _, s := range streams {
		if got := s.nextSnapshot(t); got.Score != 42 {
			t.Fatalf("score %v", got.Score)
		}
	}
	t0 := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > closeGrace/2 {
		t.Errorf("Close took %v with clients that read", d)
	}
	for i, s := range streams {
		if ev := s.next(t, 5*time.Second); ev.name != "end" {
			t.Errorf("stream %d: last event %+v, want \"end\"", i, ev)
		}
		select {
		case ev, ok := <-s.events:
			if ok {
				t.Errorf("stream %d: event %+v after end", i, ev)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("stream %d did not end", i)
		}
	}
	if b.Clients() != 0 {
		t.Errorf("Clients() = %d", b.Clients())
	}
	// After Close: 204 (browsers stop reconnecting), Publish and Close do nothing.
	if code := statusOf(t, srv.URL+"/events"); code != http.StatusNoContent {
		t.Errorf("/events after Close: %d, want 204", code)
	}
	b.Publish(snap(2, 43))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, srv.URL+"/snapshot"); !strings.Contains(got, `"score":42`) {
		t.Errorf("/snapshot after Close: %s", got)
	}
	checkNoLeak(t)
}

func TestClientGoneIsRemoved(t *testing.T) {
	b, srv := newTestBoard(t, Options{})
	b.Publish(snap(1, 1))
	s := openStream(t, srv.URL+"/events")
	s.nextSnapshot(t)
	if b.Clients() != 1 {
		t.Fatalf("Clients() = %d", b.Clients())
	}
	s.cancel()
	s.resp.Body.Close()
	waitFor(t, 5*time.Second, "the client to be removed", func() bool { return b.Clients() == 0 })
	b.Publish(snap(2, 2)) // no client: nothing to do
	checkNoLeak(t)
}

func TestServeAndPages(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := New(Options{Title: "Unicorn <Rentals>", Targets: []string{"http://127.0.0.1:8080", "http://127.0.0.1:8081"}})
	served := make(chan error, 1)
	go func() { served <- b.Serve(ln) }()
	base := "http://" + ln.Addr().String()

	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{"Unicorn &lt;Rentals&gt;", "http://127.0.0.1:8081", `src="board.js"`, `href="board.css"`, `id="score"`, `id="chart"`, `id="events"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page has no %q", want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	// Nothing from elsewhere: the page loads only its own files, and the script and
	// the style name no other site (the SVG namespace is a name, not a fetch).
	if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?[a-z]*:?//`).FindString(page); m != "" {
		t.Errorf("the page loads from another site: %s", m)
	}
	for _, path := range []string{"/board.js", "/board.css"} {
		if got := strings.ReplaceAll(mustGet(t, base+path), "http://www.w3.org/2000/svg", ""); strings.Contains(got, "://") {
			t.Errorf("%s names another site", path)
		}
	}
	if code := statusOf(t, base+"/nope"); code != http.StatusNotFound {
		t.Errorf("/nope: %d", code)
	}

	b.Publish(snap(5, 500))
	b.Publish(snap(6, 600))
	if got := mustGet(t, base+"/snapshot"); !strings.Contains(got, `"score":600`) {
		t.Errorf("/snapshot: %s", got)
	}
	if got := mustGet(t, base+"/history"); got != "[[5,500],[6,600]]" {
		t.Errorf("/history: %s", got)
	}

	s := openStream(t, base+"/events")
	if got := s.nextSnapshot(t); got.Score != 600 {
		t.Fatalf("score %v", got.Score)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	if _, err := http.Get(base + "/"); err == nil {
		t.Error("still serving after Close")
	}
	checkNoLeak(t)
}

func TestHistory(t *testing.T) {
	b := New(Options{History: 10})
	defer b.Close()
	for i := range 25 {
		b.Publish(snap(i, float64(i)))
	}
	b.Publish(snap(24, 99)) // the same second: replaced
	b.mu.Lock()
	h := append([]point(nil), b.hist...)
	b.mu.Unlock()
	if len(h) > 10 || len(h) < 5 {
		t.Fatalf("%d points kept: %v", len(h), h)
	}
	if h[0].second != 0 || h[len(h)-1] != (point{24, 99}) {
		t.Errorf("history %v", h)
	}
	for i := 1; i < len(h); i++ {
		if h[i].second <= h[i-1].second {
			t.Fatalf("history out of order: %v", h)
		}
	}
	b.Publish(snap(3, 1)) // a second that goes back: a new run
	b.mu.Lock()
	h = append([]point(nil), b.hist...)
	b.mu.Unlock()
	if len(h) != 1 || h[0] != (point{3, 1}) {
		t.Errorf("after a new run: %v", h)
	}
}

func TestServeAfterClose(t *testing.T) {
	b := New(Options{})
	b.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Serve(ln); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("the listener is still open")
	}
}

func mustGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return string(body)
}

func statusOf(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
