//go:build unix

package queue_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/queue"
)

// TestBurnUsesCPU checks that a burning job really keeps a CPU busy, as autoscaling
// would measure it: by the process's user CPU time, not by the wall clock.
//
// Alone on a core, a 200ms burn uses about 200ms of CPU, and a sleeping job almost
// none. On a busy machine the burn gets only its share of a core (a loaded 2-core VM
// gave it 12ms to 76ms), so the test then compares it with what a plain busy loop
// got just before it, and tries a few times before it gives up.
func TestBurnUsesCPU(t *testing.T) {
	const (
		work     = 200 * time.Millisecond
		attempts = 5
	)
	q := queue.New(queue.Options{WorkTime: work, Mode: queue.Burn})
	for attempt := 1; ; attempt++ {
		spin := userTimeOf(t, func() {
			for begin := time.Now(); time.Since(begin) < work; {
			}
		})
		var elapsed time.Duration
		burn := userTimeOf(t, func() {
			begin := time.Now()
			if _, _, _, err := q.Do(context.Background(), "k", func() ([]byte, error) { return nil, nil }); err != nil {
				t.Fatal(err)
			}
			elapsed = time.Since(begin)
		})
		if elapsed < work {
			t.Fatalf("a %v burn returned after %v", work, elapsed)
		}
		t.Logf("attempt %d: a %v burn used %v of user CPU time, a busy loop %v", attempt, work, burn, spin)
		if burn >= work/2 || (burn >= spin/2 && burn >= work/20) {
			return
		}
		if attempt == attempts {
			t.Fatalf("a %v burn used %v of user CPU time, want at least %v, or half of a busy loop's %v",
				work, burn, work/2, spin)
		}
	}
}

// userTimeOf returns the user CPU time the process used while f ran.
func userTimeOf(t *testing.T, f func()) time.Duration {
	t.Helper()
	before := userTime(t)
	f()
	return userTime(t) - before
}

func userTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano())
}
