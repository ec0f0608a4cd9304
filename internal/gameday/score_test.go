package gameday

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestDefaultPoints(t *testing.T) {
	s := DefaultScoring()
	for _, c := range []struct {
		o       Outcome
		latency time.Duration
		want    float64
	}{
		{Correct, 3 * time.Millisecond, 2}, // a cache hit: +1, +1 fast
		{Correct, time.Second, 2},          // exactly Fast still counts as fast
		{Correct, 4 * time.Second, 1},      // a miss: +1 only
		{Wrong, time.Millisecond, -1},      // as the event charged
		{Error, time.Millisecond, -0.5},
		{Timeout, 8 * time.Second, -0.5},
		{Canceled, time.Second, 0},
	} {
		if got := s.Points(c.o, c.latency); !near(got, c.want) {
			t.Errorf("Points(%v, %v) = %v, want %v", c.o, c.latency, got, c.want)
		}
	}
}

func TestCostPerStarted15Minutes(t *testing.T) {
	for _, c := range []struct {
		at     time.Duration
		blocks int
	}{{0, 1}, {time.Minute, 1}, {15*time.Minute - 1, 1}, {15 * time.Minute, 2}, {31 * time.Minute, 3}, {-time.Second, 0}} {
		if got := BlocksStarted(c.at); got != c.blocks {
			t.Errorf("BlocksStarted(%v) = %d, want %d", c.at, got, c.blocks)
		}
	}
	if got := Cost(20*time.Minute, 3, 8); !near(got, 48) {
		t.Errorf("3 instances at $8 after 20m: $%v, want $48", got)
	}
	s := DefaultScoring()
	if got := s.CostPerMinute(3, 8); !near(got, 24.0/15) {
		t.Errorf("CostPerMinute(3, 8) = %v, want %v", got, 24.0/15)
	}
	// 120 points in 30 s is 240 per minute, less a running cost of 1.6 per minute.
	if got := Trend(120, 30*time.Second, 1.6); !near(got, 238.4) {
		t.Errorf("Trend = %v, want 238.4", got)
	}
	if got := Trend(5, 0, 1); got != 0 {
		t.Errorf("Trend over no time = %v, want 0", got)
	}
}

func testOptions() Options {
	o, err := Options{Targets: []string{"http://a"}, Rate: 1, Duration: time.Minute, Instances: 2, CostPer15m: 8}.withDefaults()
	if err != nil {
		panic(err)
	}
	return o
}

func newTestRecorder(o Options) *recorder {
	return newRecorder(o, func() int64 { return 0 }, func(time.Duration) float64 { return o.Rate })
}

func TestRecorderArithmetic(t *testing.T) {
	o := testOptions()
	r := newTestRecorder(o)
	add := func(n int, res result) {
		for range n {
			r.arrival(true)
			r.add(res, 500*time.Millisecond)
		}
	}
	add(10, result{target: "http://a", outcome: Correct, status: 200, servedBy: "h1", latency: 5 * time.Millisecond})
	add(5, result{target: "http://a", outcome: Correct, status: 200, servedBy: "h2", latency: 4 * time.Second})
	add(2, result{target: "http://a", outcome: Wrong, status: 200, servedBy: "h1", latency: time.Millisecond, reason: "answer did not match for key K"})
	add(2, result{target: "http://a", outcome: Error, status: 503, servedBy: "h2", latency: time.Millisecond, kind: "status 503"})
	add(1, result{target: "http://a", outcome: Error, kind: "connection refused"})
	add(1, result{target: "http://a", outcome: Timeout, latency: 8 * time.Second})
	r.arrival(false)
	snap := r.tick(time.Second, false)

	// 10×2 + 5×1 − 2×1 − 3×0.5 − 1×0.5 = 21 points; cost 2 × $8 = 16 points.
	if !near(snap.Score, 5) {
		t.Errorf("score %v, want 21 − 16 = 5", snap.Score)
	}
	if !near(snap.Cost, 16) || !near(snap.Points, 21) {
		t.Errorf("cost $%v points %v, want $16 and 21", snap.Cost, snap.Points)
	}
	// The trend over the one closed second: 21 × 60 per minute less 16/15 per minute.
	if want := 21*60.0 - 16.0/15; math.Abs(snap.Trend-want) > 1e-6 {
		t.Errorf("trend %v, want %v", snap.Trend, want)
	}
	if snap.Offered != 22 || snap.Requests != 21 || snap.Dropped != 1 || snap.Correct != 15 || snap.Wrong != 2 || snap.Errors != 3 || snap.Timeouts != 1 {
		t.Errorf("counts %+v", snap)
	}

	sum := r.summary(1, time.Second, 3)
	wantStatus := map[string]int64{"200": 17, "503": 2, "error": 1, "timeout": 1}
	if fmt.Sprint(sum.ByStatus) != fmt.Sprint(wantStatus) {
		t.Errorf("by_status %v, want %v", sum.ByStatus, wantStatus)
	}
	if sum.ByError["status 503"] != 2 || sum.ByError["connection refused"] != 1 {
		t.Errorf("by_error %v", sum.ByError)
	}
	if c := sum.ByTarget["http://a"]; c != (Counts{Requests: 21, Correct: 15, Wrong: 2, Errors: 3, Timeouts: 1}) {
		t.Errorf("by_target %+v", c)
	}
	if c := sum.ByServedBy["h1"]; c != (Counts{Requests: 12, Correct: 10, Wrong: 2}) {
		t.Errorf("by_served_by h1 %+v", c)
	}
	if c := sum.ByServedBy["h2"]; c != (Counts{Requests: 7, Correct: 5, Errors: 2}) {
		t.Errorf("by_served_by h2 %+v", c)
	}
	if _, ok := sum.ByServedBy["(none)"]; ok {
		t.Errorf("answers without HTTP status counted by X-Served-By: %v", sum.ByServedBy)
	}

	// Events: the cost at 0, one per wrong answer, then one line for the second's
	// errors and one for its timeouts.
	var reasons []string
	var total float64
	for _, e := range sum.Events {
		reasons = append(reasons, fmt.Sprintf("%v %s", e.Points, e.Reason))
		total += e.Points
	}
	want := []string{
		"-16 cost: 2 instances × $8 for the 15 minutes from 0:00",
		"-1 answer did not match for key K",
		"-1 answer did not match for key K",
		"-1.5 3 errors in the last second: status 503 ×2, connection refused ×1",
		"-0.5 1 timeout in the last second: no answer within 8s",
	}
	if strings.Join(reasons, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(reasons, "\n"), strings.Join(want, "\n"))
	}
	if !near(total, -20) {
		t.Errorf("events add up to %v, want -20", total)
	}
}

func TestRecorderChargesEachStartedBlockAndKeepsTheNewestEvents(t *testing.T) {
	o := testOptions()
	r := newTestRecorder(o)
	for i := range MaxEvents + 10 {
		r.add(result{target: "http://a", outcome: Wrong, status: 200, reason: fmt.Sprint("wrong ", i)}, time.Second)
	}
	s := r.tick(16*time.Minute, false)
	if !near(s.Cost, 32) {
		t.Errorf("after 16 minutes cost $%v, want 2 blocks × 2 instances × $8 = $32", s.Cost)
	}
	if len(s.Events) != MaxEvents {
		t.Fatalf("%d events kept, want %d", len(s.Events), MaxEvents)
	}
	last := s.Events[len(s.Events)-1]
	if last.Reason != "cost: 2 instances × $8 for the 15 minutes from 15:00" || last.At != 15*time.Minute || last.AtMS != 900000 {
		t.Errorf("newest event %+v", last)
	}
	if s.Events[0].Reason != "wrong 11" {
		t.Errorf("oldest kept event %q, want wrong 11", s.Events[0].Reason)
	}
}

func TestOptionErrorsNameTheFlag(t *testing.T) {
	base := Options{Targets: []string{"http://127.0.0.1:1"}, Rate: 1, Duration: time.Second}
	for _, c := range []struct {
		flag string
		mod  func(*Options)
	}{
		{"target", func(o *Options) { o.Targets = nil }},
		{"target", func(o *Options) { o.Targets = []string{"ftp://x"} }},
		{"target", func(o *Options) { o.Targets = []string{"localhost:8080"} }},
		{"target", func(o *Options) { o.Targets = []string{"http://x/?a=b"} }},
		{"rate", func(o *Options) { o.Rate = 0 }},
		{"rate", func(o *Options) { o.Rate = math.NaN() }},
		{"duration", func(o *Options) { o.Duration = 0 }},
		{"ramp", func(o *Options) { o.Ramp = 2 * time.Second }},
		{"max-inflight", func(o *Options) { o.MaxInflight = -1 }},
		{"keys", func(o *Options) { o.Keys = MaxKeys + 1 }},
		{"skew", func(o *Options) { o.Skew = 1 }},
		{"unique", func(o *Options) { o.Unique = 1.5 }},
		{"instances", func(o *Options) { o.Instances = -1 }},
		{"cost-per-15m", func(o *Options) { o.CostPer15m = -1 }},
		{"points-wrong", func(o *Options) { o.Scoring = DefaultScoring(); o.Scoring.Wrong = math.Inf(-1) }},
		{"trend-window", func(o *Options) { o.Scoring = DefaultScoring(); o.Scoring.TrendWindow = time.Millisecond }},
	} {
		o := base
		c.mod(&o)
		err := o.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), "-"+c.flag) {
			t.Errorf("%s: error %v, want one naming -%s", c.flag, err, c.flag)
		}
	}
	if err := base.Validate(); err != nil {
		t.Errorf("good options: %v", err)
	}
	got, err := ParseTargets([]string{"http://a:1/, http://b:2", "https://c"})
	if err != nil || strings.Join(got, " ") != "http://a:1 http://b:2 https://c" {
		t.Errorf("ParseTargets = %q, %v", got, err)
	}
}

// pace counts the arrivals a pacer schedules in [0, d] with a virtual clock, as Run
// does with the real one.
func pace(rate float64, ramp, d time.Duration) (hits uint64) {
	p := newPacer(rate, ramp)
	var now time.Duration
	for {
		wait, stop := p.Pace(now, hits)
		if stop || now+wait > d {
			return hits
		}
		now += wait
		hits++
	}
}

func TestPacerOffersRateTimesDuration(t *testing.T) {
	for _, c := range []struct {
		rate      float64
		ramp, d   time.Duration
		want, tol uint64
	}{
		{100, 0, time.Second, 100, 0},
		{0.5, 0, 10 * time.Second, 5, 0},
		{2.5, 0, 4 * time.Second, 10, 0},
		{333, 0, 3 * time.Second, 999, 0},
		{7, 0, 8 * time.Second, 56, 0},
		{6000, 0, 8 * time.Second, 48000, 0},
		// Ramp from 1/s to 100/s over 2 s: (1+100)/2 × 2 ≈ 101, then 100/s for 1 s.
		{100, 2 * time.Second, 3 * time.Second, 201, 3},
	} {
		got := pace(c.rate, c.ramp, c.d)
		if got+c.tol < c.want || got > c.want+c.tol {
			t.Errorf("rate %v ramp %v for %v: %d arrivals, want %d±%d", c.rate, c.ramp, c.d, got, c.want, c.tol)
		}
		if n := arrivals(c.rate, c.ramp, c.d); n != got {
			t.Errorf("rate %v ramp %v for %v: arrivals says %d, the pacer schedules %d", c.rate, c.ramp, c.d, n, got)
		}
	}
	// During the ramp the rate grows; after it, it holds.
	p := newPacer(100, 2*time.Second)
	if r := p.Rate(time.Second); r < 45 || r > 55 {
		t.Errorf("rate half way up the ramp %v, want ≈ 50", r)
	}
	if r := p.Rate(5 * time.Second); r != 100 {
		t.Errorf("rate after the ramp %v, want 100", r)
	}
}

// TestRampFollowsItsCurve holds the ramp to a ramp: in each second the arrivals are
// what the linear rate integrates to, not a step and then a burst (vegeta's
// LinearPacer, asked at a slow start, sent nothing for a second and then everything due).
func TestRampFollowsItsCurve(t *testing.T) {
	const rate, ramp = 100.0, 6 * time.Second
	p := newPacer(rate, ramp)
	perSecond := make([]int, 8)
	var now time.Duration
	for hits := uint64(0); ; hits++ {
		wait, stop := p.Pace(now, hits)
		if stop || now+wait >= 8*time.Second {
			break
		}
		now += wait
		perSecond[int(now/time.Second)]++
	}
	k := (rate - 1) / ramp.Seconds()
	for sec, got := range perSecond {
		want := rate
		if sec < 6 {
			want = 1 + k*(float64(sec)+0.5) // the rate at the middle of the second
		}
		if math.Abs(float64(got)-want) > 2 {
			t.Errorf("second %d: %d arrivals, want %.1f±2 (all: %v)", sec, got, want, perSecond)
		}
	}
}

// TestRecorderKeepsItsCountsConsistent: a timeout whose headers came has no latency, a
// 200 whose body broke off is an error under by_status (so by_status["200"] is correct +
// wrong), and a canceled request is in its target's count as it is in requests.
func TestRecorderKeepsItsCountsConsistent(t *testing.T) {
	r := newTestRecorder(testOptions())
	for range 3 {
		r.arrival(true)
	}
	r.add(result{target: "http://a", outcome: Correct, status: 200, latency: 2 * time.Millisecond}, time.Second)
	r.add(result{target: "http://a", outcome: Timeout, status: 200, latency: 8 * time.Second}, time.Second)
	r.add(result{target: "http://a", outcome: Error, status: 200, kind: "connection closed without an answer", latency: time.Millisecond}, time.Second)
	r.arrival(true)
	r.add(result{target: "http://a", outcome: Canceled, status: 0}, time.Second)
	s := r.summary(1, time.Minute, 1)
	if s.Latency.Max >= 1000 {
		t.Errorf("latency max %v ms: the timeout's 8 s was recorded", s.Latency.Max)
	}
	if got := s.ByStatus["200"]; got != s.Correct+s.Wrong {
		t.Errorf(`by_status["200"] = %d, want correct + wrong = %d (by_status %v)`, got, s.Correct+s.Wrong, s.ByStatus)
	}
	if s.ByStatus["error"] != 1 || s.ByStatus["timeout"] != 1 || s.ByStatus["canceled"] != 1 {
		t.Errorf("by_status %v, want one error, one timeout, one canceled", s.ByStatus)
	}
	if c := s.ByTarget["http://a"]; c.Requests != s.Requests || c.Canceled != 1 {
		t.Errorf("by_target %+v, want all %d requests with 1 canceled", c, s.Requests)
	}
}

// TestPaceCallsEachArrivalInOrder runs Pace on the real clock: every arrival of the
// schedule, numbered in order, none before it is due; and none once ctx has ended.
func TestPaceCallsEachArrivalInOrder(t *testing.T) {
	const rate, d = 1000.0, 50 * time.Millisecond
	start := time.Now()
	var got []uint64
	Pace(t.Context(), rate, 0, d, start, func(n uint64, due time.Duration) {
		if since := time.Since(start); since < due {
			t.Errorf("arrival %d called at %v, before it is due at %v", n, since, due)
		}
		if slot := time.Duration(n+1) * time.Millisecond; due < slot {
			t.Errorf("arrival %d due at %v, before its slot at %v", n, due, slot)
		}
		got = append(got, n)
	})
	if want := arrivals(rate, 0, d); uint64(len(got)) != want {
		t.Fatalf("%d arrivals, want %d", len(got), want)
	}
	for i, n := range got {
		if n != uint64(i) {
			t.Fatalf("arrival %d numbered %d", i, n)
		}
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	Pace(ctx, rate, 0, d, time.Now(), func(n uint64, _ time.Duration) { t.Errorf("arrival %d after ctx ended", n) })
}
