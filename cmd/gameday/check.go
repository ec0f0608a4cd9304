package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/cli"
	"github.com/unicorn-rentals/unicorn/internal/gameday"
)

const checkUsage = `Usage: gameday check -target URL [flags]

Replays the WorldSkills contest checker: one GET /calc?input=<key> every -interval
(without waiting for earlier answers), -count of them, keys base64 of
"ICanHazUnicorn4-ws-ec2?-N" with N in 1..10000, each answer verified exactly. One line
per request (CORRECT, INCORRECT or TIMEOUT, with its time), then the pass rate. Exit 0
only if every request was CORRECT; 1 otherwise; 2 on bad flags; 130 when interrupted.

Flags:
`

// runCheck is `gameday check`.
func runCheck(args []string, e env) int {
	const cmd = "gameday check"
	fs := cli.NewFlagSet(cmd, checkUsage, e.stderr)
	target := fs.String("target", "", "base `URL` of the calcserver or load balancer")
	count := fs.Int("count", gameday.DefaultCheckCount, "requests to send")
	interval := fs.Duration("interval", gameday.DefaultCheckInterval, "time between two sends")
	timeout := fs.Duration("timeout", gameday.DefaultTimeout, "per-request timeout (the checker's)")
	format := fs.String("format", "token", "the servers' ResponseFormat: token or hash")
	version := fs.Int("calc-version", 1, "the servers' CalcVersion")
	seed := fs.Int64("seed", 0, "key-choice seed; 0: random")
	if code, ok := cli.Parse(fs, args); !ok {
		return code
	}
	f, err := calc.ParseFormat(*format)
	if err != nil {
		return usageError(e.stderr, cmd, fmt.Errorf("-format %q: must be token or hash", *format))
	}
	if err := refuseZero(map[string]bool{"count": *count == 0, "interval": *interval == 0, "timeout": *timeout == 0, "calc-version": *version == 0}); err != nil {
		return usageError(e.stderr, cmd, err)
	}
	o := gameday.CheckOptions{
		Target: *target, Count: *count, Interval: *interval, Timeout: *timeout,
		Format: f, CalcVersion: *version, Seed: *seed,
	}
	if err := o.Validate(); err != nil {
		return usageError(e.stderr, cmd, err)
	}
	fmt.Fprintf(e.stdout, "gameday check: %d requests to %s, one every %s, timeout %s\n", *count, *target, *interval, *timeout)
	begin := time.Now()
	passed, err := gameday.Check(e.ctx, o, func(r gameday.CheckResult) {
		fmt.Fprintln(e.stdout, r)
	})
	switch {
	case errors.Is(err, gameday.ErrOptions):
		return usageError(e.stderr, cmd, err)
	case err != nil:
		fmt.Fprintf(e.stderr, "%s: interrupted: %v\n", cmd, err)
		return exitInterrupted
	}
	fmt.Fprintf(e.stdout, "pass rate: %d/%d CORRECT (%.0f%%) in %.1fs\n", passed, *count, 100*float64(passed)/float64(*count), time.Since(begin).Seconds())
	if passed != *count {
		return exitRuntime
	}
	return exitOK
}
