//go:build unix

package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/cache"
)

// hangingEntry puts a FIFO where key's entry belongs: opening it for reading blocks
// in the kernel until a writer opens it, as a call on a hung NFS mount does. It
// returns the FIFO's path; cleanup opens it for writing so that any reader still
// stuck finishes.
func hangingEntry(t *testing.T, c *Cache, key string) string {
	t.Helper()
	path := c.path(key)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// On Linux, opening a FIFO read-write never blocks and releases both a
		// reader and a writer stuck in open; closing it gives a blocked reader EOF.
		if f, err := os.OpenFile(path, os.O_RDWR, 0); err == nil {
			f.Close()
		}
	})
	return path
}

// within runs op and fails the test if op has not returned after limit: a broken
// deadline must fail the test, not hang it until go test's own timeout.
func within(t *testing.T, limit time.Duration, op func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- op() }()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		t.Fatalf("still blocked after %v", limit)
		return nil
	}
}

// openWriter opens the FIFO at path for writing. It returns only once a reader has
// opened it, which proves that reader holds a slot and is inside file system calls;
// the reader then stays blocked reading until the writer is closed.
func openWriter(t *testing.T, path string) *os.File {
	t.Helper()
	var w *os.File
	err := within(t, 5*time.Second, func() error {
		var err error
		w, err = os.OpenFile(path, os.O_WRONLY, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestAHungMountCostsBoundedGoroutinesAndNoCallerWaitsPastItsDeadline(t *testing.T) {
	c := newCache(t, Options{MaxInFlight: 2})
	hung1 := hangingEntry(t, c, "hung-1")
	hung2 := hangingEntry(t, c, "hung-2")
	hangingEntry(t, c, "hung-3")

	// The first operation has no deadline: it blocks its caller and holds a slot.
	first := make(chan error, 1)
	go func() {
		_, err := c.Get(context.Background(), "hung-1")
		first <- err
	}()
	w1 := openWriter(t, hung1)

	// The second has a deadline: it returns when that passes, but its system calls
	// keep the second slot until the mount answers.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	start := time.Now()
	err := within(t, 5*time.Second, func() error { _, err := c.Get(ctx, "hung-2"); return err })
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get on a hung file: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Get on a hung file returned after %v, want about 50ms", d)
	}
	w2 := openWriter(t, hung2)
	if n := len(c.sem); n != 2 {
		t.Fatalf("%d slots held, want 2", n)
	}

	// Every slot is taken: any further operation waits for one until its deadline.
	for name, op := range map[string]func(context.Context) error{
		"Get": func(ctx context.Context) error { _, err := c.Get(ctx, "k"); return err },
		"Set": func(ctx context.Context) error {
			return c.Set(ctx, "k", [32]byte{})
		},
		"Delete": func(ctx context.Context) error { return c.Delete(ctx, "k") },
		"Ping":   c.Ping,
		"Purge": func(ctx context.Context) error {
			_, err := c.Purge(ctx, func(string) bool { return true })
			return err
		},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		start := time.Now()
		err := within(t, 5*time.Second, func() error { return op(ctx) })
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s with every slot taken: %v, want context.DeadlineExceeded", name, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s with every slot taken returned after %v, want about 50ms", name, d)
		}
	}

	// Nor does waiting start a goroutine: without the bound, each of these Gets
	// would leave one stuck on hung-3. A few goroutines of slack remain because
	// the runtime runs each expired context's cancel func in a short-lived
	// goroutine of its own.
	before := runtime.NumGoroutine()
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		err := within(t, 5*time.Second, func() error { _, err := c.Get(ctx, "hung-3"); return err })
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get on a hung file with every slot taken: %v, want context.DeadlineExceeded", err)
		}
	}
	if after := runtime.NumGoroutine(); after > before+3 {
		t.Errorf("goroutines grew from %d to %d while the mount hung", before, after)
	}
	if n := len(c.sem); n != 2 {
		t.Errorf("%d slots held, want still 2", n)
	}

	// The mount answers (with nothing): the stuck calls finish and free their slots.
	w1.Close()
	w2.Close()
	var err1 error
	select {
	case err1 = <-first:
	case <-time.After(5 * time.Second):
		t.Fatal("the first Get is still blocked after the mount answered")
	}
	if !errors.Is(err1, cache.ErrCorrupt) {
		t.Errorf("the first Get, once unblocked with an empty file: %v, want ErrCorrupt", err1)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = within(t, 10*time.Second, func() error { _, err := c.Get(ctx, "absent"); return err })
	if !errors.Is(err, cache.ErrMiss) {
		t.Errorf("Get after the mount recovered: %v, want ErrMiss", err)
	}
}
