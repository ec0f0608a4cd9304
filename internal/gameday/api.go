// Package gameday drives GameDay-style load at calcservers, verifies every answer and
// keeps the score, as the event's scoreboard does.
//
// This file is the package's contract, shared by `gameday run`, `gameday check`, the
// live board and `gameday bench`. Field names and JSON tags are part of `run -json`.
package gameday

import (
	"errors"
	"fmt"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// Defaults of Options and Scoring; the CLI shows the same values.
const (
	DefaultTimeout     = 8 * time.Second // the contest checker's
	DefaultMaxInflight = 256
	DefaultKeys        = 1000
	DefaultSkew        = 1.1
	DefaultCostPer15m  = 8.0 // dollars, as the event's runbook charges an instance
	DefaultTrendWindow = time.Minute
	DefaultFast        = time.Second
)

// Options configures a run. The zero value of a field takes the documented default
// where one is named.
type Options struct {
	Targets     []string      // base URLs ("http://host:port"), used round-robin
	Rate        float64       // arrivals per second (open model); required, > 0
	Ramp        time.Duration // linear ramp from 0 to Rate over this long; 0: none
	Duration    time.Duration // how long arrivals are offered; required, > 0
	Timeout     time.Duration // per request; 0: DefaultTimeout
	MaxInflight int           // requests in flight (and connections) at most; 0: DefaultMaxInflight
	Keys        int           // distinct keys with Zipf popularity; 0: DefaultKeys
	Skew        float64       // Zipf exponent s (> 1); 0: DefaultSkew
	Unique      float64       // fraction 0..1 of never-repeated keys
	CalcVersion int           // the servers' CalcVersion; 0: 1
	Format      calc.Format   // the servers' ResponseFormat
	Scoring     Scoring       // the zero value: DefaultScoring()
	Instances   int           // instances charged for; 0: no cost
	CostPer15m  float64       // dollars per instance per started 15 minutes (the event's: DefaultCostPer15m)
	Seed        int64         // key-choice seed; 0: a random one (Summary.Seed tells which)
}

// Scoring holds the points of each outcome. DefaultScoring is modelled on the event.
type Scoring struct {
	Correct         float64       // points per correct answer
	FastBonus       float64       // extra points when answered within Fast
	Fast            time.Duration // what counts as fast
	Wrong           float64       // points per wrong answer (negative)
	Error           float64       // points per error (negative)
	Timeout         float64       // points per timeout (negative)
	PointsPerDollar float64       // cost is subtracted as points at this rate
	TrendWindow     time.Duration // sliding window of the trend; 0: DefaultTrendWindow
}

// DefaultScoring returns the documented defaults: +1 per correct answer and +1 more
// within 1 s (so a cache hit is worth twice a 4 s miss), −1 per wrong answer as the
// event charged, −0.5 per error and per timeout (a refusal costs less than a lie),
// 1 point per dollar of cost, trend over the last minute.
func DefaultScoring() Scoring {
	return Scoring{
		Correct:         1,
		FastBonus:       1,
		Fast:            DefaultFast,
		Wrong:           -1,
		Error:           -0.5,
		Timeout:         -0.5,
		PointsPerDollar: 1,
		TrendWindow:     DefaultTrendWindow,
	}
}

// Outcome is how one request ended.
type Outcome int

const (
	Correct  Outcome = iota // 200 and exactly the answer for its key
	Wrong                   // 200 with any other body
	Error                   // non-200 status or a transport error
	Timeout                 // no full answer within Options.Timeout
	Canceled                // cut short because the run was interrupted; not scored
)

func (o Outcome) String() string {
	switch o {
	case Correct:
		return "correct"
	case Wrong:
		return "wrong"
	case Error:
		return "error"
	case Timeout:
		return "timeout"
	case Canceled:
		return "canceled"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// ScoreEvent is one line of the score events list, like the event's Score Events page.
type ScoreEvent struct {
	At     time.Duration `json:"-"`
	AtMS   int64         `json:"at_ms"` // At in milliseconds since the start
	Points float64       `json:"points"`
	Reason string        `json:"reason"` // e.g. "answer did not match for key … (got …, expected …)"
}

// Latency holds latency percentiles in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Snapshot is the state of a run at one moment: what the live line, the board's
// server-sent events and the per-second series show. Counters are totals since the
// start; Rate, Points and Latency cover only the second that just ended.
type Snapshot struct {
	Elapsed    time.Duration `json:"-"`
	ElapsedS   float64       `json:"elapsed_s"`
	DurationS  float64       `json:"duration_s"` // planned Options.Duration, for a progress bar
	Second     int           `json:"second"`     // whole seconds since the start
	TargetRate float64       `json:"target_rate"`
	Offered    int64         `json:"offered"` // arrivals so far: requests + dropped
	Requests   int64         `json:"requests"`
	Correct    int64         `json:"correct"`
	Wrong      int64         `json:"wrong"`
	Errors     int64         `json:"errors"`
	Timeouts   int64         `json:"timeouts"`
	Dropped    int64         `json:"dropped"`
	Inflight   int64         `json:"inflight"`
	Score      float64       `json:"score"`
	Trend      float64       `json:"trend"`  // points per minute over Scoring.TrendWindow, cost included
	Rate       float64       `json:"rate"`   // answers per second in the last second
	Points     float64       `json:"points"` // points earned in the last second, cost included
	Latency    Latency       `json:"latency_ms"`
	RunLatency Latency       `json:"run_latency_ms"` // over every answer since the start
	Cost       float64       `json:"cost"`           // dollars so far
	Final      bool          `json:"final"`          // the run is over; no snapshot follows
	Events     []ScoreEvent  `json:"events,omitempty"`
}

// Counts are the outcomes of a subset of requests (one target, one X-Served-By).
type Counts struct {
	Requests int64 `json:"requests"`
	Correct  int64 `json:"correct"`
	Wrong    int64 `json:"wrong"`
	Errors   int64 `json:"errors"`
	Timeouts int64 `json:"timeouts"`
	Canceled int64 `json:"canceled"` // cut short by an interrupt; in Requests, not scored
}

// Summary is the result of a run, as `run -json` writes it.
type Summary struct {
	Targets    []string          `json:"targets"`
	Rate       float64           `json:"rate"`
	Seed       int64             `json:"seed"`
	Offered    int64             `json:"offered"`  // arrivals: requests + dropped
	Requests   int64             `json:"requests"` // sent
	Correct    int64             `json:"correct"`
	Wrong      int64             `json:"wrong"`
	Errors     int64             `json:"errors"`
	Timeouts   int64             `json:"timeouts"`
	Canceled   int64             `json:"canceled"`
	Dropped    int64             `json:"dropped"`
	Score      float64           `json:"score"`  // Points less the cost in points
	Points     float64           `json:"points"` // earned by the requests, cost not included
	Trend      float64           `json:"trend"`
	Cost       float64           `json:"cost"` // dollars
	Instances  int               `json:"instances"`
	Latency    Latency           `json:"latency_ms"`
	ByStatus   map[string]int64  `json:"by_status"`    // "200", "503", "error", "timeout", "canceled"
	ByError    map[string]int64  `json:"by_error"`     // errors by kind: "status 503", "connection refused"
	ByTarget   map[string]Counts `json:"by_target"`    // per target
	ByServedBy map[string]Counts `json:"by_served_by"` // per X-Served-By ("(none)" without one)
	MaxConns   int64             `json:"max_connections"`
	Series     []Snapshot        `json:"series"` // one per second
	Events     []ScoreEvent      `json:"events"` // the latest score events, newest last
	Duration   float64           `json:"duration_s"`
}

// ErrOptions reports options that cannot run. Errors returned for bad options wrap
// it in an *OptionError naming the option.
var ErrOptions = errors.New("gameday: bad options")

// OptionError is a bad option; Name is the CLI's flag name for it.
type OptionError struct {
	Name   string // "rate", "target", …
	Value  string
	Reason string
}

func (e *OptionError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("-%s: %s", e.Name, e.Reason)
	}
	return fmt.Sprintf("-%s %s: %s", e.Name, e.Value, e.Reason)
}

func (e *OptionError) Unwrap() error { return ErrOptions }
