// Command serverprobe measures a release build of calcserver the way a user runs it — a
// separate process with a server.ini that logs to a file, driven over loopback — for
// what wrk cannot show: how it refuses a burst beyond its queue, how it coalesces
// requests for one key, and what memory it holds:
//
//	serverprobe overload -calcserver PATH   a burst of distinct keys 50× Cores+QueueSize
//	serverprobe coalesce -calcserver PATH   1,000 concurrent requests for one new key
//	serverprobe memory   -calcserver PATH   RSS at idle, with 10,000 idle connections, per cached entry
//
// Each prints the command line and a Markdown table, one row per round and a median row,
// with the target next to each figure. A wrong answer, a rejection that is not a proper
// 503 or more than one job for a coalesced key is a failure (exit 1); a missed target
// only fails with -strict. scripts/bench-server.sh (make bench-server) builds
// calcserver and this probe and runs all three.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // a failure, a runtime error, or a missed target with -strict
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usageText = `usage: serverprobe overload|coalesce|memory -calcserver PATH [flags]
run "serverprobe SUBCOMMAND -h" for the flags of one subcommand`

// common holds the flags every subcommand has, and -bare for those with a baseline.
type common struct {
	calcserver string
	bare       string
	rounds     int
	strict     bool
}

func (c *common) register(fs *flag.FlagSet, rounds int) {
	fs.StringVar(&c.calcserver, "calcserver", "", "calcserver binary to run (required; a release build)")
	fs.IntVar(&c.rounds, "rounds", rounds, "rounds to measure; the table gives each and their median")
	fs.BoolVar(&c.strict, "strict", false, "exit 1 when a target is missed (by default the figures are only reported)")
}

// registerBare adds -bare, the baseline binary, which usage describes.
func (c *common) registerBare(fs *flag.FlagSet, usage string) {
	fs.StringVar(&c.bare, "bare", "", "internal/bareserver binary: "+usage)
}

func (c *common) check(name string) error {
	if c.calcserver == "" {
		return fmt.Errorf("serverprobe %s: -calcserver is required", name)
	}
	if c.rounds < 1 {
		return fmt.Errorf("serverprobe %s: -rounds must be at least 1, not %d", name, c.rounds)
	}
	// The servers run in directories of their own, so a relative path must not stay one.
	var err error
	if c.calcserver, err = absPath("calcserver", c.calcserver); err != nil {
		return fmt.Errorf("serverprobe %s: %w", name, err)
	}
	if c.bare, err = absPath("bare", c.bare); err != nil {
		return fmt.Errorf("serverprobe %s: %w", name, err)
	}
	return nil
}

// run is the command: it parses args, runs one subcommand and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usageText)
		return exitUsage
	}
	name, args := args[0], args[1:]
	fs := flag.NewFlagSet("serverprobe "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	var measure func(ctx context.Context, dir string) (report, error)
	switch name {
	case "overload":
		o := OverloadOptions{}
		c.register(fs, 5)
		fs.IntVar(&o.Cores, "cores", 2, "the server's Cores")
		fs.IntVar(&o.QueueSize, "queue", 5, "the server's QueueSize")
		fs.DurationVar(&o.WorkTime, "work-time", 2*time.Second, "the server's WorkTime (sleep mode); long enough that no core frees during the burst")
		fs.IntVar(&o.Factor, "factor", 50, "the burst is factor × (Cores+QueueSize) distinct new keys, each on its own connection")
		fs.DurationVar(&o.Settle, "settle", 10*time.Second, "how long goroutines may take to return to their idle count after the burst")
		c.registerBare(fs, "each round, the same burst at it first, as the baseline")
		fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write the server's CPU profile of each burst to `PREFIX`-ROUND.pprof")
		measure = func(ctx context.Context, dir string) (report, error) {
			o.Calcserver, o.Bare, o.Rounds, o.Dir, o.Progress = c.calcserver, c.bare, c.rounds, dir, stderr
			rep, _, err := Overload(ctx, o)
			return rep, err
		}
	case "coalesce":
		o := CoalesceOptions{}
		c.register(fs, 5)
		fs.IntVar(&o.Clients, "clients", 1000, "concurrent requests for one new key, each on its own connection")
		fs.DurationVar(&o.WorkTime, "work-time", time.Second, "the server's WorkTime (sleep mode, Cores 1)")
		measure = func(ctx context.Context, dir string) (report, error) {
			o.Calcserver, o.Rounds, o.Dir, o.Progress = c.calcserver, c.rounds, dir, stderr
			rep, _, err := Coalesce(ctx, o)
			return rep, err
		}
	case "memory":
		o := MemoryOptions{}
		c.register(fs, 3)
		fs.IntVar(&o.Conns, "conns", 10000, "idle keep-alive connections to hold open, each after one request")
		fs.IntVar(&o.Entries, "entries", 100000, "distinct keys to put in the memory tier")
		fs.IntVar(&o.Workers, "workers", 64, "keep-alive connections that fill the cache and open the idle connections")
		c.registerBare(fs, "each round, its RSS with as many idle connections first, as the baseline")
		fs.StringVar(&o.HeapProfile, "heapprofile", "", "write the server's heap profile with the idle connections open to `PREFIX`-ROUND.pprof")
		measure = func(ctx context.Context, dir string) (report, error) {
			o.Calcserver, o.Bare, o.Rounds, o.Dir, o.Progress = c.calcserver, c.bare, c.rounds, dir, stderr
			rep, _, err := Memory(ctx, o)
			return rep, err
		}
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usageText)
		return exitOK
	default:
		fmt.Fprintf(stderr, "serverprobe: unknown subcommand %q\n%s\n", name, usageText)
		return exitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "serverprobe %s: unexpected argument %q\n", name, fs.Arg(0))
		return exitUsage
	}
	if err := c.check(name); err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}

	dir, err := os.MkdirTemp("", "serverprobe-")
	if err != nil {
		fmt.Fprintf(stderr, "serverprobe %s: work directory: %v\n", name, err)
		return exitFail
	}
	defer os.RemoveAll(dir)

	rep, err := measure(ctx, dir)
	if err != nil {
		fmt.Fprintf(stderr, "serverprobe %s: %v\n", name, err)
		return exitFail
	}
	fmt.Fprintf(stdout, "```sh\n%s\n```\n\n", commandLine(fs))
	rep.write(stdout)
	switch {
	case len(rep.failures) > 0:
		fmt.Fprintf(stderr, "serverprobe %s: FAILED: %s\n", name, strings.Join(rep.failures, "; "))
		return exitFail
	case len(rep.missed) > 0 && c.strict:
		fmt.Fprintf(stderr, "serverprobe %s: targets missed: %s\n", name, strings.Join(rep.missed, "; "))
		return exitFail
	}
	return exitOK
}

// absPath makes the path of flag name absolute, because the servers run in
// directories of their own; "" stays "".
func absPath(name, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("-%s %s: %w", name, path, err)
	}
	return abs, nil
}

// commandLine shows the subcommand with every flag's effective value, unset paths left
// out and the others by their base names, so that no machine path lands in a report.
func commandLine(fs *flag.FlagSet) string {
	parts := []string{fs.Name()}
	fs.VisitAll(func(f *flag.Flag) {
		v := f.Value.String()
		if v == "" {
			return // an unset path
		}
		if f.Name == "calcserver" || f.Name == "bare" || f.Name == "cpuprofile" || f.Name == "heapprofile" {
			v = filepath.Base(v)
		}
		parts = append(parts, "-"+f.Name+"="+v)
	})
	return strings.Join(parts, " ")
}
