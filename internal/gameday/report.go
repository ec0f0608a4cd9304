package gameday

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// barWidth is the progress bar's width in characters.
const barWidth = 20

// LiveLine is the one-line status a terminal redraws each second: progress, score,
// trend, offered → answered rates, the last second's p50/p99, then the counts (most
// important first, as a narrow terminal cuts the end). It has no line end.
func LiveLine(s Snapshot) string {
	var b strings.Builder
	frac := 0.0
	if s.DurationS > 0 {
		frac = min(s.ElapsedS/s.DurationS, 1)
	}
	full := int(frac * barWidth)
	b.WriteString("[" + strings.Repeat("#", full) + strings.Repeat("-", barWidth-full) + "]")
	fmt.Fprintf(&b, " %3.0f%% %s/%s", frac*100, clock(s.Elapsed), clock(time.Duration(s.DurationS*float64(time.Second))))
	fmt.Fprintf(&b, "  score %s  trend %s/min", points(s.Score), signed(s.Trend))
	fmt.Fprintf(&b, "  %s/s → %s/s", rate(s.TargetRate), rate(s.Rate))
	fmt.Fprintf(&b, "  p50 %s p99 %s", ms(s.Latency.P50, s.Rate > 0), ms(s.Latency.P99, s.Rate > 0))
	fmt.Fprintf(&b, "  ok %d wrong %d err %d t/o %d drop %d", s.Correct, s.Wrong, s.Errors, s.Timeouts, s.Dropped)
	return b.String()
}

// PlainLine is the periodic status line written when standard output is not a
// terminal (a log, CI).
func PlainLine(s Snapshot) string {
	return fmt.Sprintf("%s score %s trend %s/min offered %d requests %d correct %d wrong %d errors %d timeouts %d dropped %d inflight %d answers %s/s p50 %s p99 %s",
		clock(s.Elapsed), points(s.Score), signed(s.Trend), s.Offered, s.Requests, s.Correct, s.Wrong, s.Errors,
		s.Timeouts, s.Dropped, s.Inflight, rate(s.Rate), ms(s.Latency.P50, s.Rate > 0), ms(s.Latency.P99, s.Rate > 0))
}

// WriteSummary writes the final summary for a person: counts, score, latency, and the
// breakdowns by status, target and X-Served-By, then the last score events.
func WriteSummary(w io.Writer, s Summary) error {
	var b strings.Builder
	fmt.Fprintf(&b, "gameday: %.1fs against %d target(s) at %s/s: %d offered, %d sent, %d dropped\n",
		s.Duration, len(s.Targets), rate(s.Rate), s.Offered, s.Requests, s.Dropped)
	pct := func(n int64) string {
		if s.Requests == 0 {
			return ""
		}
		return fmt.Sprintf("  (%.1f%%)", 100*float64(n)/float64(s.Requests))
	}
	fmt.Fprintf(&b, "  correct   %8d%s\n", s.Correct, pct(s.Correct))
	fmt.Fprintf(&b, "  wrong     %8d%s\n", s.Wrong, pct(s.Wrong))
	fmt.Fprintf(&b, "  errors    %8d%s%s\n", s.Errors, pct(s.Errors), kinds(s.ByError))
	fmt.Fprintf(&b, "  timeouts  %8d%s\n", s.Timeouts, pct(s.Timeouts))
	if s.Canceled > 0 {
		fmt.Fprintf(&b, "  canceled  %8d  (interrupted, not scored)\n", s.Canceled)
	}
	fmt.Fprintf(&b, "  dropped   %8d  (arrivals with every one of the in-flight slots busy)\n", s.Dropped)
	fmt.Fprintf(&b, "score %s: %s earned by the answers, %s for $%g of cost (%s); trend %s/min\n",
		points(s.Score), signed(s.Points), signed(s.Score-s.Points), s.Cost, instancesText(s.Instances), signed(s.Trend))
	fmt.Fprintf(&b, "latency (every HTTP answer): p50 %s  p90 %s  p99 %s  max %s\n",
		ms(s.Latency.P50, true), ms(s.Latency.P90, true), ms(s.Latency.P99, true), ms(s.Latency.Max, true))
	fmt.Fprintf(&b, "connections: at most %d open at once\n", s.MaxConns)
	b.WriteString("by status:")
	for _, k := range sortedByCount(s.ByStatus) {
		fmt.Fprintf(&b, " %s %d", k, s.ByStatus[k])
	}
	b.WriteString("\n")
	writeCounts(&b, "by target", s.ByTarget)
	writeCounts(&b, "by X-Served-By", s.ByServedBy)
	if len(s.Events) > 0 {
		b.WriteString("last score events:\n")
		for _, e := range s.Events {
			fmt.Fprintf(&b, "  %9s %8s  %s\n", stamp(e.At), signed(e.Points), e.Reason)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeCounts(b *strings.Builder, title string, m map[string]Counts) {
	if len(m) == 0 {
		return
	}
	b.WriteString(title + ":\n")
	keys := slices.SortedFunc(maps.Keys(m), func(x, y string) int {
		return cmp.Or(cmp.Compare(m[y].Requests, m[x].Requests), strings.Compare(x, y))
	})
	for _, k := range keys {
		c := m[k]
		fmt.Fprintf(b, "  %-40s %8d requests %8d correct %6d wrong %6d errors %6d timeouts\n", k, c.Requests, c.Correct, c.Wrong, c.Errors, c.Timeouts)
	}
}

func kinds(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range sortedByCount(m) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return "  " + strings.Join(parts, ", ")
}

func sortedByCount(m map[string]int64) []string {
	return slices.SortedFunc(maps.Keys(m), func(x, y string) int {
		return cmp.Or(cmp.Compare(m[y], m[x]), strings.Compare(x, y))
	})
}

// points formats a score with one decimal.
func points(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// signed formats v with its sign.
func signed(v float64) string {
	if v >= 0 {
		return "+" + points(v)
	}
	return points(v)
}

func rate(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// ms formats milliseconds readably; "-" when there is nothing to show.
func ms(v float64, ok bool) string {
	switch {
	case !ok:
		return "-"
	case v >= 1000:
		return strconv.FormatFloat(v/1000, 'f', 2, 64) + "s"
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 0, 64) + "ms"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "ms"
}

// stamp formats a time since the start as m:ss.mmm.
func stamp(d time.Duration) string {
	return fmt.Sprintf("%s.%03d", clock(d), d.Milliseconds()%1000)
}

func instancesText(n int) string {
	switch n {
	case 0:
		return "no instance charged"
	case 1:
		return "1 instance per started 15 minutes"
	}
	return fmt.Sprintf("%d instances per started 15 minutes", n)
}
