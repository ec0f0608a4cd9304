package gameday

import (
	"context"
	"math"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// newPacer returns the pacer for rate arrivals per second, after a linear ramp from (at
// most) 1 per second up to rate over ramp when ramp > 0.
func newPacer(rate float64, ramp time.Duration) vegeta.Pacer {
	steady := constantPacer(rate)
	if ramp <= 0 {
		return steady
	}
	start := min(rate, 1)
	slope := (rate - start) / ramp.Seconds()
	// Arrivals of the ramp: the integral of the linear rate over [0, ramp).
	hits := slope*ramp.Seconds()*ramp.Seconds()/2 + start*ramp.Seconds()
	return rampPacer{ramp: ramp, start: start, slope: slope, rampHits: uint64(math.Floor(hits)), steady: steady}
}

// arrivals is how many arrivals newPacer(rate, ramp) schedules within d. Run sends
// exactly that many, even when it runs late: a generator that falls behind (a busy
// machine) sends the last ones a little after the end rather than not at all.
func arrivals(rate float64, ramp, d time.Duration) uint64 {
	per := interval(constantPacer(rate))
	p, ok := newPacer(rate, ramp).(rampPacer)
	if !ok {
		return uint64(d / per)
	}
	return p.rampHits + uint64((d-p.ramp)/per)
}

// constantPacer is vegeta's ConstantPacer for rate arrivals per second. vegeta counts
// whole hits per period, so a whole rate is hits per second, and a fractional one hits
// per 1000 s; either way rate × duration arrivals fit in a duration (1/rate rounded to
// a period, as an earlier version did, lost one arrival to rounding at 7/s or 6000/s).
func constantPacer(rate float64) vegeta.ConstantPacer {
	if rate >= 1 && rate == math.Trunc(rate) {
		return vegeta.ConstantPacer{Freq: int(rate), Per: time.Second}
	}
	return vegeta.ConstantPacer{Freq: int(math.Round(rate * 1000)), Per: 1000 * time.Second}
}

// interval is the time between two arrivals of p, computed as vegeta computes it.
func interval(p vegeta.ConstantPacer) time.Duration {
	return time.Duration(p.Per.Nanoseconds() / int64(p.Freq))
}

// rampPacer schedules the ramp itself, then vegeta's ConstantPacer counting from the
// ramp's end. vegeta's LinearPacer waits 1/rate(now) × (hits due − hits sent), which at
// a ramp's slow start tells the second arrival to wait a whole second and then sends
// everything due since at once: a step and a burst instead of a ramp. Here arrival n of
// the ramp is sent when the integral of the rate reaches n: with the rate s + k·t,
// t(n) = (√(s² + 2kn) − s) / k. And a ConstantPacer alone after a ramp would count the
// hits it "missed" during the ramp and send them at once.
type rampPacer struct {
	ramp         time.Duration
	start, slope float64 // arrivals per second at 0, and its growth per second
	rampHits     uint64
	steady       vegeta.ConstantPacer
}

// due is when arrival n (1-based) of the ramp is scheduled.
func (p rampPacer) due(n uint64) time.Duration {
	var sec float64
	if p.slope == 0 {
		sec = float64(n) / p.start
	} else {
		sec = (math.Sqrt(p.start*p.start+2*p.slope*float64(n)) - p.start) / p.slope
	}
	return time.Duration(sec * float64(time.Second))
}

func (p rampPacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if hits < p.rampHits {
		return max(p.due(hits+1)-elapsed, 0), false
	}
	if elapsed < p.ramp {
		wait, stop := p.steady.Pace(0, hits-p.rampHits)
		return p.ramp - elapsed + wait, stop
	}
	return p.steady.Pace(elapsed-p.ramp, hits-p.rampHits)
}

func (p rampPacer) Rate(elapsed time.Duration) float64 {
	if elapsed < p.ramp {
		return p.start + p.slope*elapsed.Seconds()
	}
	return p.steady.Rate(elapsed)
}

// Pace calls arrive at each arrival Run offers for rate arrivals per second, after a
// linear ramp from (at most) 1 per second over ramp when ramp > 0, over d from start:
// arrivals(rate, ramp, d) times, fewer if ctx ends first. n counts the arrivals from 0;
// due is when arrival n comes, since start: when it was scheduled, or later if the loop
// runs behind. arrive runs on the caller's goroutine, so it should hand slow work to
// another: the arrivals it delays come at once afterwards to catch up. Drivers that
// need their own requests but Run's arrivals, such as the project's load benchmarks,
// use it too.
func Pace(ctx context.Context, rate float64, ramp, d time.Duration, start time.Time, arrive func(n uint64, due time.Duration)) {
	pacer := newPacer(rate, ramp)
	total := arrivals(rate, ramp, d)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	// ctx is checked here too: behind schedule, wait is 0 and the select is skipped.
	for n := uint64(0); n < total && ctx.Err() == nil; n++ {
		elapsed := time.Since(start)
		wait, stop := pacer.Pace(elapsed, n)
		if stop {
			return
		}
		if wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return
			}
		}
		arrive(n, elapsed+wait)
	}
}
