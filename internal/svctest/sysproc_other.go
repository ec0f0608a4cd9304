//go:build !linux

package svctest

import "os/exec"

// start starts cmd. Outside Linux there is no parent-death signal to ask for; callers
// must Stop their servers themselves.
func start(cmd *exec.Cmd) error { return cmd.Start() }
