package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/gameday"
	"github.com/unicorn-rentals/unicorn/internal/gameday/bench"
)

const benchUsage = `Usage: gameday bench [flags]

Runs calcserver once per caching strategy, each against local services it starts
itself (redis-server, memcached, mariadbd, postgres, mongod from PATH, dynalite,
nginx, on free loopback ports), offers every one the same traffic (same seed, same keys), and
writes results.md, results.json and charts into -out. Strategies: %s (mongodb
only when named: it needs mongod on PATH).
Exit 0 when every strategy was measured; 1 when one was skipped (the results still
say why) or the bench could not run; 2 on bad flags; 130 when interrupted.

Flags:
`

// benchFlags are bench's command line.
type benchFlags struct {
	strategies string
	duration   time.Duration
	rate       float64
	workTime   time.Duration
	workMode   string
	cores      int
	queueSize  int
	instances  int
	keys       int
	skew       float64
	unique     float64
	seed       int64
	timeout    time.Duration
	out        string
	calcserver string
	charts     string
}

// benchFlagSet defines bench's flags into f.
func benchFlagSet(f *benchFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("gameday bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, benchUsage, strings.Join(bench.AllStrategies(), ", "))
		fs.PrintDefaults()
	}
	fs.StringVar(&f.strategies, "strategies", strings.Join(bench.Strategies(), ","), "comma-separated `list` of strategies to bench, in this order")
	fs.DurationVar(&f.duration, "duration", 20*time.Second, "how long each strategy gets traffic")
	fs.Float64Var(&f.rate, "rate", 100, "requests per second offered to each strategy")
	fs.DurationVar(&f.workTime, "work-time", 100*time.Millisecond, "the servers' WorkTime: how long a miss holds the simulated core (the contest's is 4s)")
	fs.StringVar(&f.workMode, "work-mode", "sleep", "the servers' WorkMode: sleep (results independent of this machine's CPU) or burn")
	fs.IntVar(&f.cores, "cores", 1, "the servers' Cores")
	fs.IntVar(&f.queueSize, "queue-size", 5, "the servers' QueueSize")
	fs.IntVar(&f.instances, "instances", bench.DefaultInstances, "calcservers behind nginx in the fleet strategy")
	fs.IntVar(&f.keys, "keys", gameday.DefaultKeys, "distinct popular keys (Zipf popularity)")
	fs.Float64Var(&f.skew, "skew", gameday.DefaultSkew, "Zipf exponent of key popularity (> 1)")
	fs.Float64Var(&f.unique, "unique", 0.02, "fraction 0..1 of never-repeated keys (always misses)")
	fs.Int64Var(&f.seed, "seed", 1, "key-choice seed, the same for every strategy (not 0)")
	fs.DurationVar(&f.timeout, "timeout", gameday.DefaultTimeout, "per-request timeout")
	fs.StringVar(&f.out, "out", "bench-out", "`dir`ectory for results.md, results.json and the charts")
	fs.StringVar(&f.calcserver, "calcserver", "", "calcserver binary `path`; default: build ./cmd/calcserver when run inside this repository, else calcserver next to gameday, else on PATH")
	fs.StringVar(&f.charts, "charts", "svg", "chart format: svg or png")
	return fs
}

// runBench is `gameday bench` with args after the subcommand; ctx ends on Ctrl-C. It
// returns the exit code: 0 every strategy was measured, 1 one was skipped or failed
// (the files are written all the same) or the bench could not run, 2 a bad command
// line, 130 interrupted.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f benchFlags
	fs := benchFlagSet(&f, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "gameday bench: "+format+"\n", a...)
		fmt.Fprintf(stderr, "run 'gameday bench -h' for the flags\n")
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	names, err := bench.ParseStrategies(f.strategies)
	if err != nil {
		return usage("-strategies: %v", err)
	}
	switch {
	case f.duration <= 0:
		return usage("-duration %v: must be positive", f.duration)
	case f.rate <= 0:
		return usage("-rate %v: must be positive", f.rate)
	case f.workTime <= 0 || f.workTime > time.Hour:
		return usage("-work-time %v: must be more than 0 and at most 1h", f.workTime)
	case f.workMode != "sleep" && f.workMode != "burn":
		return usage("-work-mode %q: must be sleep or burn", f.workMode)
	case f.cores < 1 || f.cores > 1024:
		return usage("-cores %d: must be 1..1024", f.cores)
	case f.queueSize < 0 || f.queueSize > 100000:
		return usage("-queue-size %d: must be 0..100000", f.queueSize)
	case f.instances < 1 || f.instances > 64:
		return usage("-instances %d: must be 1..64", f.instances)
	case f.seed == 0:
		return usage("-seed 0: every strategy needs the same keys; pick a seed")
	case !slices.Contains(bench.ChartFormats, f.charts):
		return usage("-charts %q: must be svg or png", f.charts)
	}

	begin := time.Now()

	bin := f.calcserver
	if bin == "" {
		var cleanup func()
		bin, cleanup, err = calcserverBinary(ctx, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "gameday bench: %v\n", err)
			return exitRuntime
		}
		defer cleanup()
	} else if _, err := os.Stat(bin); err != nil {
		fmt.Fprintf(stderr, "gameday bench: -calcserver: %v\n", err)
		return exitRuntime
	}

	o := bench.Options{
		Strategies: names,
		Calcserver: bin,
		Load: gameday.Options{
			Rate:     f.rate,
			Duration: f.duration,
			Timeout:  f.timeout,
			Keys:     f.keys,
			Skew:     f.skew,
			Unique:   f.unique,
			Seed:     f.seed,
		},
		WorkTime:  f.workTime,
		WorkMode:  f.workMode,
		Cores:     f.cores,
		QueueSize: f.queueSize,
		Instances: f.instances,
		Log:       stderr,
	}
	results, err := bench.Run(ctx, o)
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "gameday bench: interrupted; servers and services stopped, no results written")
		return exitInterrupted
	}
	if err != nil {
		fmt.Fprintf(stderr, "gameday bench: %v\n", err)
		if errors.Is(err, gameday.ErrOptions) {
			return exitUsage
		}
		return exitRuntime
	}
	files, err := bench.Write(f.out, o, results, f.charts, time.Since(begin))
	if err != nil {
		fmt.Fprintf(stderr, "gameday bench: writing results: %v\n", err)
		return exitRuntime
	}
	md, _ := os.ReadFile(filepath.Join(f.out, bench.ResultsMD))
	_, _ = stdout.Write(md)
	fmt.Fprintf(stderr, "gameday bench: wrote %s in %v\n", strings.Join(files, ", "), time.Since(begin).Round(time.Second))
	for _, r := range results {
		if r.Status != bench.StatusOK {
			fmt.Fprintf(stderr, "gameday bench: not every strategy was measured (%s %s: %s)\n", r.Strategy, r.Status, r.Reason)
			return exitRuntime
		}
	}
	return exitOK
}

// calcserverBinary finds the calcserver to bench: built from this repository when the
// working directory is inside it, so the bench measures the source at hand; otherwise
// the calcserver next to this executable, or on PATH. cleanup removes a build.
func calcserverBinary(ctx context.Context, stderr io.Writer) (string, func(), error) {
	wd, err := os.Getwd()
	if err == nil {
		if root := bench.ModuleRoot(wd); root != "" {
			dir, err := os.MkdirTemp("", "gameday-calcserver-")
			if err != nil {
				return "", nil, err
			}
			cleanup := func() { os.RemoveAll(dir) }
			fmt.Fprintf(stderr, "gameday bench: building calcserver from %s\n", root)
			bin, err := bench.BuildCalcserver(ctx, root, dir)
			if err != nil {
				cleanup()
				return "", nil, err
			}
			return bin, cleanup, nil
		}
	}
	bin, err := bench.FindCalcserver()
	if err != nil {
		return "", nil, err
	}
	return bin, func() {}, nil
}
