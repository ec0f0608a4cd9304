//go:build !linux

package svctest

import "os/exec"

// Spawn starts cmd. Outside Linux there is no parent-death signal to ask for; callers
// must Stop their servers themselves.
func Spawn(cmd *exec.Cmd) error { return cmd.Start() }

// children returns nil: outside Linux there is no /proc to list a process's children
// from, and a tree Proc signals its parent process only.
func children(int) []int { return nil }
