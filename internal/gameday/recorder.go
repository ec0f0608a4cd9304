package gameday

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// result is how one request ended, as the recorder counts it.
type result struct {
	target   string
	outcome  Outcome
	status   int // 0: no HTTP answer
	servedBy string
	latency  time.Duration
	kind     string // error kind, for Error
	reason   string // score event reason, for Wrong
}

// second is what the recorder keeps of each closed second, for the trend.
type second struct {
	points  float64 // request points only; the trend subtracts cost as a rate
	answers int64
	span    time.Duration
}

// shortFinal is the shortest last interval whose rate is shown on its own; a shorter
// one (the run ended just after a tick) is measured together with the second before,
// so that one answer in a millisecond does not read as a thousand per second.
const shortFinal = 500 * time.Millisecond

// recorder counts results and builds snapshots. Requests finish on many goroutines,
// so everything is under mu; the ticker alone closes seconds.
type recorder struct {
	mu sync.Mutex
	o  Options
	sc Scoring

	offered, requests, dropped               int64
	correct, wrong, errs, timeouts, canceled int64
	points                                   float64 // request points, cost excluded
	cost                                     float64 // dollars charged
	blocks                                   int     // cost blocks charged
	all, cur                                 *hdrhistogram.Histogram
	allMax, curMax                           time.Duration
	curAnswers                               int64
	curPoints                                float64
	lastTick                                 time.Duration
	seconds                                  []second
	byStatus, byError                        map[string]int64
	byTarget, byServedBy                     map[string]*Counts
	events                                   []ScoreEvent // ring of the newest MaxEvents
	secErrors                                map[string]int64
	secErrCount, secTimeouts                 int64
	series                                   []Snapshot
	inflight                                 func() int64
	rate                                     func(time.Duration) float64
}

// histogramMax is the largest latency a histogram records: anything longer is counted
// at this value (requests end at Options.Timeout anyway).
func histogramMax(timeout time.Duration) int64 {
	return max(2*timeout, time.Minute).Microseconds()
}

func newRecorder(o Options, inflight func() int64, rate func(time.Duration) float64) *recorder {
	hi := histogramMax(o.Timeout)
	r := &recorder{
		o:          o,
		sc:         o.Scoring,
		all:        hdrhistogram.New(1, hi, 3),
		cur:        hdrhistogram.New(1, hi, 3),
		byStatus:   map[string]int64{},
		byError:    map[string]int64{},
		byTarget:   map[string]*Counts{},
		byServedBy: map[string]*Counts{},
		secErrors:  map[string]int64{},
		inflight:   inflight,
		rate:       rate,
	}
	for _, t := range o.Targets {
		r.byTarget[t] = &Counts{}
	}
	r.chargeCost(0)
	return r
}

// arrival counts one arrival, sent or dropped.
func (r *recorder) arrival(sent bool) {
	r.mu.Lock()
	r.offered++
	if sent {
		r.requests++
	} else {
		r.dropped++
	}
	r.mu.Unlock()
}

// add counts a finished request at elapsed.
func (r *recorder) add(res result, elapsed time.Duration) {
	pts := r.sc.Points(res.outcome, res.latency)
	r.mu.Lock()
	defer r.mu.Unlock()
	status := strconv.Itoa(res.status)
	switch res.outcome {
	case Correct:
		r.correct++
	case Wrong:
		r.wrong++
		r.event(elapsed, pts, res.reason)
	case Error:
		r.errs++
		r.byError[res.kind]++
		r.secErrors[res.kind]++
		r.secErrCount++
		if res.status == 0 || res.kind != statusKind(res.status) {
			// No answer, or one that broke off: an error, whatever its status line
			// said, so that by_status["200"] stays correct + wrong.
			status = "error"
		}
	case Timeout:
		r.timeouts++
		r.secTimeouts++
		status = "timeout"
	case Canceled:
		r.canceled++
		status = "canceled"
	}
	r.byStatus[status]++
	r.points += pts
	r.curPoints += pts
	if res.status != 0 && res.outcome != Timeout && res.outcome != Canceled {
		// Latency of every HTTP answer, whatever its status; timeouts (also those whose
		// headers came but not the body), cancellations and transport errors have none
		// to tell.
		us := min(max(res.latency.Microseconds(), 1), r.all.HighestTrackableValue())
		_ = r.all.RecordValue(us)
		_ = r.cur.RecordValue(us)
		r.allMax = max(r.allMax, res.latency)
		r.curMax = max(r.curMax, res.latency)
		r.curAnswers++
	}
	count(r.byTarget, res.target, res.outcome)
	if res.outcome == Canceled {
		return
	}
	if res.status != 0 {
		by := res.servedBy
		if by == "" {
			by = "(none)"
		}
		count(r.byServedBy, by, res.outcome)
	}
}

func count(m map[string]*Counts, k string, o Outcome) {
	c := m[k]
	if c == nil {
		c = &Counts{}
		m[k] = c
	}
	c.Requests++
	switch o {
	case Correct:
		c.Correct++
	case Wrong:
		c.Wrong++
	case Error:
		c.Errors++
	case Timeout:
		c.Timeouts++
	case Canceled:
		c.Canceled++
	}
}

// event appends a score event, keeping the newest MaxEvents.
func (r *recorder) event(at time.Duration, points float64, reason string) {
	if len(r.events) == MaxEvents {
		copy(r.events, r.events[1:])
		r.events = r.events[:MaxEvents-1]
	}
	r.events = append(r.events, ScoreEvent{At: at, AtMS: at.Milliseconds(), Points: points, Reason: reason})
}

// chargeCost charges every 15-minute block started by elapsed.
func (r *recorder) chargeCost(elapsed time.Duration) {
	if r.o.Instances == 0 || r.o.CostPer15m == 0 {
		return
	}
	for b := BlocksStarted(elapsed); r.blocks < b; {
		r.blocks++
		dollars := float64(r.o.Instances) * r.o.CostPer15m
		r.cost += dollars
		r.event(time.Duration(r.blocks-1)*CostBlock, -dollars*r.sc.PointsPerDollar, costReason(r.o.Instances, r.o.CostPer15m, r.blocks))
	}
}

// tick closes the second that ends at elapsed and returns the snapshot. Errors and
// timeouts become one score event per second each, so that an outage reads as a few
// lines rather than thousands.
func (r *recorder) tick(elapsed time.Duration, final bool) Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.secErrCount > 0 {
		kinds := slices.Collect(maps.Keys(r.secErrors))
		sort.Slice(kinds, func(i, j int) bool {
			if r.secErrors[kinds[i]] != r.secErrors[kinds[j]] {
				return r.secErrors[kinds[i]] > r.secErrors[kinds[j]]
			}
			return kinds[i] < kinds[j]
		})
		parts := make([]string, len(kinds))
		for i, k := range kinds {
			parts[i] = fmt.Sprintf("%s ×%d", k, r.secErrors[k])
		}
		r.event(elapsed, float64(r.secErrCount)*r.sc.Error, fmt.Sprintf("%s in the last second: %s", plural(r.secErrCount, "error"), strings.Join(parts, ", ")))
		clear(r.secErrors)
		r.secErrCount = 0
	}
	if r.secTimeouts > 0 {
		r.event(elapsed, float64(r.secTimeouts)*r.sc.Timeout, fmt.Sprintf("%s in the last second: no answer within %s", plural(r.secTimeouts, "timeout"), r.o.Timeout))
		r.secTimeouts = 0
	}
	r.chargeCost(elapsed)

	span := elapsed - r.lastTick
	answers, rateSpan := r.curAnswers, span
	if final && span < shortFinal && len(r.seconds) > 0 {
		prev := r.seconds[len(r.seconds)-1]
		answers, rateSpan = answers+prev.answers, span+prev.span
	}
	r.seconds = append(r.seconds, second{points: r.curPoints, answers: r.curAnswers, span: span})
	s := r.snapshotLocked(elapsed)
	s.Final = final
	if rateSpan > 0 {
		s.Rate = float64(answers) / rateSpan.Seconds()
	}
	s.Points = r.curPoints
	s.Latency = latency(r.cur, r.curMax)
	r.cur.Reset()
	r.curMax, r.curAnswers, r.curPoints = 0, 0, 0
	r.lastTick = elapsed
	r.series = append(r.series, s)
	s.Events = slices.Clone(r.events)
	return s
}

// snapshotLocked is the totals at elapsed; per-second fields are left to tick.
func (r *recorder) snapshotLocked(elapsed time.Duration) Snapshot {
	return Snapshot{
		Elapsed:    elapsed,
		ElapsedS:   elapsed.Seconds(),
		DurationS:  r.o.Duration.Seconds(),
		Second:     int(elapsed.Round(time.Second) / time.Second),
		TargetRate: r.rate(min(elapsed, r.o.Duration)),
		Offered:    r.offered,
		Requests:   r.requests,
		Correct:    r.correct,
		Wrong:      r.wrong,
		Errors:     r.errs,
		Timeouts:   r.timeouts,
		Dropped:    r.dropped,
		Inflight:   r.inflight(),
		Score:      r.scoreLocked(),
		Trend:      r.trendLocked(),
		RunLatency: latency(r.all, r.allMax),
		Cost:       r.cost,
	}
}

// scoreLocked is the points earned less the cost in points.
func (r *recorder) scoreLocked() float64 { return r.points - r.cost*r.sc.PointsPerDollar }

// trendLocked is the points per minute of the closed seconds within the trend window.
func (r *recorder) trendLocked() float64 {
	var pts float64
	var span time.Duration
	for i := len(r.seconds) - 1; i >= 0 && span < r.sc.TrendWindow; i-- {
		pts += r.seconds[i].points
		span += r.seconds[i].span
	}
	return Trend(pts, span, r.sc.CostPerMinute(r.o.Instances, r.o.CostPer15m))
}

// summary is the run's result; call it after the final tick.
func (r *recorder) summary(seed int64, elapsed time.Duration, maxConns int64) Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Summary{
		Targets:    slices.Clone(r.o.Targets),
		Rate:       r.o.Rate,
		Seed:       seed,
		Offered:    r.offered,
		Requests:   r.requests,
		Correct:    r.correct,
		Wrong:      r.wrong,
		Errors:     r.errs,
		Timeouts:   r.timeouts,
		Canceled:   r.canceled,
		Dropped:    r.dropped,
		Score:      r.scoreLocked(),
		Points:     r.points,
		Trend:      r.trendLocked(),
		Cost:       r.cost,
		Instances:  r.o.Instances,
		Latency:    latency(r.all, r.allMax),
		ByStatus:   maps.Clone(r.byStatus),
		ByError:    maps.Clone(r.byError),
		ByTarget:   map[string]Counts{},
		ByServedBy: map[string]Counts{},
		MaxConns:   maxConns,
		Series:     slices.Clone(r.series),
		Events:     slices.Clone(r.events),
		Duration:   elapsed.Seconds(),
	}
	for k, c := range r.byTarget {
		s.ByTarget[k] = *c
	}
	for k, c := range r.byServedBy {
		s.ByServedBy[k] = *c
	}
	if s.Events == nil {
		s.Events = []ScoreEvent{}
	}
	return s
}

// latency reads the percentiles of h in milliseconds; max is exact, not a bucket's.
func latency(h *hdrhistogram.Histogram, maxLatency time.Duration) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	top := float64(maxLatency.Microseconds()) / 1000
	// A bucket's highest value can pass the true maximum by 0.1%: never show a p99
	// above the max.
	ms := func(q float64) float64 { return min(float64(h.ValueAtQuantile(q))/1000, top) }
	return Latency{P50: ms(50), P90: ms(90), P99: ms(99), Max: top}
}

func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
