package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/gameday"
	"github.com/unicorn-rentals/unicorn/internal/gameday/bench"
)

const scaleUsage = `Usage: gameday scale [flags]

Measures how miss throughput grows with the number of calcservers behind nginx: for
each fleet size, N calcservers with no cache (sleep mode) behind nginx with the
project's configuration (least_conn), on free loopback ports, offered more never-
repeated keys than they can compute; then, on a fleet of the largest size sharing one
redis-server, keys computed on one instance are asked of every other. Prints a
Markdown table. Exit 0 when every size is within -tolerance of linear (N × Cores /
WorkTime), no answer was wrong and every shared-cache ask was a hit; 1 otherwise or
when a fleet could not start; 2 on bad flags; 130 when interrupted.

Flags:
`

type scaleFlags struct {
	instances  string
	cores      int
	queueSize  int
	workTime   time.Duration
	duration   time.Duration
	rounds     int
	overload   float64
	sharedKeys int
	tolerance  float64
	timeout    time.Duration
	jsonOut    string
	calcserver string
}

func scaleFlagSet(f *scaleFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("gameday scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, scaleUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.instances, "instances", "1,2,4,8", "comma-separated fleet `sizes`, measured in this order")
	fs.IntVar(&f.cores, "cores", bench.DefaultScaleCores, "each server's Cores")
	fs.IntVar(&f.queueSize, "queue-size", 5, "each server's QueueSize")
	fs.DurationVar(&f.workTime, "work-time", bench.DefaultScaleWorkTime, "each server's WorkTime (WorkMode sleep)")
	fs.DurationVar(&f.duration, "duration", bench.DefaultScaleDuration, "load per round (the first 2s are not counted)")
	fs.IntVar(&f.rounds, "rounds", 1, "rounds per fleet size (the table gives the median)")
	fs.Float64Var(&f.overload, "overload", bench.DefaultOverload, "offered rate as a multiple of the fleet's capacity (≥ 1)")
	fs.IntVar(&f.sharedKeys, "shared-keys", bench.DefaultSharedKeys, "keys of the shared-cache check")
	fs.Float64Var(&f.tolerance, "tolerance", 0.10, "largest accepted distance of correct/s from linear, as a fraction")
	fs.DurationVar(&f.timeout, "timeout", gameday.DefaultTimeout, "per-request timeout")
	fs.StringVar(&f.jsonOut, "json", "", "also write the figures as JSON to this `file`")
	fs.StringVar(&f.calcserver, "calcserver", "", "calcserver binary `path`; default: build ./cmd/calcserver when run inside this repository, else calcserver next to gameday, else on PATH")
	return fs
}

// parseSizes parses -instances: 1..64 each.
func parseSizes(s string) ([]int, error) {
	var sizes []int
	for part := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 1 || n > 64 {
			return nil, fmt.Errorf("%q is not a fleet size (1..64)", strings.TrimSpace(part))
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

// runScale is `gameday scale`; it returns the exit code.
func runScale(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f scaleFlags
	fs := scaleFlagSet(&f, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "gameday scale: "+format+"\n", a...)
		fmt.Fprintf(stderr, "run 'gameday scale -h' for the flags\n")
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	sizes, err := parseSizes(f.instances)
	if err != nil {
		return usage("-instances: %v", err)
	}
	switch {
	case f.cores < 1 || f.cores > 1024:
		return usage("-cores %d: must be 1..1024", f.cores)
	case f.queueSize < 0 || f.queueSize > 100000:
		return usage("-queue-size %d: must be 0..100000", f.queueSize)
	case f.workTime <= 0 || f.workTime > time.Minute:
		return usage("-work-time %v: must be more than 0 and at most 1m", f.workTime)
	case f.duration < 4*time.Second:
		return usage("-duration %v: must be at least 4s (the first 2s are not counted)", f.duration)
	case f.rounds < 1 || f.rounds > 100:
		return usage("-rounds %d: must be 1..100", f.rounds)
	case !(f.overload >= 1) || math.IsInf(f.overload, 0):
		return usage("-overload %v: must be at least 1", f.overload)
	case f.sharedKeys < 1 || f.sharedKeys > 10000:
		return usage("-shared-keys %d: must be 1..10000", f.sharedKeys)
	case !(f.tolerance > 0 && f.tolerance < 1):
		return usage("-tolerance %v: must be between 0 and 1", f.tolerance)
	case f.timeout <= 0:
		return usage("-timeout %v: must be positive", f.timeout)
	}
	for _, n := range sizes {
		if rate := float64(n*f.cores) / f.workTime.Seconds() * f.overload; rate > gameday.MaxRate {
			return usage("%d instances × -cores %d / -work-time %v × -overload %g is %.0f requests/s: more than %d", n, f.cores, f.workTime, f.overload, rate, gameday.MaxRate)
		}
	}

	bin := f.calcserver
	if bin == "" {
		var cleanup func()
		bin, cleanup, err = calcserverBinary(ctx, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "gameday scale: %v\n", err)
			return exitRuntime
		}
		defer cleanup()
	} else if _, err := os.Stat(bin); err != nil {
		fmt.Fprintf(stderr, "gameday scale: -calcserver: %v\n", err)
		return exitRuntime
	}

	res, err := bench.Scale(ctx, bench.ScaleOptions{
		Calcserver: bin,
		Instances:  sizes,
		Cores:      f.cores,
		QueueSize:  f.queueSize,
		WorkTime:   f.workTime,
		Duration:   f.duration,
		Rounds:     f.rounds,
		Overload:   f.overload,
		SharedKeys: f.sharedKeys,
		Timeout:    f.timeout,
		Log:        stderr,
	})
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "gameday scale: interrupted; servers stopped, nothing written")
		return exitInterrupted
	}
	if err != nil {
		fmt.Fprintf(stderr, "gameday scale: %v\n", err)
		return exitRuntime
	}
	fmt.Fprint(stdout, bench.ScaleMarkdown(res))
	if f.jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(f.jsonOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(stderr, "gameday scale: -json: %v\n", err)
			return exitRuntime
		}
	}
	if problems := scaleProblems(res, f.tolerance); len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "gameday scale: %s\n", p)
		}
		return exitRuntime
	}
	return exitOK
}

// scaleProblems lists what makes a scale run fail: a size whose correct answers per
// second are further than tolerance from linear, a wrong answer, a shared-cache ask
// that was not a right hit.
func scaleProblems(res bench.ScaleResult, tolerance float64) []string {
	var out []string
	for _, r := range res.Rows {
		if math.Abs(r.Ratio-1) > tolerance {
			out = append(out, fmt.Sprintf("%d instances: %.1f correct/s is %.3f× linear (%.0f/s): outside -tolerance %g", r.Instances, r.Correct, r.Ratio, r.Capacity, tolerance))
		}
		if r.Wrong > 0 {
			out = append(out, fmt.Sprintf("%d instances: %d wrong answers", r.Instances, r.Wrong))
		}
	}
	if s := res.Shared; s != nil && (s.Hits != s.Asked || s.Wrong > 0) {
		out = append(out, fmt.Sprintf("shared cache: %d of %d asks on other instances were hits (%d wrong, %d errors)", s.Hits, s.Asked, s.Wrong, s.Errors))
	}
	return out
}
