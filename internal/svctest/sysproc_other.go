//go:build !linux

package svctest

import "syscall"

// sysProcAttr has no parent-death signal to ask for outside Linux; callers must Stop
// their servers themselves.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
