// Package queue simulates the expensive part of a unicorn request: a fixed number of
// cores, each held by one job for a fixed work time, and a bounded FIFO line in front
// of them.
//
// The reference server's cost model is what GameDay teams learn to scale around: a
// handful of requests are served at once, a few more wait, and the rest are refused at
// once. Concurrent requests for the same key share one job (singleflight), so a burst
// of misses for one popular key costs one core and one place in the line. A job runs
// under no single caller's context: it leaves the line only when every caller waiting
// for it has gone, and once it holds a core it runs to the end, so that its result
// still reaches the cache through fn.
package queue

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Mode says how a job spends its work time on a core.
type Mode int

const (
	// Burn spins real CPU for the whole work time, one OS core per busy simulated
	// core, so that CPU-based autoscaling and CPU metrics behave as in the event.
	Burn Mode = iota
	// Sleep only waits on a timer; it keeps tests fast and lets many servers share
	// one machine.
	Sleep
)

// ParseMode parses the configuration spelling of a Mode, "burn" or "sleep", ignoring
// case.
func ParseMode(s string) (Mode, error) {
	switch {
	case strings.EqualFold(s, "burn"):
		return Burn, nil
	case strings.EqualFold(s, "sleep"):
		return Sleep, nil
	}
	return 0, fmt.Errorf("queue: unknown work mode %q (allowed: burn, sleep)", s)
}

// String returns the configuration spelling of m, so that a Mode round-trips through
// ParseMode and reads well in logs.
func (m Mode) String() string {
	switch m {
	case Burn:
		return "burn"
	case Sleep:
		return "sleep"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Options configures a Queue. The zero value is one burning core, no waiting places
// and no work time.
type Options struct {
	// Cores is the number of jobs that run at once. If less than 1, 1 is used.
	Cores int
	// QueueSize is the number of jobs that may wait for a core; one more is refused
	// with ErrFull. If less than 0, 0 is used: then only Cores jobs are accepted.
	QueueSize int
	// WorkTime is how long a job holds its core before fn is called.
	WorkTime time.Duration
	// Mode says how the work time is spent. Values other than Sleep act as Burn.
	Mode Mode
	// Observe, if non-nil, is called once per finished job with the time it held a
	// core (WorkTime plus the time fn took), before its callers are answered. It runs
	// on the job's goroutine and must be cheap.
	Observe func(held time.Duration)
}

var (
	// ErrFull is returned when every core is busy and every waiting place is taken.
	// It is returned at once: a refused request never waits.
	ErrFull = errors.New("queue: full")
	// ErrDraining is returned, once Drain was called, to a request that would start
	// a new job.
	ErrDraining = errors.New("queue: draining")
)

// Stats is a snapshot of a Queue for health checks and metrics.
type Stats struct {
	// Waiting is the number of jobs in line, not counting running ones.
	Waiting int `json:"waiting"`
	// Capacity is the number of waiting places (Options.QueueSize).
	Capacity int `json:"capacity"`
	// Busy is the number of cores running a job.
	Busy int `json:"busy"`
	// Cores is the number of cores.
	Cores int `json:"cores"`
}

// A Queue runs jobs on a fixed number of simulated cores, with a bounded FIFO line of
// jobs waiting for a core and at most one job per key at a time. Its methods are safe
// for concurrent use.
type Queue struct {
	opts Options

	mu       sync.Mutex
	free     int             // cores not running a job
	line     list.List       // of *job, waiting for a core, oldest first
	jobs     map[string]*job // every job waiting or running, by key
	draining bool
	idle     chan struct{} // closed when nothing waits or runs; made by Drain
}

// A job is one unit of work shared by every caller of Do for its key. It is either
// waiting (elem != nil) or running (elem == nil); it leaves Queue.jobs when it
// finishes or when the last of its callers leaves the line.
type job struct {
	key string
	fn  func() ([]byte, error)

	// Guarded by Queue.mu.
	elem    *list.Element // place in the line while waiting, else nil
	callers int           // callers of a waiting job that have not left
	started time.Time     // when the job got its core; set before start is closed

	start chan struct{} // closed when the job gets its core
	done  chan struct{} // closed when val and err are set
	val   []byte
	err   error
}

// New returns an idle Queue with the given options.
func New(opts Options) *Queue {
	opts.Cores = max(opts.Cores, 1)
	opts.QueueSize = max(opts.QueueSize, 0)
	return &Queue{
		opts: opts,
		free: opts.Cores,
		jobs: make(map[string]*job),
	}
}

// Do runs fn for key after holding a core for WorkTime, or joins the job already
// waiting or running for key.
//
// A caller that joins another caller's job waits for that job and receives the same
// val slice and err, with shared set to true; callers must not modify val. Joining
// costs no place in the line, so a joiner never gets ErrFull, and it is allowed even
// while draining. Once the job has finished, a later Do for the same key starts a new
// job.
//
// A caller that would start a new job gets a free core at once; if every core is
// busy its job waits at the end of the line, or, if the line is full, Do returns
// ErrFull at once. After Drain, Do returns ErrDraining instead of starting a job.
//
// If ctx ends first, Do returns ctx.Err() at once (and if it has already ended, Do
// starts no job). The job itself runs under no
// caller's context: it leaves the line only when every caller waiting for it has
// gone, and once it holds a core it runs to the end and calls fn, whose result is
// then discarded by the queue (fn is where the caller keeps it, e.g. in a cache).
// If fn panics, the panic is turned into an error for every caller.
//
// wait is how long this caller waited before its job got a core: 0 if a core was
// free or it joined a running job; for a joiner of a waiting job, the time from its
// join until the start; if ctx ended while the job was waiting, the time until then.
// ErrFull and ErrDraining come with wait 0.
func (q *Queue) Do(ctx context.Context, key string, fn func() ([]byte, error)) (val []byte, shared bool, wait time.Duration, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, 0, err
	}
	now := time.Now()
	q.mu.Lock()
	j, shared := q.jobs[key]
	switch {
	case shared:
		if j.elem != nil {
			j.callers++
		}
	case q.draining:
		q.mu.Unlock()
		return nil, false, 0, ErrDraining
	case q.free > 0:
		j = q.addLocked(key, fn)
		q.free--
		q.startLocked(j, now)
	case q.line.Len() < q.opts.QueueSize:
		j = q.addLocked(key, fn)
		j.callers = 1
		j.elem = q.line.PushBack(j)
	default:
		q.mu.Unlock()
		return nil, false, 0, ErrFull
	}
	q.mu.Unlock()

	select {
	case <-j.start:
	case <-ctx.Done():
		return nil, shared, q.leave(j, now), ctx.Err()
	}
	// j.started was written before start was closed.
	wait = max(j.started.Sub(now), 0)
	select {
	case <-j.done:
		return j.val, shared, wait, j.err
	case <-ctx.Done():
		return nil, shared, wait, ctx.Err()
	}
}

// addLocked registers a new job for key, so that later callers join it.
func (q *Queue) addLocked(key string, fn func() ([]byte, error)) *job {
	j := &job{
		key:   key,
		fn:    fn,
		start: make(chan struct{}),
		done:  make(chan struct{}),
	}
	q.jobs[key] = j
	return j
}

// startLocked gives j a core the caller has already taken and runs it on its own
// goroutine, so that its callers are free to leave.
func (q *Queue) startLocked(j *job, now time.Time) {
	j.elem = nil
	j.started = now
	close(j.start)
	go q.run(j)
}

// run spends the work time, calls fn and hands the core to the head of the line.
func (q *Queue) run(j *job) {
	q.work(j.started)
	val, err := call(j.fn)
	if q.opts.Observe != nil {
		q.opts.Observe(time.Since(j.started))
	}

	q.mu.Lock()
	if q.jobs[j.key] == j {
		delete(q.jobs, j.key)
	}
	if e := q.line.Front(); e != nil {
		// The core passes straight to the next job, so no newcomer can overtake it.
		q.startLocked(q.line.Remove(e).(*job), time.Now())
	} else {
		q.free++
		q.checkIdleLocked()
	}
	q.mu.Unlock()

	j.val, j.err = val, err
	close(j.done)
}

// leave records that a caller of j has gone and returns how long it waited. If j is
// still in line and this was its last caller, j leaves the line and never starts.
func (q *Queue) leave(j *job, since time.Time) time.Duration {
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if j.elem == nil {
		// The job got its core while ctx ended; it runs to the end without us.
		return max(j.started.Sub(since), 0)
	}
	j.callers--
	if j.callers == 0 {
		q.line.Remove(j.elem)
		j.elem = nil
		delete(q.jobs, j.key)
		// Nothing to tell Drain: a job in line means every core is busy.
	}
	return now.Sub(since)
}

// checkIdleLocked wakes Drain when nothing waits or runs any more.
func (q *Queue) checkIdleLocked() {
	if q.idle != nil && q.free == q.opts.Cores && q.line.Len() == 0 {
		close(q.idle)
		q.idle = nil
	}
}

// call runs fn, turning a panic into an error: fn runs on the job's goroutine, where
// no HTTP server would recover it and the whole process would die.
func call(fn func() ([]byte, error)) (val []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("queue: job panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return fn()
}

// work holds the current goroutine until WorkTime after started, the way the mode
// says. The deadline counts from when the job got its core, not from when this
// goroutine first ran: on a busy machine a new goroutine can wait for a thread for
// milliseconds, and the core is held for exactly WorkTime all the same.
func (q *Queue) work(started time.Time) {
	if q.opts.WorkTime <= 0 {
		return
	}
	deadline := started.Add(q.opts.WorkTime)
	if q.opts.Mode == Sleep {
		if d := time.Until(deadline); d > 0 {
			t := time.NewTimer(d)
			<-t.C
		}
		return
	}
	burn(deadline)
}

// burnCheck is how many hashes burn computes between looks at the clock: a few
// microseconds of work, so that burn stops promptly at its deadline while the clock
// costs little.
const burnCheck = 32

// burn keeps one OS thread busy until deadline. It hashes a small buffer, feeding
// each sum back in, which is real work the compiler cannot drop; the sum is returned
// only so that it stays observable.
func burn(deadline time.Time) [sha256.Size]byte {
	var sum [sha256.Size]byte
	for {
		for range burnCheck {
			sum = sha256.Sum256(sum[:])
		}
		if !time.Now().Before(deadline) {
			return sum
		}
	}
}

// Stats returns a snapshot of the queue.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return Stats{
		Waiting:  q.line.Len(),
		Capacity: q.opts.QueueSize,
		Busy:     q.opts.Cores - q.free,
		Cores:    q.opts.Cores,
	}
}

// Drain stops the queue from taking new work and waits for the work it has: from now
// on, Do returns ErrDraining to any caller that would start a new job (joining a job
// still works, since it adds no work). Drain returns nil once no job waits or runs,
// or ctx.Err() if ctx ends first. It may be called more than once.
func (q *Queue) Drain(ctx context.Context) error {
	q.mu.Lock()
	q.draining = true
	if q.free == q.opts.Cores && q.line.Len() == 0 {
		q.mu.Unlock()
		return nil
	}
	if q.idle == nil {
		q.idle = make(chan struct{})
	}
	idle := q.idle
	q.mu.Unlock()

	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
