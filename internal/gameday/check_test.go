package gameday

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// checkAll runs Check and returns its results in sending order.
func checkAll(t *testing.T, o CheckOptions) (int, []CheckResult) {
	t.Helper()
	var mu sync.Mutex
	var got []CheckResult
	passed, err := Check(context.Background(), o, func(r CheckResult) {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != o.Count {
		t.Fatalf("%d results, want %d", len(got), o.Count)
	}
	ordered := make([]CheckResult, len(got))
	for _, r := range got {
		ordered[r.N-1] = r
	}
	return passed, ordered
}

var checkerKeyRE = regexp.MustCompile(`^ICanHazUnicorn4-ws-ec2\?-([1-9][0-9]{0,3}|10000)$`)

func TestCheckAgainstARealCalcserver(t *testing.T) {
	t.Parallel()
	url := calcserver(t, "c")
	start := time.Now()
	passed, rs := checkAll(t, CheckOptions{Target: url, Count: 4, Interval: 100 * time.Millisecond})
	if passed != 4 {
		t.Errorf("%d CORRECT of 4: %v", passed, rs)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("4 sends one every 100ms took %v", took)
	}
	for _, r := range rs {
		plain, err := base64.StdEncoding.DecodeString(r.Key.Text)
		if err != nil || !checkerKeyRE.Match(plain) {
			t.Errorf("key %q (%q) is not the checker's", r.Key.Text, plain)
		}
		line := r.String()
		f := strings.Fields(line) // #N CORRECT in 0.02s /calc?input=… 200 "ey…"…
		if r.Verdict != VerdictCorrect || len(f) < 7 || f[1] != "CORRECT" || f[4] != "/calc?input="+r.Key.Query || f[5] != "200" || !strings.HasPrefix(f[6], `"ey`) {
			t.Errorf("line %q", line)
		}
	}
}

func TestCheckAgainstALyingServer(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Query().Get("input"), "==") {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Write(calc.Body(calc.Token, 1, []byte("another key")))
	}))
	t.Cleanup(ts.Close)
	passed, rs := checkAll(t, CheckOptions{Target: ts.URL, Count: 6, Interval: 10 * time.Millisecond, Seed: 1})
	if passed != 0 {
		t.Errorf("%d CORRECT from a liar", passed)
	}
	statuses := map[int]int{}
	for _, r := range rs {
		line := r.String()
		statuses[r.Status]++
		switch {
		case r.Verdict != VerdictIncorrect:
			t.Errorf("verdict %s: %s", r.Verdict, line)
		case r.Status == 200 && !strings.Contains(line, "an answer for another key"):
			t.Errorf("line %q does not say why", line)
		case r.Status == 503 && !strings.Contains(line, ` 503 "busy\n"`):
			t.Errorf("line %q does not show the status and body", line)
		}
	}
	if statuses[200] == 0 || statuses[503] == 0 {
		t.Errorf("statuses %v: seed 1 should draw keys of both kinds", statuses)
	}
}

func TestCheckTimesOut(t *testing.T) {
	t.Parallel()
	b := newBlackHole(t)
	passed, rs := checkAll(t, CheckOptions{Target: "http://" + b.ln.Addr().String(), Count: 2, Interval: time.Millisecond, Timeout: 200 * time.Millisecond})
	if passed != 0 || rs[0].Verdict != VerdictTimeout || rs[1].Verdict != VerdictTimeout {
		t.Errorf("results %v", rs)
	}
	if !strings.Contains(rs[0].String(), "TIMEOUT in  0.2") {
		t.Errorf("line %q", rs[0].String())
	}
}
