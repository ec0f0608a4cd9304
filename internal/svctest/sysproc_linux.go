package svctest

import "syscall"

// sysProcAttr makes the kernel SIGKILL the server when the process that started it dies,
// so a test that crashes or is killed by its timeout leaves no orphaned servers behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
