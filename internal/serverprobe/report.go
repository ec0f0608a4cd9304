package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// report is what a subcommand found: Markdown tables and notes to print, failures
// (the server broke its contract: always exit 1) and missed targets (exit 1 with
// -strict).
type report struct {
	tables   []table
	notes    []string
	failures []string
	missed   []string
}

// table is one Markdown table; the first column is left-aligned, the others right.
type table struct {
	title  string
	header []string
	rows   [][]string
}

func (r *report) failf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

// target records a figure against its target: the verdict cell for a table, and the
// target in r.missed when it is missed.
func (r *report) target(met bool, what string, args ...any) string {
	if met {
		return "met"
	}
	r.missed = append(r.missed, fmt.Sprintf(what, args...))
	return "**missed**"
}

func (r *report) write(w io.Writer) {
	for _, t := range r.tables {
		if t.title != "" {
			fmt.Fprintf(w, "%s\n\n", t.title)
		}
		fmt.Fprintf(w, "| %s |\n|", strings.Join(t.header, " | "))
		for i := range t.header {
			if i == 0 {
				fmt.Fprint(w, "---|")
			} else {
				fmt.Fprint(w, "---:|")
			}
		}
		fmt.Fprintln(w)
		for _, row := range t.rows {
			fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
		}
		fmt.Fprintln(w)
	}
	for _, n := range r.notes {
		fmt.Fprintf(w, "%s\n\n", n)
	}
	for _, f := range r.failures {
		fmt.Fprintf(w, "FAILED: %s\n\n", f)
	}
}

// latency holds the nearest-rank percentiles of a set of durations.
type latency struct {
	n             int
	p50, p99, max time.Duration
}

func latencies(d []time.Duration) latency {
	if len(d) == 0 {
		return latency{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return latency{n: len(s), p50: rank(s, 0.50), p99: rank(s, 0.99), max: s[len(s)-1]}
}

// rank is the nearest-rank percentile p of the sorted s.
func rank(s []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// median of v; of an even count, the mean of the middle two.
func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// medianOf is the median of f over the rounds.
func medianOf[T any](rounds []T, f func(T) float64) float64 {
	v := make([]float64, len(rounds))
	for i, r := range rounds {
		v[i] = f(r)
	}
	return median(v)
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string { return msf(float64(d) / float64(time.Millisecond)) }

// msf formats milliseconds with two decimals below 10, one above.
func msf(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	if v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// mb formats bytes in megabytes (10^6 bytes), the unit of the memory targets.
func mb(b float64) string {
	if math.IsNaN(b) {
		return "—"
	}
	return fmt.Sprintf("%.1f", b/1e6)
}

// num formats a count or a median of counts.
func num(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
