package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/cli"
	"github.com/unicorn-rentals/unicorn/internal/gameday"
	"github.com/unicorn-rentals/unicorn/internal/gameday/board"
)

const runUsage = `Usage: gameday run -target URL [-target URL …] [flags]

Offers GET /calc?input=<key> at a constant arrival rate (an open model: a slow fleet
does not lower the offered load), verifies every answer, keeps the score as the
GameDay scoreboard does, and prints a summary. Exit 0 when the run completed,
whatever the score; 1 on a runtime failure; 2 on bad flags; 130 when interrupted.

Flags:
`

// targetList is a repeatable, comma-separated -target.
type targetList []string

func (t *targetList) String() string { return strings.Join(*t, ",") }

func (t *targetList) Set(v string) error {
	*t = append(*t, v)
	return nil
}

// refuseZero names the first flag, in name order, that was given as 0: zero means "the
// default" to the library, but on the command line, where every flag shows its default,
// it is a value, and one these flags cannot take.
func refuseZero(zero map[string]bool) error {
	for _, name := range slices.Sorted(maps.Keys(zero)) {
		if zero[name] {
			return fmt.Errorf("-%s 0: must be > 0", name)
		}
	}
	return nil
}

// usageError prints a flag problem the way flag does and returns exitUsage.
func usageError(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
	fmt.Fprintf(stderr, "run '%s -h' for the flags\n", cmd)
	return exitUsage
}

// runLoad is `gameday run`.
func runLoad(args []string, e env) int {
	const cmd = "gameday run"
	fs := cli.NewFlagSet(cmd, runUsage, e.stderr)
	var targets targetList
	fs.Var(&targets, "target", "base `URL` of a calcserver or load balancer (repeat, or separate with commas, for a round-robin fleet)")
	rate := fs.Float64("rate", 10, "arrivals per second")
	ramp := fs.Duration("ramp", 0, "ramp the rate up linearly from 1/s over this long first (part of -duration)")
	duration := fs.Duration("duration", time.Minute, "how long arrivals are offered")
	timeout := fs.Duration("timeout", gameday.DefaultTimeout, "per-request timeout (the contest checker's)")
	maxInflight := fs.Int("max-inflight", gameday.DefaultMaxInflight, "requests in flight, and connections open, at most; an arrival beyond it is dropped")
	keys := fs.Int("keys", gameday.DefaultKeys, "distinct popular keys, Zipf popularity")
	skew := fs.Float64("skew", gameday.DefaultSkew, "Zipf exponent of key popularity (> 1; higher: fewer hot keys)")
	unique := fs.Float64("unique", 0.1, "fraction 0..1 of never-repeated keys (always misses)")
	format := fs.String("format", "token", "the servers' ResponseFormat: token or hash")
	version := fs.Int("calc-version", 1, "the servers' CalcVersion")
	seed := fs.Int64("seed", 0, "key-choice seed; 0 picks one and prints it")
	def := gameday.DefaultScoring()
	correct := fs.Float64("points-correct", def.Correct, "points per correct answer")
	fastBonus := fs.Float64("points-fast", def.FastBonus, "extra points per correct answer within -fast")
	fast := fs.Duration("fast", def.Fast, "latency that earns -points-fast")
	wrong := fs.Float64("points-wrong", def.Wrong, "points per wrong answer")
	errPts := fs.Float64("points-error", def.Error, "points per error (non-200, refused or broken connection)")
	timeoutPts := fs.Float64("points-timeout", def.Timeout, "points per timeout")
	instances := fs.Int("instances", 1, "instances charged for (0: no cost)")
	costPer15m := fs.Float64("cost-per-15m", gameday.DefaultCostPer15m, "dollars per instance per started 15 minutes")
	perDollar := fs.Float64("points-per-dollar", def.PointsPerDollar, "points subtracted per dollar of cost")
	trendWindow := fs.Duration("trend-window", def.TrendWindow, "sliding window of the trend (points per minute)")
	reportEvery := fs.Duration("report-interval", 5*time.Second, "status line period when stdout is not a terminal (0: none)")
	jsonPath := fs.String("json", "", "write the summary as JSON to this `file`")
	boardAddr := fs.String("board", "", "serve the live scoreboard on this `address` (e.g. :8081 or 127.0.0.1:8081)")
	if code, ok := cli.Parse(fs, args); !ok {
		return code
	}

	f, err := calc.ParseFormat(*format)
	if err != nil {
		return usageError(e.stderr, cmd, fmt.Errorf("-format %q: must be token or hash", *format))
	}
	if *reportEvery < 0 {
		return usageError(e.stderr, cmd, fmt.Errorf("-report-interval %s: must be ≥ 0", *reportEvery))
	}
	for *seed == 0 {
		*seed = rand.Int64()
	}
	o := gameday.Options{
		Targets:     targets,
		Rate:        *rate,
		Ramp:        *ramp,
		Duration:    *duration,
		Timeout:     *timeout,
		MaxInflight: *maxInflight,
		Keys:        *keys,
		Skew:        *skew,
		Unique:      *unique,
		CalcVersion: *version,
		Format:      f,
		Instances:   *instances,
		CostPer15m:  *costPer15m,
		Seed:        *seed,
		Scoring: gameday.Scoring{
			Correct:         *correct,
			FastBonus:       *fastBonus,
			Fast:            *fast,
			Wrong:           *wrong,
			Error:           *errPts,
			Timeout:         *timeoutPts,
			PointsPerDollar: *perDollar,
			TrendWindow:     *trendWindow,
		},
	}
	if err := refuseZero(map[string]bool{"timeout": *timeout == 0, "max-inflight": *maxInflight == 0,
		"keys": *keys == 0, "trend-window": *trendWindow == 0, "calc-version": *version == 0}); err != nil {
		return usageError(e.stderr, cmd, err)
	}
	if err := o.Validate(); err != nil {
		return usageError(e.stderr, cmd, err)
	}
	if targets, err := gameday.ParseTargets(targets); err == nil {
		o.Targets = targets
	}

	// Open the summary's file before the run, so that a typo costs a second, not the run.
	var jsonFile *os.File
	if *jsonPath != "" {
		jsonFile, err = os.Create(*jsonPath)
		if err != nil {
			fmt.Fprintf(e.stderr, "%s: -json: %v\n", cmd, err)
			return exitRuntime
		}
		defer jsonFile.Close()
	}

	observers := []func(gameday.Snapshot){statusPrinter(e, *reportEvery)}
	if *boardAddr != "" {
		ln, err := net.Listen("tcp", *boardAddr)
		if err != nil {
			fmt.Fprintf(e.stderr, "%s: -board: %v\n", cmd, err)
			return exitRuntime
		}
		b := board.New(board.Options{Title: "GameDay", Targets: o.Targets, Logger: slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		go b.Serve(ln)
		defer b.Close()
		fmt.Fprintf(e.stderr, "%s: scoreboard on http://%s/\n", cmd, boardURLHost(ln.Addr()))
		observers = append(observers, b.Publish)
	}

	fmt.Fprintf(e.stdout, "gameday run: %s/s for %s%s against %s; %d keys (Zipf s=%g) and %g%% unique, %s v%d, at most %d in flight, timeout %s, seed %d\n",
		trimFloat(o.Rate), o.Duration, rampText(o.Ramp), strings.Join(o.Targets, ", "), o.Keys, o.Skew, o.Unique*100, f, o.CalcVersion, o.MaxInflight, o.Timeout, o.Seed)
	sum, err := gameday.Run(e.ctx, o, func(s gameday.Snapshot) {
		for _, obs := range observers {
			obs(s)
		}
	})
	interrupted := errors.Is(err, context.Canceled)
	if err != nil && !interrupted {
		fmt.Fprintf(e.stderr, "%s: %v\n", cmd, err)
		if errors.Is(err, gameday.ErrOptions) {
			return exitUsage
		}
		return exitRuntime
	}
	if err := gameday.WriteSummary(e.stdout, sum); err != nil {
		return exitRuntime
	}
	if jsonFile != nil {
		if err := writeJSON(jsonFile, sum); err != nil {
			fmt.Fprintf(e.stderr, "%s: -json: %v\n", cmd, err)
			return exitRuntime
		}
	}
	if interrupted {
		fmt.Fprintf(e.stderr, "%s: interrupted after %.1fs; the summary covers what was sent\n", cmd, sum.Duration)
		return exitInterrupted
	}
	return exitOK
}

// statusPrinter returns the observer that shows progress: on a terminal one line
// redrawn in place each second, otherwise a plain line every interval (a log or CI
// gets no carriage returns).
func statusPrinter(e env, interval time.Duration) func(gameday.Snapshot) {
	if e.terminal {
		return func(s gameday.Snapshot) {
			end := ""
			if s.Final {
				end = "\n"
			}
			fmt.Fprintf(e.stdout, "\r%s\x1b[K%s", fit(gameday.LiveLine(s), e.width), end)
		}
	}
	next := interval
	return func(s gameday.Snapshot) {
		if interval <= 0 || s.Final || s.Elapsed < next {
			return
		}
		for next <= s.Elapsed {
			next += interval
		}
		fmt.Fprintln(e.stdout, gameday.PlainLine(s))
	}
}

func writeJSON(f *os.File, s gameday.Summary) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		return err
	}
	return f.Close()
}

// boardURLHost is the address to print for the board: a wildcard listener is shown
// as localhost, which a browser on this machine can open.
func boardURLHost(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort("localhost", fmt.Sprint(tcp.Port))
}

func rampText(r time.Duration) string {
	if r == 0 {
		return ""
	}
	return fmt.Sprintf(" (ramp %s)", r)
}

func trimFloat(v float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}

// fit cuts line to width-1 columns: a line that wraps cannot be redrawn with \r.
// The status line is ASCII but for "→", one column wide.
func fit(line string, width int) string {
	if width <= 1 {
		return line
	}
	r := []rune(line)
	if len(r) < width {
		return line
	}
	return string(r[:width-1])
}
