package logging

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// BufferSize is the size of each of Async's two buffers: one takes new lines while
// the other is being written, so at most twice this much is held in memory.
const BufferSize = 512 << 10

// FlushInterval is the longest a line waits in Async's buffer while the writer keeps up.
const FlushInterval = 100 * time.Millisecond

// asyncTimeout bounds how long Flush and Close wait for the writer.
const asyncTimeout = 2 * time.Second

// ErrStuck reports that the writer behind an Async did not finish a write in time.
var ErrStuck = errors.New("logging: the log writer did not finish in time")

// Async moves log writes off the caller's goroutine: Write appends the line to a
// fixed-size in-memory buffer and returns, and one flusher goroutine writes the buffer
// to the destination when it is half full, every FlushInterval, on Flush and on Close.
// A line that does not fit (the writer is slow or stuck) is dropped and counted:
// Write never blocks on I/O and never returns an error. Each Write is kept whole and
// in order, so the lines of a slog handler (one Write per record) never interleave.
type Async struct {
	dst     io.Writer
	timeout time.Duration

	mu     sync.Mutex
	buf    []byte // lines waiting; its capacity never changes
	kicked bool   // the flusher was told the buffer is half full since its last swap
	direct bool   // the flusher has stopped with nothing left: Write writes through
	closed bool   // Close gave up on a stuck flusher: Write drops

	dropped atomic.Int64

	kick    chan struct{}      // buffer half full
	flushes chan chan struct{} // Flush requests, answered by closing the channel
	stop    chan struct{}      // closed by Close
	done    chan struct{}      // closed when the flusher has returned
	once    sync.Once
}

// NewAsync starts an Async writing to dst with two buffers of size bytes, flushed at
// least every interval. Until Close, only the flusher goroutine writes to dst; dst
// may be a Guard or a File, which count failed writes. Close it to flush and stop the
// flusher.
func NewAsync(dst io.Writer, size int, interval time.Duration) *Async {
	t := time.NewTicker(interval)
	return newAsync(dst, size, t.C, t.Stop)
}

// newAsync is NewAsync with the flush clock given, for tests.
func newAsync(dst io.Writer, size int, tick <-chan time.Time, stopTick func()) *Async {
	a := &Async{
		dst:     dst,
		timeout: asyncTimeout,
		buf:     make([]byte, 0, size),
		kick:    make(chan struct{}, 1),
		flushes: make(chan chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go a.run(make([]byte, 0, size), tick, stopTick)
	return a
}

// Write queues p, or drops and counts it if the buffer cannot take it. It never
// blocks on the destination and always reports success.
func (a *Async) Write(p []byte) (int, error) {
	kicked := false
	a.mu.Lock()
	switch {
	case a.direct:
		// After Close: nothing is buffered, so writing through keeps the order.
		_, _ = a.dst.Write(p)
	case a.closed || len(a.buf)+len(p) > cap(a.buf):
		a.dropped.Add(1)
	default:
		a.buf = append(a.buf, p...)
		if !a.kicked && len(a.buf) >= cap(a.buf)/2 {
			a.kicked, kicked = true, true
			select {
			case a.kick <- struct{}{}:
			default:
			}
		}
	}
	a.mu.Unlock()
	if kicked {
		// The flusher now waits to run next on this thread. Yield to it (once per
		// half buffer), or on busy CPUs it may wait for a preemption, 10 ms.
		runtime.Gosched()
	}
	return len(p), nil
}

// Dropped returns the number of writes (lines, from slog) dropped because the buffer
// was full, or still buffered when Close gave up on a stuck writer.
func (a *Async) Dropped() int64 { return a.dropped.Load() }

// Flush waits until everything written before the call has been passed to the
// destination, for at most a couple of seconds; it returns ErrStuck if the writer did
// not finish in time. Call it before reopening a File, so that the lines written
// before go to the old file.
func (a *Async) Flush() error {
	reply := make(chan struct{})
	t := time.NewTimer(a.timeout)
	defer t.Stop()
	select {
	case a.flushes <- reply:
	case <-a.done:
		return nil // stopped with nothing buffered; writes go straight through
	case <-t.C:
		return ErrStuck
	}
	select {
	case <-reply:
		return nil
	case <-t.C:
		return ErrStuck
	}
}

// Close writes what is buffered and stops the flusher; later writes go straight to
// the destination. If the writer is stuck, Close gives up after a couple of seconds,
// counts the lines still buffered as dropped, drops later writes and returns ErrStuck.
// Close does not close the destination.
func (a *Async) Close() error {
	a.once.Do(func() { close(a.stop) })
	t := time.NewTimer(a.timeout)
	defer t.Stop()
	select {
	case <-a.done:
		return nil
	case <-t.C:
	}
	a.mu.Lock()
	if !a.direct {
		a.closed = true
		a.dropped.Add(int64(bytes.Count(a.buf, []byte{'\n'})))
		a.buf = a.buf[:0]
	}
	a.mu.Unlock()
	return ErrStuck
}

// run is the flusher: it alone writes to dst (until Close), swapping the full buffer
// for the empty spare under the lock and writing outside it.
func (a *Async) run(spare []byte, tick <-chan time.Time, stopTick func()) {
	defer close(a.done)
	defer stopTick()
	for {
		var reply chan struct{}
		select {
		case <-tick:
		case <-a.kick:
		case reply = <-a.flushes:
		case <-a.stop:
			// Write until the buffer is found empty, then hand over to Write
			// under the same lock, so that no line can slip in between.
			for {
				a.mu.Lock()
				if len(a.buf) == 0 {
					a.direct = true
					a.mu.Unlock()
					return
				}
				out := a.buf
				a.buf, a.kicked = spare, false
				a.mu.Unlock()
				_, _ = a.dst.Write(out)
				spare = out[:0]
			}
		}
		a.mu.Lock()
		out := a.buf
		if len(out) > 0 {
			a.buf, a.kicked = spare, false
		}
		a.mu.Unlock()
		if len(out) > 0 {
			_, _ = a.dst.Write(out)
			spare = out[:0]
		}
		if reply != nil {
			close(reply)
		}
	}
}
