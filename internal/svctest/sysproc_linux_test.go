package svctest

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// A goroutine that exits while locked to its thread makes the runtime end that thread.
// A child forked on that thread with a parent-death signal would be killed with it; the
// spawner's own thread must be the parent instead, so the child lives on.
func TestAChildOutlivesTheThreadThatAskedForIt(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	type asked struct {
		tid int
		err error
	}
	var a asked
	for range 3 {
		res := make(chan asked, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
			tid := syscall.Gettid()
			if tid == os.Getpid() {
				// The runtime parks the main thread for good instead of ending it;
				// it is out of the pool now, so the next goroutine runs elsewhere.
				res <- asked{tid: tid}
				return
			}
			res <- asked{tid: tid, err: Spawn(cmd)}
		}()
		if a = <-res; a.tid != os.Getpid() {
			break
		}
	}
	if a.tid == os.Getpid() {
		t.Fatal("every locked goroutine ran on the main thread")
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
	var waitErr error
	waited := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(waited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-waited
	})

	// The thread's directory goes once the thread has exited, after the kernel has sent
	// any parent-death signal.
	gone := time.Now().Add(10 * time.Second)
	task := "/proc/self/task/" + strconv.Itoa(a.tid)
	for {
		if _, err := os.Stat(task); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(gone) {
			t.Fatalf("thread %d still exists 10s after its locked goroutine returned", a.tid)
		}
		time.Sleep(10 * time.Millisecond) // nothing signals a thread's end to another thread
	}
	select {
	case <-waited:
		t.Fatalf("the child died with the thread of the goroutine that started it: %v", waitErr)
	case <-time.After(time.Second): // a SIGKILL is delivered well within this
	}
}
