package gameday

import (
	"context"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// stragglerSlack is how long past Options.Timeout Run still waits for requests in
// flight before cutting them: each one ends at its own timeout, so this only bounds
// the time to tear a connection down.
const stragglerSlack = 2 * time.Second

// Run offers load as o says until o.Duration has passed (or ctx ends), waits for the
// requests in flight (at most o.Timeout), and returns the summary. observe, if not nil,
// is called about once a second, from one goroutine, with the current snapshot, and a
// last time with Final set once the run is over.
//
// The load is an open model: arrivals follow the pacer whatever the servers do. An
// arrival that finds o.MaxInflight requests in flight is dropped and counted, never
// queued, so a slow fleet shows as drops and timeouts rather than as a lower rate.
//
// Bad options return an error wrapping ErrOptions (an *OptionError) before anything
// is sent. When ctx ends early, Run stops, cuts the requests in flight (counted as
// canceled, not scored) and returns the summary so far with ctx's error.
func Run(ctx context.Context, o Options, observe func(Snapshot)) (Summary, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Summary{}, err
	}
	seed := o.Seed
	for seed == 0 {
		seed = rand.Int64()
	}
	e := &engine{o: o, urls: make([]string, len(o.Targets))}
	for i, t := range o.Targets {
		e.urls[i] = t + "/calc?input="
	}
	tr := newTransport(o.MaxInflight, o.Timeout, &e.conns)
	defer tr.CloseIdleConnections()
	e.rt = tr
	e.rec = newRecorder(o, e.inflight.Load, newPacer(o.Rate, o.Ramp).Rate)
	mix := NewKeyMix(o.Keys, o.Skew, o.Unique, seed)

	// Requests outlive the arrivals by up to a timeout; reqCtx ends them only when
	// the caller's ctx does, or when they overstay the straggler bound.
	reqCtx, cutRequests := context.WithCancel(ctx)
	defer cutRequests()

	start := time.Now()
	finish := make(chan struct{})
	ticked := make(chan Snapshot)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s := e.rec.tick(time.Since(start), false)
				if observe != nil {
					observe(s)
				}
			case <-finish:
				s := e.rec.tick(time.Since(start), true)
				if observe != nil {
					observe(s)
				}
				ticked <- s
				return
			}
		}
	}()

	sem := make(chan struct{}, o.MaxInflight)
	var wg sync.WaitGroup
	Pace(ctx, o.Rate, o.Ramp, o.Duration, start, func(n uint64, _ time.Duration) {
		target := int(n % uint64(len(e.urls)))
		key := mix.Next()
		select {
		case sem <- struct{}{}:
			e.rec.arrival(true)
			e.inflight.Add(1)
			wg.Go(func() {
				res := e.do(reqCtx, target, key)
				e.inflight.Add(-1)
				<-sem
				e.rec.add(res, time.Since(start))
			})
		default:
			e.rec.arrival(false)
		}
	})

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	bound := time.NewTimer(o.Timeout + stragglerSlack)
	select {
	case <-done:
	case <-bound.C:
		cutRequests()
		<-done
	}
	bound.Stop()
	close(finish)
	<-ticked
	s := e.rec.summary(seed, time.Since(start), e.conns.peak.Load())
	return s, ctx.Err()
}

// engine is one run's shared state.
type engine struct {
	o        Options
	urls     []string // target + "/calc?input="
	rt       http.RoundTripper
	rec      *recorder
	inflight atomic.Int64
	conns    conns
}

// do sends one request and judges it.
func (e *engine) do(ctx context.Context, target int, key Key) result {
	res := result{target: e.o.Targets[target]}
	rctx, cancel := context.WithTimeout(ctx, e.o.Timeout)
	defer cancel()
	a := get(rctx, e.rt, e.urls[target]+key.Query)
	res.status, res.servedBy, res.latency = a.status, a.servedBy, a.latency
	switch {
	case ctx.Err() != nil:
		res.outcome = Canceled
	case a.err != nil && isTimeout(a.err):
		res.outcome = Timeout
	case a.err != nil && a.status == 0:
		res.outcome, res.kind = Error, errorKind(a.err)
	case a.err != nil:
		// The status came but the body broke off.
		res.outcome, res.kind = Error, errorKind(a.err)
	case a.status != 200:
		res.outcome, res.kind = Error, statusKind(a.status)
	case calc.Verify(e.o.Format, e.o.CalcVersion, []byte(key.Text), a.body):
		res.outcome = Correct
	default:
		res.outcome = Wrong
		res.reason = WrongReason(e.o.Format, e.o.CalcVersion, key.Text, a.body)
	}
	return res
}
