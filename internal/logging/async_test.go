package logging

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// sink records what it is written, one Write at a time.
type sink struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.buf.Write(p)
}

func (s *sink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// eventually polls cond for at most d and reports whether it became true.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// manual returns a flush clock that only ticks when the test says so.
func manual() (chan time.Time, func()) { return make(chan time.Time), func() {} }

func TestAsyncKeepsLinesWholeAndInOrder(t *testing.T) {
	const writers, lines = 8, 3000
	dst := &sink{}
	// A small buffer (1.5 MB are sent): many swaps, and perhaps drops, which must not
	// tear a line either.
	a := NewAsync(dst, 64<<10, time.Millisecond)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for n := range lines {
				fmt.Fprintf(a, "writer=%d n=%05d %s end\n", w, n, strings.Repeat("x", n%50))
				if n%64 == 0 {
					runtime.Gosched() // let the flusher in now and then, as a request's I/O does
				}
			}
		})
	}
	wg.Wait()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	last := make([]int, writers)
	for i := range last {
		last[i] = -1
	}
	got := 0
	for l := range strings.SplitSeq(strings.TrimSuffix(dst.String(), "\n"), "\n") {
		var w, n int
		if _, err := fmt.Sscanf(l, "writer=%d n=%d", &w, &n); err != nil || w < 0 || w >= writers {
			t.Fatalf("torn line %q: %v", l, err)
		}
		if want := fmt.Sprintf("writer=%d n=%05d %s end", w, n, strings.Repeat("x", n%50)); l != want {
			t.Fatalf("line %q, want %q", l, want)
		}
		if n <= last[w] {
			t.Fatalf("writer %d: line %d after line %d", w, n, last[w])
		}
		last[w] = n
		got++
	}
	if int64(got)+a.Dropped() != writers*lines {
		t.Fatalf("%d lines written + %d dropped != %d sent", got, a.Dropped(), writers*lines)
	}
	t.Logf("%d lines in %d writes, %d dropped", got, dst.writes, a.Dropped())
}

func TestAsyncFlushesOnTheClockWithoutFurtherWrites(t *testing.T) {
	t.Run("fake clock", func(t *testing.T) {
		dst := &sink{}
		tick, stop := manual()
		a := newAsync(dst, 64<<10, tick, stop)
		defer a.Close()
		fmt.Fprintln(a, "first")
		// No tick, no half-full buffer: nothing is written.
		if eventually(50*time.Millisecond, func() bool { return dst.String() != "" }) {
			t.Fatalf("written before the clock ticked: %q", dst.String())
		}
		tick <- time.Now()
		if !eventually(5*time.Second, func() bool { return dst.String() == "first\n" }) {
			t.Fatalf("not flushed after a tick: %q", dst.String())
		}
	})
	t.Run("real clock", func(t *testing.T) {
		dst := &sink{}
		a := NewAsync(dst, 64<<10, FlushInterval)
		defer a.Close()
		begin := time.Now()
		fmt.Fprintln(a, "one line")
		if !eventually(time.Second, func() bool { return dst.String() == "one line\n" }) {
			t.Fatalf("not flushed within 1s (FlushInterval %v): %q", FlushInterval, dst.String())
		}
		t.Logf("flushed after %v", time.Since(begin))
	})
}

func TestAsyncFlushesWhenHalfFull(t *testing.T) {
	dst := &sink{}
	tick, stop := manual()
	a := newAsync(dst, 1024, tick, stop)
	defer a.Close()
	line := strings.Repeat("y", 99) + "\n"
	for range 5 {
		a.Write([]byte(line))
	}
	if eventually(50*time.Millisecond, func() bool { return dst.String() != "" }) {
		t.Fatalf("written below half the buffer: %q", dst.String())
	}
	a.Write([]byte(line)) // 600 bytes of 1024
	if !eventually(5*time.Second, func() bool { return dst.String() == strings.Repeat(line, 6) }) {
		t.Fatalf("a half-full buffer was not flushed: %d bytes", len(dst.String()))
	}
}

func TestAsyncCloseFlushesAndWritesThroughAfter(t *testing.T) {
	dst := &sink{}
	tick, stop := manual()
	a := newAsync(dst, 64<<10, tick, stop)
	log, err := New(a, "logfmt")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		log.Info("line", "i", i)
	}
	log.Info("shutdown complete")
	if dst.String() != "" {
		t.Fatal("written before Close")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(dst.String(), "\n"); got != 101 || !strings.Contains(dst.String(), `msg="shutdown complete"`) {
		t.Fatalf("after Close %d lines:\n%s", got, dst.String())
	}
	log.Info("late")
	if !strings.HasSuffix(dst.String(), "msg=late\n") {
		t.Fatalf("a line after Close was not written through:\n%s", dst.String())
	}
	if err := a.Flush(); err != nil {
		t.Fatalf("Flush after Close: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if a.Dropped() != 0 {
		t.Fatalf("Dropped = %d", a.Dropped())
	}
}

// TestAsyncStuckWriterNeverBlocksWrites puts a pipe that nobody reads behind the
// Async, as a standard error whose reader hung would be.
func TestAsyncStuckWriterNeverBlocksWrites(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	g := NewGuard(w)
	a := NewAsync(g, 64<<10, time.Millisecond)
	a.timeout = 200 * time.Millisecond
	line := []byte(strings.Repeat("z", 199) + "\n")
	const sent = 20000 // 4 MB: far beyond the pipe's and the buffers' room
	begin := time.Now()
	slowest := time.Duration(0)
	for range sent {
		t0 := time.Now()
		a.Write(line)
		slowest = max(slowest, time.Since(t0))
	}
	took := time.Since(begin)
	if took > 2*time.Second {
		t.Fatalf("%d writes took %v", sent, took)
	}
	if a.Dropped() == 0 {
		t.Fatal("nothing dropped although nobody reads the pipe")
	}
	t.Logf("%d writes in %v (slowest %v), %d dropped", sent, took, slowest, a.Dropped())

	begin = time.Now()
	if err := a.Flush(); err != ErrStuck {
		t.Fatalf("Flush = %v, want ErrStuck", err)
	}
	if err := a.Close(); err != ErrStuck {
		t.Fatalf("Close = %v, want ErrStuck", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Fatalf("Flush and Close took %v with a timeout of %v", took, a.timeout)
	}
	dropped := a.Dropped()
	a.Write(line) // after Close gave up: dropped at once
	if a.Dropped() != dropped+1 {
		t.Fatalf("Dropped = %d after a write past Close, want %d", a.Dropped(), dropped+1)
	}
	// Unblock the flusher: its write now fails (EPIPE) and is counted, and it returns.
	r.Close()
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the flusher did not return once its write failed")
	}
	if g.Failed() == 0 {
		t.Fatal("the failed write to the closed pipe was not counted")
	}
}

func TestAsyncFlushBeforeReopenKeepsLinesInTheirFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.log")
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a := NewAsync(f, 64<<10, time.Hour) // only Flush and Close write
	log, err := New(a, "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("before")
	must(t, os.Rename(path, path+".1"))
	log.Info("still old file")
	// What calcserver does on SIGHUP.
	must(t, a.Flush())
	must(t, f.Reopen())
	log.Info("after")
	must(t, a.Close())
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), `"msg":"before"`) || !strings.Contains(string(old), "still old file") || strings.Contains(string(old), "after") {
		t.Fatalf("rotated file: %s", old)
	}
	if !strings.Contains(string(cur), `"msg":"after"`) || strings.Contains(string(cur), "before") {
		t.Fatalf("new file: %s", cur)
	}
}

func TestFailedBatchCountsEachLine(t *testing.T) {
	f, err := OpenFile(filepath.Join(t.TempDir(), "x.log"))
	if err != nil {
		t.Fatal(err)
	}
	f.w.(*os.File).Close()
	f.Write([]byte("a\nb\nc\n"))
	if f.Failed() != 3 {
		t.Fatalf("Failed = %d after a failed write of 3 lines", f.Failed())
	}
}

// benchRecord is a typical hit's access record.
var benchRecord = AccessRecord{
	Client: "127.0.0.1:51234", Method: "GET", Path: "/calc?input=SUNhbkhhelVuaWNvcm4/LTg5OTk=",
	Key: "SUNhbkhhelVuaWNvcm4/LTg5OTk=", Status: 200, Bytes: 244, Duration: 4001 * time.Microsecond, Cache: "HIT",
}

// accessLine logs what the server's access log middleware logs for one request.
func accessLine(log *Access) {
	r := benchRecord
	r.Time = time.Now()
	log.Log(&r)
}

// BenchmarkAccessLine writes access lines to a real file, directly (one write system
// call per line under the file's lock, as calcserver did) and through an Async.
func BenchmarkAccessLine(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		for _, async := range []bool{false, true} {
			name := map[bool]string{false: "file", true: "async"}[async]
			if parallel {
				name += "-parallel"
			}
			b.Run(name, func(b *testing.B) {
				f, err := OpenFile(filepath.Join(b.TempDir(), "bench.log"))
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				var a *Async
				var log *Access
				if async {
					a = NewAsync(f, BufferSize, FlushInterval)
					log, _ = NewAccess(a, "logfmt")
				} else {
					log, _ = NewAccess(f, "logfmt")
				}
				b.ReportAllocs()
				b.ResetTimer()
				if parallel {
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							accessLine(log)
						}
					})
				} else {
					for b.Loop() {
						accessLine(log)
					}
				}
				b.StopTimer()
				if a != nil {
					if err := a.Close(); err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(a.Dropped())/float64(b.N), "dropped/op")
				}
			})
		}
	}
}
