package svctest

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// Spawn starts cmd so that the kernel SIGKILLs it when the process that started it dies,
// and a test that crashes or is killed by its timeout (or a command that reuses this
// package, such as gameday bench) leaves no orphaned servers behind.
//
// Linux sends the parent-death signal when the *thread* that forked the child exits, not
// the process, and the Go runtime ends a thread whenever a goroutine exits while locked
// to it — in any package of the test binary. So every child is forked from one goroutine
// that locks its thread and never returns: that thread lives as long as the process.
func Spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() { go spawner() })
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	done := make(chan error, 1)
	spawns <- spawn{cmd: cmd, done: done}
	return <-done
}

type spawn struct {
	cmd  *exec.Cmd
	done chan<- error
}

var (
	spawnOnce sync.Once
	spawns    = make(chan spawn)
)

func spawner() {
	runtime.LockOSThread() // never unlocked: this goroutine and its thread never end
	for s := range spawns {
		s.done <- s.cmd.Start()
	}
}
