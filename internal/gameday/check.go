package gameday

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// Defaults of CheckOptions: the WorldSkills contest checker's.
const (
	DefaultCheckCount    = 10
	DefaultCheckInterval = 1200 * time.Millisecond
	checkerMaxKey        = 10000 // the checker draws randint(1, 10000)
)

// CheckOptions configures Check.
type CheckOptions struct {
	Target      string        // base URL
	Count       int           // requests; 0: DefaultCheckCount
	Interval    time.Duration // between sends; 0: DefaultCheckInterval
	Timeout     time.Duration // per request; 0: DefaultTimeout
	Format      calc.Format   // the servers' ResponseFormat
	CalcVersion int           // 0: 1
	Seed        int64         // key choice; 0: random
}

// Verdicts of the contest checker.
const (
	VerdictCorrect   = "CORRECT"
	VerdictIncorrect = "INCORRECT"
	VerdictTimeout   = "TIMEOUT"
)

// CheckResult is one request of Check.
type CheckResult struct {
	N       int    // 1-based, in sending order
	Key     Key    // the checker's key
	Path    string // "/calc?input=…"
	Verdict string // VerdictCorrect, VerdictIncorrect or VerdictTimeout
	Status  int    // 0 without an HTTP answer
	Latency time.Duration
	Detail  string // what came back: the start of the body, or what was wrong
}

// String is the checker's line: verdict, time, path, then status and detail.
func (r CheckResult) String() string {
	line := fmt.Sprintf("#%-3d %9s in %5.2fs %-50s", r.N, r.Verdict, r.Latency.Seconds(), r.Path)
	if r.Status != 0 {
		line += " " + strconv.Itoa(r.Status)
	}
	if r.Detail != "" {
		line += " " + r.Detail
	}
	return line
}

// Validate reports the first option Check would refuse, as an *OptionError naming the
// flag.
func (o CheckOptions) Validate() error {
	_, err := o.withDefaults()
	return err
}

// withDefaults fills in the zero fields and checks the rest; Target comes back parsed.
func (o CheckOptions) withDefaults() (CheckOptions, error) {
	targets, err := ParseTargets([]string{o.Target})
	if err != nil {
		return o, err
	}
	if len(targets) != 1 {
		return o, &OptionError{Name: "target", Value: o.Target, Reason: "check takes one base URL"}
	}
	o.Target = targets[0]
	if o.Count == 0 {
		o.Count = DefaultCheckCount
	}
	if o.Interval == 0 {
		o.Interval = DefaultCheckInterval
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.CalcVersion == 0 {
		o.CalcVersion = 1
	}
	switch {
	case o.Count < 0:
		return o, &OptionError{Name: "count", Value: strconv.Itoa(o.Count), Reason: "must be ≥ 1"}
	case o.Interval < 0:
		return o, &OptionError{Name: "interval", Value: o.Interval.String(), Reason: "must be > 0"}
	case o.Timeout < 0:
		return o, &OptionError{Name: "timeout", Value: o.Timeout.String(), Reason: "must be > 0"}
	case o.CalcVersion < 0 || o.CalcVersion > calc.MaxVersion:
		return o, &OptionError{Name: "calc-version", Value: strconv.Itoa(o.CalcVersion), Reason: fmt.Sprintf("must be 1..%d", calc.MaxVersion)}
	}
	return o, nil
}

// Check replays the contest checker against o.Target: one GET /calc every o.Interval
// whether or not the previous ones have answered (the checker does not wait either),
// o.Count of them, keys base64("ICanHazUnicorn4-ws-ec2?-N") with N drawn from 1..10000,
// each answer verified exactly (the checker itself only matches ^ey[0-9A-Za-z]{230,280}$,
// so a server that passes here passes there). each is called from one goroutine at a
// time as each request ends. It returns how many were CORRECT.
func Check(ctx context.Context, o CheckOptions, each func(CheckResult)) (int, error) {
	o, err := o.withDefaults()
	if err != nil {
		return 0, err
	}
	seed := o.Seed
	for seed == 0 {
		seed = rand.Int64()
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6a09e667f3bcc908))
	var c conns
	tr := newTransport(o.Count, o.Timeout, &c)
	defer tr.CloseIdleConnections()

	var (
		mu      sync.Mutex // serialises each
		passed  int
		wg      sync.WaitGroup
		timer   = time.NewTimer(time.Hour)
		stopped bool
	)
	timer.Stop()
	for i := range o.Count {
		if i > 0 {
			timer.Reset(o.Interval)
			select {
			case <-timer.C:
			case <-ctx.Done():
				stopped = true
			}
		}
		if stopped {
			break
		}
		key := NewKey(rng.Int64N(checkerMaxKey) + 1)
		path := "/calc?input=" + key.Query
		wg.Go(func() {
			r := checkOne(ctx, tr, o, o.Target+path, key)
			r.N, r.Path = i+1, path
			mu.Lock()
			defer mu.Unlock()
			if r.Verdict == VerdictCorrect {
				passed++
			}
			if each != nil {
				each(r)
			}
		})
	}
	wg.Wait()
	return passed, ctx.Err()
}

func checkOne(ctx context.Context, tr http.RoundTripper, o CheckOptions, url string, key Key) CheckResult {
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	a := get(rctx, tr, url)
	r := CheckResult{Key: key, Status: a.status, Latency: a.latency}
	switch {
	case a.err != nil && isTimeout(a.err):
		r.Verdict, r.Detail = VerdictTimeout, fmt.Sprintf("no answer within %s", o.Timeout)
	case a.err != nil:
		r.Verdict, r.Detail = VerdictIncorrect, errorKind(a.err)
	case a.status != 200:
		r.Verdict, r.Detail = VerdictIncorrect, quote(a.body)
	case calc.Verify(o.Format, o.CalcVersion, []byte(key.Text), a.body):
		r.Verdict, r.Detail = VerdictCorrect, quote(a.body)
	default:
		r.Verdict, r.Detail = VerdictIncorrect, WrongReason(o.Format, o.CalcVersion, key.Text, a.body)
	}
	return r
}
