package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Files written by Write, besides the charts.
const (
	ResultsMD   = "results.md"
	ResultsJSON = "results.json"
)

// Write writes results.md, results.json and the charts (in format "svg" or "png") into
// dir, creating it, and returns the paths written. took is the bench's wall time, for
// the table's preamble (0: not shown).
func Write(dir string, o Options, results []Result, format string, took time.Duration) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	write := func(name string, b []byte) error {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
		files = append(files, p)
		return nil
	}

	if results == nil {
		results = []Result{} // "[]", not "null"
	}
	js, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := write(ResultsJSON, append(js, '\n')); err != nil {
		return files, err
	}
	charts, err := writeCharts(dir, results, format)
	files = append(files, charts...)
	if err != nil {
		return files, err
	}
	names := make([]string, len(charts))
	for i, c := range charts {
		names[i] = filepath.Base(c)
	}
	if err := write(ResultsMD, []byte(Markdown(o, results, names, took))); err != nil {
		return files, err
	}
	return files, nil
}

// TableHeader is the header row of the results table.
const TableHeader = "| strategy | correct/s | wrong | errors | timeouts | p50 (ms) | p99 (ms) | score |"

// Markdown renders results.md: how the bench ran, the table, why strategies were
// skipped, and the charts.
func Markdown(o Options, results []Result, charts []string, took time.Duration) string {
	var b strings.Builder
	b.WriteString("# gameday bench\n\n")
	fmt.Fprintf(&b, "Each strategy: one calcserver with `Cores = %d`, `QueueSize = %d`, `WorkTime = %v`, `WorkMode = %s`",
		o.Cores, o.QueueSize, o.WorkTime, o.WorkMode)
	if slices.ContainsFunc(results, func(r Result) bool { s, _ := lookup(r.Strategy); return s.fleet }) {
		n := o.Instances
		if n == 0 {
			n = DefaultInstances
		}
		fmt.Fprintf(&b, " (`fleet`: %d of them behind nginx)", n)
	}
	b.WriteString("; ")
	l := o.Load
	fmt.Fprintf(&b, "traffic %g requests/s for %v, %d keys (Zipf s = %g), %g%% unique, seed %d, timeout %v.\n",
		l.Rate, l.Duration, l.Keys, l.Skew, l.Unique*100, l.Seed, l.Timeout)
	fmt.Fprintf(&b, "Machine: %s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	if took > 0 {
		fmt.Fprintf(&b, "; the bench took %v", took.Round(time.Second))
	}
	b.WriteString(".\n\n")

	b.WriteString(TableHeader + "\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	var notes []string
	for _, r := range results {
		if r.Status != StatusOK {
			fmt.Fprintf(&b, "| %s | %s | | | | | | |\n", r.Strategy, r.Status)
			notes = append(notes, fmt.Sprintf("- **%s** %s: %s", r.Strategy, r.Status, escape(r.Reason)))
			continue
		}
		fmt.Fprintf(&b, "| %s | %.1f | %d | %d | %d | %.1f | %.1f | %.0f |\n",
			r.Strategy, r.CorrectPerSec, r.Wrong, r.Errors, r.Timeouts, r.Latency.P50, r.Latency.P99, r.Score)
	}
	if len(notes) > 0 {
		b.WriteString("\nNot measured:\n\n" + strings.Join(notes, "\n") + "\n")
	}
	if len(charts) > 0 {
		b.WriteString("\n")
		for _, c := range charts {
			fmt.Fprintf(&b, "![%s](%s)\n", strings.TrimSuffix(c, filepath.Ext(c)), c)
		}
	}
	return b.String()
}

// escape keeps a reason from breaking the Markdown around it.
func escape(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;", "`", "'").Replace(s)
}
