package svctest

import (
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
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

// children returns the pids of pid's child processes, from /proc: every process whose
// parent it is. A process that ends while the list is read is left out.
func children(pid int) []int {
	// /proc/<pid>/task/<tid>/children would be one read, but it needs a kernel built
	// with CONFIG_PROC_CHILDREN; every Linux has the stat files.
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The fields after the command, which is in parentheses and may hold spaces
		// or parentheses itself, are: state, ppid, …
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			pids = append(pids, child)
		}
	}
	return pids
}
