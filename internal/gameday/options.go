package gameday

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// MaxRate bounds Options.Rate: far above what one process sends, low enough that the
// pacer's interval stays a whole number of nanoseconds.
const MaxRate = 1_000_000

// ParseTargets splits comma-separated base URLs and checks each: http or https, a
// host, no query or fragment. It returns them without a trailing slash.
func ParseTargets(values []string) ([]string, error) {
	var out []string
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			u, err := url.Parse(t)
			switch {
			case err != nil:
				return nil, &OptionError{Name: "target", Value: t, Reason: "not a URL"}
			case u.Scheme != "http" && u.Scheme != "https":
				return nil, &OptionError{Name: "target", Value: t, Reason: "must start with http:// or https://"}
			case u.Host == "":
				return nil, &OptionError{Name: "target", Value: t, Reason: "has no host"}
			case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
				return nil, &OptionError{Name: "target", Value: t, Reason: "must be a base URL without query, fragment or user (gameday adds /calc?input=…)"}
			}
			out = append(out, strings.TrimSuffix(t, "/"))
		}
	}
	if len(out) == 0 {
		return nil, &OptionError{Name: "target", Reason: "at least one base URL is required (e.g. -target http://localhost:8080)"}
	}
	return out, nil
}

// Validate reports the first option Run would refuse, as an *OptionError naming it.
func (o Options) Validate() error {
	_, err := o.withDefaults()
	return err
}

// withDefaults checks o and fills the defaults its zero values stand for.
func (o Options) withDefaults() (Options, error) {
	targets, err := ParseTargets(o.Targets)
	if err != nil {
		return o, err
	}
	o.Targets = targets
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = DefaultMaxInflight
	}
	if o.Keys == 0 {
		o.Keys = DefaultKeys
	}
	if o.Skew == 0 {
		o.Skew = DefaultSkew
	}
	if o.CalcVersion == 0 {
		o.CalcVersion = 1
	}
	o.Scoring = o.Scoring.withDefaults()
	switch {
	case !(o.Rate > 0) || o.Rate > MaxRate || math.IsInf(o.Rate, 0):
		return o, &OptionError{Name: "rate", Value: f(o.Rate), Reason: fmt.Sprintf("must be > 0 and at most %d per second", MaxRate)}
	case o.Duration <= 0:
		return o, &OptionError{Name: "duration", Value: o.Duration.String(), Reason: "must be > 0"}
	case o.Ramp < 0 || o.Ramp > o.Duration:
		return o, &OptionError{Name: "ramp", Value: o.Ramp.String(), Reason: "must be between 0 and -duration"}
	case o.Timeout < 0:
		return o, &OptionError{Name: "timeout", Value: o.Timeout.String(), Reason: "must be > 0"}
	case o.MaxInflight < 0:
		return o, &OptionError{Name: "max-inflight", Value: strconv.Itoa(o.MaxInflight), Reason: "must be ≥ 1"}
	case o.Keys < 0 || o.Keys > MaxKeys:
		return o, &OptionError{Name: "keys", Value: strconv.Itoa(o.Keys), Reason: fmt.Sprintf("must be 1..%d", MaxKeys)}
	case !(o.Skew > 1) || math.IsInf(o.Skew, 0):
		return o, &OptionError{Name: "skew", Value: f(o.Skew), Reason: "must be > 1 (Zipf's exponent; 1.1 is a long tail, 2 a few hot keys)"}
	case !(o.Unique >= 0 && o.Unique <= 1):
		return o, &OptionError{Name: "unique", Value: f(o.Unique), Reason: "must be a fraction 0..1"}
	case o.CalcVersion < 0 || o.CalcVersion > calc.MaxVersion:
		return o, &OptionError{Name: "calc-version", Value: strconv.Itoa(o.CalcVersion), Reason: fmt.Sprintf("must be 1..%d", calc.MaxVersion)}
	case o.Format != calc.Token && o.Format != calc.Hash:
		return o, &OptionError{Name: "format", Value: strconv.Itoa(int(o.Format)), Reason: "must be token or hash"}
	case o.Instances < 0:
		return o, &OptionError{Name: "instances", Value: strconv.Itoa(o.Instances), Reason: "must be ≥ 0"}
	case !(o.CostPer15m >= 0) || math.IsInf(o.CostPer15m, 0):
		return o, &OptionError{Name: "cost-per-15m", Value: f(o.CostPer15m), Reason: "must be ≥ 0 dollars"}
	}
	if err := o.Scoring.check(); err != nil {
		return o, err
	}
	return o, nil
}

// check refuses values that would make the score meaningless (NaN, infinities).
func (s Scoring) check() error {
	for _, p := range []struct {
		name string
		v    float64
	}{
		{"points-correct", s.Correct}, {"points-fast", s.FastBonus}, {"points-wrong", s.Wrong},
		{"points-error", s.Error}, {"points-timeout", s.Timeout}, {"points-per-dollar", s.PointsPerDollar},
	} {
		if math.IsNaN(p.v) || math.IsInf(p.v, 0) {
			return &OptionError{Name: p.name, Value: strconv.FormatFloat(p.v, 'g', -1, 64), Reason: "must be a finite number"}
		}
	}
	if s.Fast < 0 {
		return &OptionError{Name: "fast", Value: s.Fast.String(), Reason: "must be ≥ 0"}
	}
	if s.TrendWindow < time.Second {
		return &OptionError{Name: "trend-window", Value: s.TrendWindow.String(), Reason: "must be at least 1s"}
	}
	return nil
}
