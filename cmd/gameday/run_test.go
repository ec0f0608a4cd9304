package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/queue"
	"github.com/unicorn-rentals/unicorn/internal/server"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// startCalcserver serves a real calcserver handler on loopback (sleeping cores,
// 20 ms jobs, a memory cache) and returns its base URL.
func startCalcserver(t *testing.T) string {
	t.Helper()
	mem := cache.NewMemory(10000, 0)
	t.Cleanup(mem.Close)
	s := server.New(server.Options{
		Queue: queue.Options{Cores: 4, QueueSize: 1000, WorkTime: 20 * time.Millisecond, Mode: queue.Sleep},
		Cache: cache.NewChain(cache.Options{}, cache.Tier{Name: "memory", Cache: mem, Local: true}),
		Host:  "cli-test",
	})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

// startLiar answers every /calc with a well-formed token of another key.
func startLiar(t *testing.T) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(calc.Body(calc.Token, 1, []byte("not your key")))
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

// runCLI runs the command line and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, terminal bool, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr svctest.Buffer
	code := run(args, env{ctx: context.Background(), stdout: &stdout, stderr: &stderr, terminal: terminal})
	return code, stdout.String(), stderr.String()
}

func TestRunWritesTheSummaryAndJSON(t *testing.T) {
	t.Parallel()
	url := startCalcserver(t)
	path := filepath.Join(t.TempDir(), "summary.json")
	code, out, errOut := runCLI(t, false, "run", "-target", url, "-rate", "50", "-duration", "2s",
		"-keys", "10", "-seed", "9", "-report-interval", "1s", "-json", path)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"gameday run: 50/s for 2s against " + url, "seed 9",
		"0:01 score ", // a plain status line, not a redrawn one
		"  correct        100  (100.0%)", "  wrong            0", "  dropped          0",
		"score 192.0: +200.0 earned by the answers, -8.0 for $8 of cost (1 instance per started 15 minutes)",
		"latency (every HTTP answer): p50 ", "by status: 200 100", "by target:\n  " + url, "by X-Served-By:\n  cli-test",
		"last score events:\n", "0:00.000     -8.0  cost: 1 instance × $8 for the 15 minutes from 0:00",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\r") {
		t.Errorf("carriage returns written to a non-terminal:\n%q", out)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"requests", "correct", "wrong", "errors", "timeouts", "dropped", "score", "trend", "latency_ms", "by_status", "series"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("-json lacks %q", k)
		}
	}
	if doc["requests"] != 100.0 || doc["correct"] != 100.0 || doc["wrong"] != 0.0 || doc["score"] != 192.0 {
		t.Errorf("requests %v correct %v wrong %v score %v", doc["requests"], doc["correct"], doc["wrong"], doc["score"])
	}
	lat, _ := doc["latency_ms"].(map[string]any)
	for _, k := range []string{"p50", "p90", "p99", "max"} {
		if v, ok := lat[k].(float64); !ok || v <= 0 {
			t.Errorf("latency_ms.%s = %v", k, lat[k])
		}
	}
	if st, _ := doc["by_status"].(map[string]any); st["200"] != 100.0 {
		t.Errorf("by_status %v", doc["by_status"])
	}
	series, _ := doc["series"].([]any)
	if len(series) < 2 {
		t.Fatalf("series %v", doc["series"])
	}
	first, _ := series[0].(map[string]any)
	for _, k := range []string{"second", "requests", "correct", "score", "trend", "rate", "latency_ms", "dropped"} {
		if _, ok := first[k]; !ok {
			t.Errorf("series entry lacks %q: %v", k, first)
		}
	}
}

func TestRunOnATerminalRedrawsOneLine(t *testing.T) {
	t.Parallel()
	url := startLiar(t)
	code, out, errOut := runCLI(t, true, "run", "-target", url, "-rate", "20", "-duration", "1500ms", "-instances", "0")
	if code != exitOK {
		t.Fatalf("exit %d (a run that completed exits 0 whatever the score)\n%s", code, errOut)
	}
	if !strings.Contains(out, "\r[") || !strings.Contains(out, "\x1b[K") || !strings.Contains(out, "score -") {
		t.Errorf("no redrawn status line:\n%q", out)
	}
	if !strings.Contains(out, "100%") || !strings.Contains(out, "wrong           30  (100.0%)") {
		t.Errorf("stdout:\n%s", out)
	}
	if !strings.Contains(out, "answer did not match for key ") {
		t.Errorf("no score event for the wrong answers:\n%s", out)
	}
}

func TestRunFlagErrorsNameTheFlag(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "-target: at least one base URL is required"},
		{[]string{"-target", "ftp://x"}, "-target ftp://x: must start with http:// or https://"},
		{[]string{"-target", "localhost:8080"}, "-target localhost:8080:"},
		{[]string{"-target", "http://x", "-rate", "0"}, "-rate 0: must be > 0"},
		{[]string{"-target", "http://x", "-rate", "-3"}, "-rate -3:"},
		{[]string{"-target", "http://x", "-duration", "0s"}, "-duration 0s: must be > 0"},
		{[]string{"-target", "http://x", "-ramp", "2m"}, "-ramp 2m0s: must be between 0 and -duration"},
		{[]string{"-target", "http://x", "-max-inflight", "0"}, "-max-inflight 0: must be > 0"},
		{[]string{"-target", "http://x", "-keys", "0"}, "-keys 0: must be > 0"},
		{[]string{"-target", "http://x", "-skew", "1"}, "-skew 1: must be > 1"},
		{[]string{"-target", "http://x", "-unique", "1.5"}, "-unique 1.5: must be a fraction 0..1"},
		{[]string{"-target", "http://x", "-format", "xml"}, `-format "xml": must be token or hash`},
		{[]string{"-target", "http://x", "-calc-version", "0"}, "-calc-version 0: must be > 0"},
		{[]string{"-target", "http://x", "-timeout", "0s"}, "-timeout 0: must be > 0"},
		{[]string{"-target", "http://x", "-instances", "-1"}, "-instances -1: must be ≥ 0"},
		{[]string{"-target", "http://x", "-trend-window", "10ms"}, "-trend-window 10ms: must be at least 1s"},
		{[]string{"-target", "http://x", "-report-interval", "-1s"}, "-report-interval -1s: must be ≥ 0"},
		{[]string{"-target", "http://x", "-rate", "ten"}, `invalid value "ten" for flag -rate`},
		{[]string{"-target", "http://x", "-no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{[]string{"-target", "http://x", "extra"}, `unexpected argument "extra"`},
	} {
		code, out, errOut := runCLI(t, false, append([]string{"run"}, c.args...)...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("run %q: exit %d, stderr %q; want %d and %q", c.args, code, errOut, exitUsage, c.want)
		}
		if out != "" {
			t.Errorf("run %q: wrote to stdout: %q", c.args, out)
		}
	}
	if code, out, _ := runCLI(t, false, "run", "-h"); code != exitOK || out != "" {
		t.Errorf("-h: exit %d", code)
	}
}

func TestRunCannotWriteTheJSONFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "s.json")
	code, out, errOut := runCLI(t, false, "run", "-target", "http://127.0.0.1:1", "-rate", "1", "-duration", "1s", "-json", path)
	if code != exitRuntime || !strings.Contains(errOut, "-json: ") {
		t.Errorf("exit %d, stderr %q; want 1 and a -json error", code, errOut)
	}
	if out != "" {
		t.Errorf("the run started anyway: %q", out)
	}
}

func TestUnknownCommand(t *testing.T) {
	t.Parallel()
	if code, _, errOut := runCLI(t, false, "fly"); code != exitUsage || !strings.Contains(errOut, `unknown command "fly"`) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, false); code != exitUsage || !strings.Contains(errOut, "gameday run") {
		t.Errorf("no command: exit %d, stderr %q", code, errOut)
	}
}

func TestRunServesTheBoard(t *testing.T) {
	t.Parallel()
	url := startCalcserver(t)
	var stdout, stderr svctest.Buffer
	got := make(chan string, 1)
	go func() {
		// Wait for the board's address, then read its snapshot while the run goes on.
		re := regexp.MustCompile(`scoreboard on (http://\S+/)`)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if m := re.FindStringSubmatch(stderr.String()); m != nil {
				time.Sleep(1300 * time.Millisecond)
				resp, err := http.Get(m[1] + "snapshot")
				if err != nil {
					got <- err.Error()
					return
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				got <- fmt.Sprintf("%d %s", resp.StatusCode, body)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		got <- "no board address on stderr"
	}()
	code := run([]string{"run", "-target", url, "-rate", "20", "-duration", "2s", "-board", "127.0.0.1:0"},
		env{ctx: context.Background(), stdout: &stdout, stderr: &stderr})
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if snap := <-got; !strings.HasPrefix(snap, "200 ") || !strings.Contains(snap, `"correct":`) {
		t.Errorf("board /snapshot during the run: %s", snap)
	}

	// A busy address fails before the run.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, out, errOut := runCLI(t, false, "run", "-target", url, "-rate", "1", "-duration", "1s", "-board", ln.Addr().String())
	if code != exitRuntime || !strings.Contains(errOut, "-board: ") || out != "" {
		t.Errorf("busy -board address: exit %d, stderr %q, stdout %q", code, errOut, out)
	}
}
