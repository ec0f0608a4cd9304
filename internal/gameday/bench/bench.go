// Package bench is `gameday bench`: it runs the same GameDay traffic against a calcserver
// configured with one caching strategy after another — each with real local services
// (redis-server, memcached, mariadbd, postgres, mongod, dynalite) it starts itself — and
// writes the comparison as a Markdown table, JSON and charts.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/gameday"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// Service names, as StartService receives them.
const (
	Redis     = "redis"
	Memcached = "memcached"
	MariaDB   = "mariadb"
	Postgres  = "postgres"
	Mongod    = "mongod"
	Dynalite  = "dynalite"
)

// strategy is one calcserver cache configuration.
type strategy struct {
	name     string
	memory   bool     // the in-process memory tier (MemoryCacheSize)
	services []string // services to start, in order
	file     bool     // the shared file system tier (FsPath)
	fleet    bool     // Options.Instances calcservers behind nginx, sharing one Redis
	optIn    bool     // not in the default run: it needs a program the project does not install
}

var strategies = []strategy{
	{name: "none"},
	{name: "memory", memory: true},
	{name: "redis", services: []string{Redis}},
	{name: "memcached", services: []string{Memcached}},
	{name: "mysql", services: []string{MariaDB}},
	{name: "pgsql", services: []string{Postgres}},
	{name: "mongodb", services: []string{Mongod}, optIn: true},
	{name: "dynamodb", services: []string{Dynalite}},
	{name: "file", file: true},
	{name: "memory+redis", memory: true, services: []string{Redis}},
	{name: "fleet", memory: true, fleet: true},
}

// Strategies lists every strategy name in the order a default bench runs them.
func Strategies() []string {
	var names []string
	for _, s := range strategies {
		if !s.optIn {
			names = append(names, s.name)
		}
	}
	return names
}

// AllStrategies lists every strategy name, those a default run leaves out (mongodb:
// it needs a mongod on PATH) included.
func AllStrategies() []string {
	names := make([]string, len(strategies))
	for i, s := range strategies {
		names[i] = s.name
	}
	return names
}

func lookup(name string) (strategy, bool) {
	for _, s := range strategies {
		if s.name == name {
			return s, true
		}
	}
	return strategy{}, false
}

// ParseStrategies splits a comma-separated list of strategy names. Empty: all of them.
// An unknown or repeated name is an error that names it.
func ParseStrategies(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return Strategies(), nil
	}
	var names []string
	for n := range strings.SplitSeq(list, ",") {
		n = strings.TrimSpace(n)
		if _, ok := lookup(n); !ok {
			return nil, fmt.Errorf("unknown strategy %q (known: %s)", n, strings.Join(AllStrategies(), ", "))
		}
		if slices.Contains(names, n) {
			return nil, fmt.Errorf("strategy %q named twice", n)
		}
		names = append(names, n)
	}
	return names, nil
}

// Options configures a bench.
type Options struct {
	Strategies []string // names from Strategies(); empty: all
	Calcserver string   // the calcserver binary to start

	// Load is the traffic every strategy gets, with the same Seed, so every strategy
	// sees the same keys in the same order. Targets is set per strategy.
	Load gameday.Options

	// The servers' simulated core: WorkTime, WorkMode ("sleep" or "burn"), Cores and
	// QueueSize, written into each server's server.ini.
	WorkTime  time.Duration
	WorkMode  string
	Cores     int
	QueueSize int

	// Instances is how many calcservers the fleet strategy runs behind nginx; 0:
	// DefaultInstances.
	Instances int

	// Log receives progress and skip reasons (nil: discarded).
	Log io.Writer

	// StartService starts one of the services Redis, Memcached, MariaDB, Postgres,
	// Mongod and Dynalite with dir as its data directory. Nil: svctest's StartRedis,
	// StartMemcached, StartMariaDB, StartPostgres, StartMongod (with the mongod on
	// PATH; without one the strategy is skipped) and StartDynalite.
	StartService func(service, dir string) (*svctest.Proc, error)
}

// DefaultInstances is the fleet strategy's number of calcservers when
// Options.Instances is 0.
const DefaultInstances = 4

// Status of a strategy's result.
const (
	StatusOK      = "ok"      // measured
	StatusSkipped = "skipped" // a service or the calcserver could not start
	StatusFailed  = "failed"  // the load run itself failed
)

// Result is one strategy's outcome: the run's gameday.Summary (the fields of
// `gameday run -json`) with the strategy's name, its status and, when it did not run,
// why.
type Result struct {
	Strategy      string  `json:"strategy"`
	Status        string  `json:"status"`
	Reason        string  `json:"reason,omitempty"`
	CorrectPerSec float64 `json:"correct_per_s"` // correct answers per second of Load.Duration
	gameday.Summary
}

// Run benches each strategy in turn: it starts the strategy's services and a calcserver
// configured for it, offers o.Load with gameday.Run, stops the server with SIGTERM and
// the services, and goes on to the next. A strategy whose service or server cannot
// start is reported as skipped, with the reason, and the others still run. Run returns
// one result per strategy, in order. If ctx ends, everything started is stopped and Run
// returns the results so far with ctx's error. Temporary directories are removed.
func Run(ctx context.Context, o Options) ([]Result, error) {
	names := o.Strategies
	if len(names) == 0 {
		names = Strategies()
	}
	for _, n := range names {
		if _, ok := lookup(n); !ok {
			return nil, fmt.Errorf("bench: unknown strategy %q", n)
		}
	}
	if o.Calcserver == "" {
		return nil, errors.New("bench: no calcserver binary")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.StartService == nil {
		o.StartService = startService
	}
	root, err := os.MkdirTemp("", "gameday-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(root)

	var results []Result
	for i, name := range names {
		if err := ctx.Err(); err != nil {
			return results, err
		}
		s, _ := lookup(name)
		dir := filepath.Join(root, fmt.Sprintf("%d-%s", i, strings.ReplaceAll(name, "+", "-")))
		r, err := runOne(ctx, o, s, dir)
		_ = os.RemoveAll(dir) // the next strategy starts on a clean disk
		if err != nil {
			return results, err
		}
		if err := ctx.Err(); err != nil {
			return results, err // an interrupted strategy's figures are not comparable
		}
		if r.Status != StatusOK {
			fmt.Fprintf(o.Log, "bench: %s: %s: %s\n", name, r.Status, r.Reason)
		} else {
			fmt.Fprintf(o.Log, "bench: %s: %.1f correct/s, %d wrong, %d errors, %d timeouts, p50 %.1f ms, p99 %.1f ms, score %.0f\n",
				name, r.CorrectPerSec, r.Wrong, r.Errors, r.Timeouts, r.Latency.P50, r.Latency.P99, r.Score)
		}
		results = append(results, r)
	}
	return results, nil
}

// runOne benches one strategy in dir and stops whatever it started. Its error is for
// options gameday.Run refuses, which no other strategy could run with either.
func runOne(ctx context.Context, o Options, s strategy, dir string) (Result, error) {
	r := Result{Strategy: s.name}
	skip := func(format string, args ...any) (Result, error) {
		r.Status, r.Reason = StatusSkipped, oneLine(fmt.Sprintf(format, args...))
		return r, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return skip("%v", err)
	}
	if s.fleet {
		return runFleet(ctx, o, r, dir)
	}

	var ini strings.Builder
	var env []string // for calcserver's environment
	var procs []*svctest.Proc
	defer func() {
		for _, p := range slices.Backward(procs) {
			if err := p.Stop(); err != nil {
				fmt.Fprintf(o.Log, "bench: %s: stopping %s: %v\n", s.name, p.Name, oneLine(err.Error()))
			}
		}
	}()
	for _, svc := range s.services {
		if ctx.Err() != nil {
			return skip("interrupted")
		}
		fmt.Fprintf(o.Log, "bench: %s: starting %s\n", s.name, svc)
		p, err := o.StartService(svc, filepath.Join(dir, svc))
		if missing := (*notInstalled)(nil); errors.As(err, &missing) {
			return skip("%v", missing)
		}
		if err != nil {
			return skip("%s did not start: %v", svc, err)
		}
		procs = append(procs, p)
		lines, vars, err := serviceConfig(ctx, svc, p)
		if err != nil {
			return skip("%s: %v", svc, err)
		}
		ini.WriteString(lines)
		env = append(env, vars...)
	}
	if s.file {
		fs := filepath.Join(dir, "fs")
		if err := os.MkdirAll(fs, 0o755); err != nil {
			return skip("%v", err)
		}
		fmt.Fprintf(&ini, "FsPath = %q\n", fs)
	}
	memory := 0
	if s.memory {
		memory = 100000
	}
	fmt.Fprintf(&ini, "MemoryCacheSize = %d\n", memory)

	srv, err := startServer(ctx, o, filepath.Join(dir, "calcserver"), ini.String(), env)
	if err != nil {
		return skip("calcserver did not start: %v", err)
	}
	base := "http://" + srv.Addr()
	fmt.Fprintf(o.Log, "bench: %s: calcserver on %s; offering %.0f requests/s for %v\n", s.name, base, o.Load.Rate, o.Load.Duration)
	return measure(ctx, o, r, base, func() error { return srv.Stop(stopGrace) })
}

// measure offers o.Load to base, then calls stop (which stops what serves base) and
// fills r with the run's figures. Its error is for options gameday.Run refuses.
func measure(ctx context.Context, o Options, r Result, base string, stop func() error) (Result, error) {
	load := o.Load
	load.Targets = []string{base}
	sum, runErr := gameday.Run(ctx, load, nil)
	if err := stop(); err != nil {
		fmt.Fprintf(o.Log, "bench: %s: %v\n", r.Strategy, oneLine(err.Error()))
	}
	r.Summary = sum
	if errors.Is(runErr, gameday.ErrOptions) {
		return r, runErr
	}
	if runErr != nil {
		r.Status, r.Reason = StatusFailed, oneLine(runErr.Error())
		return r, nil
	}
	r.Status = StatusOK
	if secs := o.Load.Duration.Seconds(); secs > 0 {
		r.CorrectPerSec = float64(sum.Correct) / secs
	}
	return r, nil
}

// oneLine folds a multi-line error (svctest appends the output's tail) into one line
// short enough for a table cell.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	const limit = 300
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}
