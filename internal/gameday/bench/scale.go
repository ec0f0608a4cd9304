package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/fleet"
	"github.com/unicorn-rentals/unicorn/internal/gameday"
)

// ScaleOptions configures Scale. Zero values take the defaults named.
type ScaleOptions struct {
	Calcserver string        // the calcserver binary
	Instances  []int         // fleet sizes, measured in this order; each ≥ 1
	Cores      int           // the servers' Cores; 0: 2
	QueueSize  int           // the servers' QueueSize
	WorkTime   time.Duration // the servers' WorkTime (WorkMode sleep); 0: 100ms
	Duration   time.Duration // load per round; 0: 10s
	Rounds     int           // rounds per fleet size, on the same fleet; 0: 1
	Overload   float64       // offered rate as a multiple of the fleet's capacity; 0: 1.25
	SharedKeys int           // keys of the shared-cache check; 0: 20
	Timeout    time.Duration // per request; 0: gameday's default
	Log        io.Writer     // progress; nil: discarded
}

// Scale defaults.
const (
	DefaultScaleCores    = 2
	DefaultScaleWorkTime = 100 * time.Millisecond
	DefaultScaleDuration = 10 * time.Second
	DefaultOverload      = 1.25
	DefaultSharedKeys    = 20
	// scaleSkip is the start of each run left out of the steady rate: the first jobs
	// end only after WorkTime, and the queues fill.
	scaleSkip = 2 * time.Second
)

// ScaleRow is one fleet size's figures.
type ScaleRow struct {
	Instances int     `json:"instances"`
	Capacity  float64 `json:"capacity_per_s"` // Instances × Cores / WorkTime
	Offered   float64 `json:"offered_per_s"`
	Rounds    int     `json:"rounds"`
	// Correct is the median over the rounds of the correct answers per second after
	// the first seconds; CorrectMin and CorrectMax its range.
	Correct    float64 `json:"correct_per_s"`
	CorrectMin float64 `json:"correct_per_s_min"`
	CorrectMax float64 `json:"correct_per_s_max"`
	Ratio      float64 `json:"ratio"`    // Correct / Capacity
	Rejected   int64   `json:"rejected"` // 503s (a full queue), all rounds
	Wrong      int64   `json:"wrong"`    // all rounds
	Errors     int64   `json:"errors"`   // errors other than 503, timeouts included, all rounds
	P99        float64 `json:"p99_ms"`   // median over the rounds
	// MinShare and MaxShare are the smallest and largest share of the correct
	// answers one instance gave, by X-Served-By (1/Instances each when even).
	MinShare float64 `json:"min_share"`
	MaxShare float64 `json:"max_share"`
}

// SharedCheck is the shared-cache check: keys computed each on one instance of a
// fleet sharing one Redis, then asked of every other instance directly.
type SharedCheck struct {
	Instances int   `json:"instances"`
	Keys      int   `json:"keys"`
	Asked     int   `json:"asked"` // keys × (instances − 1)
	Hits      int   `json:"hits"`  // answered X-Cache: HIT with the right answer
	Wrong     int   `json:"wrong"`
	Errors    int   `json:"errors"`
	Elapsed   int64 `json:"elapsed_ms"`
}

// ScaleResult is what Scale measured.
type ScaleResult struct {
	Options ScaleOptions `json:"-"`
	Rows    []ScaleRow   `json:"rows"`
	Shared  *SharedCheck `json:"shared,omitempty"` // nil when the largest fleet has one instance
}

func (o ScaleOptions) withDefaults() (ScaleOptions, error) {
	if o.Cores == 0 {
		o.Cores = DefaultScaleCores
	}
	if o.WorkTime == 0 {
		o.WorkTime = DefaultScaleWorkTime
	}
	if o.Duration == 0 {
		o.Duration = DefaultScaleDuration
	}
	if o.Rounds == 0 {
		o.Rounds = 1
	}
	if o.Overload == 0 {
		o.Overload = DefaultOverload
	}
	if o.SharedKeys == 0 {
		o.SharedKeys = DefaultSharedKeys
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	switch {
	case o.Calcserver == "":
		return o, errors.New("scale: no calcserver binary")
	case len(o.Instances) == 0:
		return o, errors.New("scale: no fleet sizes")
	case o.Duration < scaleSkip+2*time.Second:
		return o, fmt.Errorf("scale: duration %v: want at least %v, of which the first %v are not counted", o.Duration, scaleSkip+2*time.Second, scaleSkip)
	case o.Rounds < 1:
		return o, fmt.Errorf("scale: rounds %d: want at least 1", o.Rounds)
	case o.Overload < 1:
		return o, fmt.Errorf("scale: overload %g: want at least 1, or the servers are not kept busy", o.Overload)
	}
	for _, n := range o.Instances {
		if n < 1 {
			return o, fmt.Errorf("scale: fleet size %d: want at least 1", n)
		}
	}
	return o, nil
}

// Scale measures how miss throughput grows with the number of calcservers behind
// nginx: for each size in o.Instances, a fleet with no cache (MemoryCacheSize = 0, no
// Redis), WorkMode sleep, is offered o.Overload times its capacity of never-repeated
// keys for o.Duration; every answer is verified. Then, on a fleet of the largest size
// sharing one Redis, keys computed each on one instance are asked of every other
// (SharedCheck). Temporary directories are removed.
func Scale(ctx context.Context, o ScaleOptions) (ScaleResult, error) {
	o, err := o.withDefaults()
	res := ScaleResult{Options: o}
	if err != nil {
		return res, err
	}
	root, err := os.MkdirTemp("", "gameday-scale-")
	if err != nil {
		return res, fmt.Errorf("scale: %w", err)
	}
	defer os.RemoveAll(root)

	ini := fmt.Sprintf("Cores = %d\nQueueSize = %d\nWorkTime = %v\nWorkMode = sleep\nMemoryCacheSize = 0\nShutdownTimeout = %v\n",
		o.Cores, o.QueueSize, o.WorkTime, shutdownTimeout)
	largest := 0
	for i, n := range o.Instances {
		largest = max(largest, n)
		row, err := scaleOne(ctx, o, filepath.Join(root, fmt.Sprintf("%d-fleet-%d", i, n)), n, ini)
		if err != nil {
			return res, err
		}
		fmt.Fprintf(o.Log, "scale: %d instances: %.1f correct/s of %.1f (%.3f×), %d rejected, %d wrong, %d errors, p99 %.1f ms\n",
			n, row.Correct, row.Capacity, row.Ratio, row.Rejected, row.Wrong, row.Errors, row.P99)
		res.Rows = append(res.Rows, row)
	}
	if largest > 1 {
		sc, err := sharedCheck(ctx, o, filepath.Join(root, "shared"), largest, ini)
		if err != nil {
			return res, err
		}
		fmt.Fprintf(o.Log, "scale: shared cache: %d of %d asks on other instances were hits (%d wrong, %d errors)\n",
			sc.Hits, sc.Asked, sc.Wrong, sc.Errors)
		res.Shared = &sc
	}
	return res, nil
}

// scaleOne measures one fleet size in dir.
func scaleOne(ctx context.Context, o ScaleOptions, dir string, n int, ini string) (ScaleRow, error) {
	row := ScaleRow{Instances: n, Rounds: o.Rounds, Capacity: float64(n*o.Cores) / o.WorkTime.Seconds()}
	row.Offered = row.Capacity * o.Overload
	fmt.Fprintf(o.Log, "scale: starting %d calcservers and nginx\n", n)
	f, err := fleet.Start(ctx, fleet.Options{Calcserver: o.Calcserver, Dir: dir, Instances: n, ServerINI: ini, Log: o.Log})
	if err != nil {
		return row, fmt.Errorf("scale: %d instances: %w", n, err)
	}
	// No cache: a key asked again is a job again, so the rounds share one fleet.
	var rates, p99s []float64
	var runErr error
	for round := range o.Rounds {
		var sum gameday.Summary
		sum, runErr = gameday.Run(ctx, gameday.Options{
			Targets:  []string{f.URL()},
			Rate:     row.Offered,
			Duration: o.Duration,
			Timeout:  o.Timeout,
			Unique:   1, // every key new: every accepted request is a job
			Seed:     int64(round) + 1,
		}, nil)
		if runErr != nil {
			break
		}
		rate := steadyRate(sum.Series, scaleSkip, o.Duration)
		fmt.Fprintf(o.Log, "scale: %d instances, round %d: %.1f correct/s\n", n, round+1, rate)
		rates, p99s = append(rates, rate), append(p99s, sum.Latency.P99)
		row.Rejected += sum.ByStatus["503"]
		row.Wrong += sum.Wrong
		row.Errors += sum.Errors + sum.Timeouts - sum.ByStatus["503"]
	}
	if err := f.Close(); err != nil {
		fmt.Fprintf(o.Log, "scale: %d instances: stopping: %v\n", n, oneLine(err.Error()))
	}
	if runErr != nil {
		return row, fmt.Errorf("scale: %d instances: %w", n, runErr)
	}
	served, err := servedByUpstream(f.NginxLog())
	if err != nil {
		return row, fmt.Errorf("scale: %d instances: nginx's access log: %w", n, err)
	}
	row.Correct, row.P99 = median(rates), median(p99s)
	row.CorrectMin, row.CorrectMax = slices.Min(rates), slices.Max(rates)
	row.Ratio = row.Correct / row.Capacity
	row.MinShare, row.MaxShare = shares(served, f.InstanceURLs())
	return row, nil
}

// median of a non-empty list.
func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// steadyRate is the correct answers per second between whole seconds skip and the
// last whole second of the offered load, from the per-second series.
func steadyRate(series []gameday.Snapshot, skip, d time.Duration) float64 {
	from, to := int(skip/time.Second), int(d/time.Second)
	var first, last *gameday.Snapshot
	for i := range series {
		s := &series[i]
		if s.Second == from {
			first = s
		}
		if s.Second == to {
			last = s
		}
	}
	if first == nil || last == nil || last.ElapsedS <= first.ElapsedS {
		return 0
	}
	return float64(last.Correct-first.Correct) / (last.ElapsedS - first.ElapsedS)
}

// servedByUpstream counts the 200s in nginx's access log (the deploy configuration's
// "upstream" format) by the upstream that gave them: the last address of
// upstream=, which lists every one tried.
func servedByUpstream(path string) (map[string]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for line := range strings.SplitSeq(string(b), "\n") {
		_, rest, ok := strings.Cut(line, "\" 200 ")
		if !ok {
			continue
		}
		_, addrs, ok := strings.Cut(rest, " upstream=")
		if !ok {
			continue
		}
		addrs, _, _ = strings.Cut(addrs, " upstream_status=")
		list := strings.Split(addrs, ", ")
		counts[list[len(list)-1]]++
	}
	return counts, nil
}

// shares is the smallest and largest share of the 200s one instance gave, by its
// address; an instance that gave none counts as 0.
func shares(served map[string]int, urls []string) (lo, hi float64) {
	total := 0
	for _, c := range served {
		total += c
	}
	if total == 0 {
		return 0, 0
	}
	lo = 1
	for _, u := range urls {
		s := float64(served[strings.TrimPrefix(u, "http://")]) / float64(total)
		lo, hi = min(lo, s), max(hi, s)
	}
	return lo, hi
}

// sharedCheck starts a fleet of n sharing one Redis in dir, computes o.SharedKeys keys
// each through one instance (round-robin), then asks every other instance for each
// key directly.
func sharedCheck(ctx context.Context, o ScaleOptions, dir string, n int, ini string) (SharedCheck, error) {
	sc := SharedCheck{Instances: n, Keys: o.SharedKeys}
	fmt.Fprintf(o.Log, "scale: shared cache: starting redis, %d calcservers and nginx\n", n)
	f, err := fleet.Start(ctx, fleet.Options{Calcserver: o.Calcserver, Dir: dir, Instances: n, ServerINI: ini, Redis: true, Log: o.Log})
	if err != nil {
		return sc, fmt.Errorf("scale: shared cache: %w", err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			fmt.Fprintf(o.Log, "scale: shared cache: stopping: %v\n", oneLine(err.Error()))
		}
	}()
	urls := f.InstanceURLs()
	timeout := o.Timeout
	if timeout == 0 {
		timeout = gameday.DefaultTimeout
	}
	client := &http.Client{Timeout: timeout}
	begin := time.Now()
	keys := make([]gameday.Key, o.SharedKeys)
	for k := range keys {
		keys[k] = gameday.NewKey(int64(k) + 1)
		got, _, err := fetch(ctx, client, urls[k%n], keys[k])
		if err != nil {
			return sc, fmt.Errorf("scale: shared cache: computing key %d on instance %d: %w", k+1, k%n, err)
		}
		if got != "MISS" {
			return sc, fmt.Errorf("scale: shared cache: key %d on instance %d: X-Cache %q, want MISS on a fresh fleet", k+1, k%n, got)
		}
	}
	for k, key := range keys {
		for i, u := range urls {
			if i == k%n {
				continue
			}
			sc.Asked++
			got, right, err := fetch(ctx, client, u, key)
			switch {
			case err != nil:
				sc.Errors++
			case !right:
				sc.Wrong++
			case got == "HIT":
				sc.Hits++
			}
		}
	}
	sc.Elapsed = time.Since(begin).Milliseconds()
	return sc, ctx.Err()
}

// fetch asks base for key and returns X-Cache and whether the answer was right. A
// status other than 200 is an error.
func fetch(ctx context.Context, c *http.Client, base string, key gameday.Key) (xcache string, right bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/calc?input="+key.Query, nil)
	if err != nil {
		return "", false, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", false, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", false, fmt.Errorf("%s: status %d", base, resp.StatusCode)
	}
	return resp.Header.Get("X-Cache"), bytes.Equal(body, calc.Body(calc.Token, 1, []byte(key.Text))), nil
}

// ScaleMarkdown renders Scale's result as the table BENCHMARKS.md keeps.
func ScaleMarkdown(r ScaleResult) string {
	o := r.Options
	var b strings.Builder
	fmt.Fprintf(&b, "Each instance: `Cores = %d`, `QueueSize = %d`, `WorkTime = %v`, `WorkMode = sleep`, no cache; "+
		"offered %g× the fleet's capacity (instances × Cores / WorkTime) of never-repeated keys for %v through nginx (`least_conn`); "+
		"correct answers per second from second %d to the end of the load; %s.\n\n",
		o.Cores, o.QueueSize, o.WorkTime, o.Overload, o.Duration, int(scaleSkip/time.Second), roundsText(o.Rounds))
	b.WriteString("| instances | capacity/s | offered/s | correct/s | ratio to linear | 503s | wrong | other errors | p99 (ms) | share per instance |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.1f (%.1f–%.1f) | %.3f | %d | %d | %d | %.1f | %.1f–%.1f %% |\n",
			row.Instances, row.Capacity, row.Offered, row.Correct, row.CorrectMin, row.CorrectMax, row.Ratio,
			row.Rejected, row.Wrong, row.Errors, row.P99, row.MinShare*100, row.MaxShare*100)
	}
	if s := r.Shared; s != nil {
		fmt.Fprintf(&b, "\nShared cache (%d instances, one Redis): %d keys, each computed on one instance, asked of the %d others directly: "+
			"%d of %d answers were hits, %d wrong, %d errors.\n", s.Instances, s.Keys, s.Instances-1, s.Hits, s.Asked, s.Wrong, s.Errors)
	}
	return b.String()
}

// roundsText says how the correct/s column was taken from the rounds.
func roundsText(n int) string {
	if n == 1 {
		return "one round per size"
	}
	return fmt.Sprintf("median of %d rounds per size, range in brackets", n)
}
