package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/gameday"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

func TestParseStrategies(t *testing.T) {
	all, err := ParseStrategies("")
	if err != nil || strings.Join(all, ",") != "none,memory,redis,memcached,mysql,pgsql,dynamodb,file,memory+redis,fleet" {
		t.Fatalf("default: %v, %v", all, err)
	}
	got, err := ParseStrategies(" redis , memory+redis")
	if err != nil || strings.Join(got, ",") != "redis,memory+redis" {
		t.Fatalf("list: %v, %v", got, err)
	}
	for _, bad := range []string{"redis,postgres", "redis,,memory", "memory,memory"} {
		if _, err := ParseStrategies(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := ParseStrategies("redis,postgres"); err == nil || !strings.Contains(err.Error(), `"postgres"`) {
		t.Errorf("unknown name not named: %v", err)
	}
}

// synthetic returns results as a bench of none, memory and a skipped mysql would.
func synthetic() []Result {
	series := func(rate float64) []gameday.Snapshot {
		var s []gameday.Snapshot
		for i := 1; i <= 5; i++ {
			s = append(s, gameday.Snapshot{Second: i, Elapsed: time.Duration(i) * time.Second,
				Correct: int64(rate * float64(i)), Score: rate * float64(i) * 2})
		}
		return s
	}
	return []Result{
		{Strategy: "none", Status: StatusOK, CorrectPerSec: 10, Summary: gameday.Summary{Correct: 50, Errors: 400, Series: series(10)}},
		{Strategy: "memory", Status: StatusOK, CorrectPerSec: 90, Summary: gameday.Summary{Correct: 450, Series: series(90)}},
		{Strategy: "mysql", Status: StatusSkipped, Reason: "mariadb did not start: mariadbd | not found"},
	}
}

func TestWrite(t *testing.T) {
	for _, format := range ChartFormats {
		t.Run(format, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			o := Options{Cores: 1, QueueSize: 5, WorkTime: 50 * time.Millisecond, WorkMode: "sleep",
				Load: gameday.Options{Rate: 100, Duration: 5 * time.Second, Keys: 100, Skew: 1.1, Seed: 1, Timeout: 8 * time.Second}}
			files, err := Write(dir, o, synthetic(), format, 42*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != 5 {
				t.Errorf("files %v", files)
			}
			checkOutput(t, dir, format, []string{"none", "memory", "mysql"})
			md, _ := os.ReadFile(filepath.Join(dir, ResultsMD))
			for _, want := range []string{
				"| none | 10.0 | 0 | 400 | 0 |",
				"| mysql | skipped | | | | | | |",
				`- **mysql** skipped: mariadb did not start: mariadbd \| not found`,
				"the bench took 42s",
				"![score](score." + format + ")",
			} {
				if !strings.Contains(string(md), want) {
					t.Errorf("results.md lacks %q:\n%s", want, md)
				}
			}
		})
	}
	if _, err := Write(t.TempDir(), Options{}, synthetic(), "gif", 0); err == nil {
		t.Error("gif: no error")
	}
}

// checkOutput checks results.json, results.md and the charts in dir for a bench of
// strategies, in order, and returns the JSON results.
func checkOutput(t *testing.T, dir, format string, strategies []string) []Result {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ResultsJSON))
	if err != nil {
		t.Fatal(err)
	}
	var results []Result
	if err := json.Unmarshal(b, &results); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	var raw []map[string]any // the Summary's fields sit beside "strategy", as in run -json
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if len(results) != len(strategies) {
		t.Fatalf("results.json has %d objects, want %d", len(results), len(strategies))
	}
	for i, r := range results {
		if r.Strategy != strategies[i] {
			t.Errorf("result %d is %q, want %q", i, r.Strategy, strategies[i])
		}
		for _, k := range []string{"strategy", "status", "correct_per_s", "requests", "correct", "wrong", "errors", "timeouts", "score", "latency_ms", "series", "duration_s"} {
			if _, ok := raw[i][k]; !ok {
				t.Errorf("result %d lacks %q", i, k)
			}
		}
	}

	md, err := os.ReadFile(filepath.Join(dir, ResultsMD))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(md), "\n")
	head := -1
	for i, l := range lines {
		if l == TableHeader {
			head = i
		}
	}
	if head < 0 {
		t.Fatalf("results.md has no table header:\n%s", md)
	}
	var rows []string
	for _, l := range lines[head+2:] {
		if !strings.HasPrefix(l, "|") {
			break
		}
		rows = append(rows, l)
	}
	if len(rows) != len(strategies) {
		t.Fatalf("results.md has %d rows, want %d:\n%s", len(rows), len(strategies), md)
	}
	for i, row := range rows {
		if !strings.HasPrefix(row, "| "+strategies[i]+" |") {
			t.Errorf("row %d: %q", i, row)
		}
	}

	for _, c := range []string{ChartCorrectPerSec, ChartScore, ChartAnswers} {
		if err := CheckChart(filepath.Join(dir, c+"."+format)); err != nil {
			t.Error(err)
		}
	}
	return results
}

// calcserverBinary builds ./cmd/calcserver once for the package's tests.
func calcserverBinary(t *testing.T) string {
	t.Helper()
	wd, _ := os.Getwd()
	root := ModuleRoot(wd)
	if root == "" {
		t.Fatal("not inside the module")
	}
	bin, err := BuildCalcserver(context.Background(), root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestSkippedService runs a bench whose MariaDB cannot start: mysql is reported as
// skipped, with the reason, and the strategies around it still run.
func TestSkippedService(t *testing.T) {
	bin := calcserverBinary(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	var log bytes.Buffer
	o := Options{
		Strategies: []string{"none", "mysql", "file"},
		Calcserver: bin,
		Load: gameday.Options{Rate: 50, Duration: time.Second, Keys: 20, Skew: 1.1, Seed: 7,
			Timeout: 2 * time.Second, Instances: 1},
		WorkTime: 5 * time.Millisecond, WorkMode: "sleep", Cores: 1, QueueSize: 5,
		Log: &log,
		StartService: func(service, dir string) (*svctest.Proc, error) {
			if service == MariaDB {
				return nil, errors.New("svctest: mariadbd not found on PATH")
			}
			return startService(service, dir)
		},
	}
	results, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 3 {
		t.Fatalf("%d results: %+v", len(results), results)
	}
	if r := results[1]; r.Strategy != "mysql" || r.Status != StatusSkipped || !strings.Contains(r.Reason, "mariadbd not found") {
		t.Errorf("mysql: %+v", r)
	}
	for _, i := range []int{0, 2} {
		if r := results[i]; r.Status != StatusOK || r.Correct == 0 {
			t.Errorf("%s: %s %s, %d correct", r.Strategy, r.Status, r.Reason, r.Correct)
		}
	}
	if !strings.Contains(log.String(), "bench: mysql: skipped: mariadb did not start: svctest: mariadbd not found") {
		t.Errorf("log:\n%s", log.String())
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	dir := t.TempDir()
	if _, err := Write(dir, o, results, "svg", 0); err != nil {
		t.Fatal(err)
	}
	got := checkOutput(t, dir, "svg", o.Strategies)
	if got[1].Status != StatusSkipped || got[1].Reason == "" {
		t.Errorf("results.json: mysql %+v", got[1])
	}
	md, _ := os.ReadFile(filepath.Join(dir, ResultsMD))
	if !strings.Contains(string(md), "**mysql** skipped: mariadb did not start") {
		t.Errorf("results.md:\n%s", md)
	}
}

// TestNewStores benches pgsql and dynamodb against a real PostgreSQL and dynalite, and
// mongodb on a PATH without mongod: pgsql and dynamodb answer only correctly and more
// than none (so calcserver reached its store: for dynamodb, through the endpoint and
// credentials in its environment), and mongodb is skipped, saying why.
func TestNewStores(t *testing.T) {
	bin := calcserverBinary(t)
	t.Setenv("PATH", withoutProgram(os.Getenv("PATH"), "mongod"))
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	// As root, PostgreSQL runs as the postgres user, which must reach its data
	// directory: svctest opens the directories below TMPDIR to it, not TMPDIR itself
	// and the test's directory above it (both 0700).
	for _, d := range []string{tmp, filepath.Dir(tmp)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	var log bytes.Buffer
	o := Options{
		Strategies: []string{"none", "pgsql", "mongodb", "dynamodb"},
		Calcserver: bin,
		// One core at 100 ms computes 10 answers a second of the 80 offered (and a few
		// more for requests that share a key in flight); a cache serves the popular
		// keys again after their first answer.
		Load: gameday.Options{Rate: 80, Duration: 3 * time.Second, Keys: 200, Skew: 1.1, Seed: 7,
			Timeout: 2 * time.Second},
		WorkTime: 100 * time.Millisecond, WorkMode: "sleep", Cores: 1, QueueSize: 5,
		Log: &log,
	}
	results, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 4 {
		t.Fatalf("%d results: %+v\n%s", len(results), results, log.String())
	}
	none := results[0]
	if none.Status != StatusOK || none.Correct == 0 || none.Wrong != 0 {
		t.Fatalf("none: %s %s, %d correct, %d wrong", none.Status, none.Reason, none.Correct, none.Wrong)
	}
	for _, i := range []int{1, 3} {
		r := results[i]
		if r.Status != StatusOK {
			t.Errorf("%s: %s: %s\n%s", r.Strategy, r.Status, r.Reason, log.String())
			continue
		}
		if r.Wrong != 0 || r.Timeouts != 0 {
			t.Errorf("%s: %d wrong, %d timeouts", r.Strategy, r.Wrong, r.Timeouts)
		}
		if r.Correct <= none.Correct || r.CorrectPerSec <= none.CorrectPerSec {
			t.Errorf("%s: %d correct (%.1f/s), none %d (%.1f/s): the store did not help",
				r.Strategy, r.Correct, r.CorrectPerSec, none.Correct, none.CorrectPerSec)
		}
	}
	if r := results[2]; r.Strategy != "mongodb" || r.Status != StatusSkipped || r.Reason != oneLine(mongodMissing) ||
		!strings.HasPrefix(r.Reason, "mongod not found: install MongoDB or run it yourself") {
		t.Errorf("mongodb: %+v", r)
	}
	if !strings.Contains(log.String(), "bench: mongodb: skipped: mongod not found") {
		t.Errorf("log:\n%s", log.String())
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	t.Logf("log:\n%s", log.String())
}

// withoutProgram is the list of directories path without those holding name.
func withoutProgram(path, name string) string {
	var keep []string
	for _, d := range filepath.SplitList(path) {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			continue
		}
		keep = append(keep, d)
	}
	return strings.Join(keep, string(filepath.ListSeparator))
}

// TestCalcserverFails reports a server that cannot start as a skipped strategy.
func TestCalcserverFails(t *testing.T) {
	o := Options{
		Strategies: []string{"none"},
		Calcserver: filepath.Join(t.TempDir(), "no-such-calcserver"),
		Load:       gameday.Options{Rate: 10, Duration: time.Second},
		WorkTime:   time.Millisecond, WorkMode: "sleep", Cores: 1, QueueSize: 5,
	}
	results, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || results[0].Status != StatusSkipped || !strings.Contains(results[0].Reason, "calcserver did not start") {
		t.Errorf("%+v", results)
	}
}

// TestCancel stops the server and services of an interrupted bench, removes its
// temporary directories, and returns the context's error.
func TestCancel(t *testing.T) {
	bin := calcserverBinary(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var started []*svctest.Proc
	log := &logWatch{on: "offering", do: func() { time.AfterFunc(500*time.Millisecond, cancel) }}
	o := Options{
		Strategies: []string{"redis", "memcached"},
		Calcserver: bin,
		Load:       gameday.Options{Rate: 20, Duration: time.Minute, Keys: 10, Seed: 1, Timeout: time.Second},
		WorkTime:   time.Millisecond, WorkMode: "sleep", Cores: 1, QueueSize: 5,
		Log: log,
		StartService: func(service, dir string) (*svctest.Proc, error) {
			p, err := startService(service, dir)
			if err == nil {
				started = append(started, p)
			}
			return p, err
		},
	}
	begin := time.Now()
	results, err := Run(ctx, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if len(results) != 0 {
		t.Errorf("results of an interrupted strategy: %+v", results)
	}
	if took := time.Since(begin); took > 30*time.Second {
		t.Errorf("took %v", took)
	}
	if len(started) != 1 || started[0].Running() {
		t.Errorf("services still running or not started: %d", len(started))
	}
	m := regexp.MustCompile(`calcserver on http://(\S+);`).FindStringSubmatch(log.String())
	if m == nil {
		t.Fatalf("no server started:\n%s", log.String())
	}
	if c, err := net.DialTimeout("tcp", m[1], time.Second); err == nil {
		c.Close()
		t.Errorf("calcserver still listens on %s", m[1])
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// logWatch is a Log that calls do once when a line contains on.
type logWatch struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	on   string
	do   func()
	done bool
}

func (w *logWatch) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if !w.done && bytes.Contains(b, []byte(w.on)) {
		w.done = true
		w.do()
	}
	return len(b), nil
}

func (w *logWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestFleetStrategy benches none and a fleet of 2 with every key new, so that every
// request is a job: the fleet, two calcservers behind nginx, computes about twice
// what one does, answers only correctly, leaves no temporary files, and the table
// says how many servers the fleet had.
func TestFleetStrategy(t *testing.T) {
	bin := calcserverBinary(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	var log bytes.Buffer
	o := Options{
		Strategies: []string{"none", "fleet"},
		Calcserver: bin,
		// 50 ms jobs on 1 core: 20 answers a second per calcserver, offered 80.
		Load: gameday.Options{Rate: 80, Duration: 3 * time.Second, Unique: 1, Seed: 3,
			Timeout: 2 * time.Second},
		WorkTime: 50 * time.Millisecond, WorkMode: "sleep", Cores: 1, QueueSize: 2,
		Instances: 2,
		Log:       &log,
	}
	results, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 {
		t.Fatalf("%d results: %+v", len(results), results)
	}
	none, fl := results[0], results[1]
	for _, r := range results {
		if r.Status != StatusOK || r.Wrong != 0 || r.Timeouts != 0 || r.Correct == 0 {
			t.Errorf("%s: %s %s: %d correct, %d wrong, %d timeouts", r.Strategy, r.Status, r.Reason, r.Correct, r.Wrong, r.Timeouts)
		}
	}
	t.Logf("none %.1f correct/s, fleet of 2 %.1f correct/s", none.CorrectPerSec, fl.CorrectPerSec)
	if ratio := fl.CorrectPerSec / none.CorrectPerSec; ratio < 1.6 || ratio > 2.4 {
		t.Errorf("fleet of 2: %.1f correct/s, %.2f× none's %.1f; want about 2×", fl.CorrectPerSec, ratio, none.CorrectPerSec)
	}
	if !strings.Contains(log.String(), "bench: fleet: nginx on http://127.0.0.1:") {
		t.Errorf("log:\n%s", log.String())
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	md := Markdown(o, results, nil, 0)
	if !strings.Contains(md, "(`fleet`: 2 of them behind nginx)") {
		t.Errorf("results.md:\n%s", md)
	}
}
