package board

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/unicorn-rentals/unicorn/internal/gameday"
)

// chromiumPath is Debian's chromium (scripts/deps.sh installs it).
const chromiumPath = "/usr/bin/chromium"

// TestBrowserShowsTheBoard loads the board in headless Chromium and reads what it
// renders: the score, its update, the trend, the tiles, the chart and the events. It
// saves a screenshot (and copies it to $GAMEDAY_SCREENSHOT_DIR when that is set).
func TestBrowserShowsTheBoard(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("headless Chromium is needed: %v (install Debian's chromium package: bash scripts/deps.sh)", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := New(Options{Title: "GameDay · Unicorn Rentals", Targets: []string{"http://127.0.0.1:8080", "http://127.0.0.1:8081"}})
	served := make(chan error, 1)
	go func() { served <- b.Serve(ln) }()
	t.Cleanup(func() {
		b.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	url := "http://" + ln.Addr().String() + "/"

	// A run of 100 seconds so far: the score climbs, dips after a wrong answer, a
	// timeout and an error, and climbs again.
	const seconds = 100
	var events []gameday.ScoreEvent
	score := 0.0
	for i := range seconds {
		b.Publish(demoSnapshot(i, &score, &events))
	}
	wantScore := group(score)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1600, 900),
	)
	defer cancelAlloc()
	// chromedp's own log goes to the test's log, until the test ends.
	var ended atomic.Bool
	defer ended.Store(true)
	logf := func(format string, args ...any) {
		if !ended.Load() {
			t.Logf("chromedp: "+format, args...)
		}
	}
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(logf), chromedp.WithErrorf(logf))
	defer cancelBrowser()

	start := time.Now()
	// The first action starts the browser; a failure here is the test's failure.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("Chromium (%s) could not start: %v", chromiumPath, err)
	}
	t.Logf("Chromium started in %v", time.Since(start))
	console := collectConsole(bctx)
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1600, 900), chromedp.Navigate(url)); err != nil {
		t.Fatalf("Chromium could not load the board: %v", err)
	}

	// The rendered score (innerText: what is on the screen) is the latest one.
	waitText(t, bctx, "#score", wantScore)
	waitText(t, bctx, "#status-text", "LIVE") // text-transform: uppercase
	checkText(t, bctx, "#trend-arrow", "▲")
	checkText(t, bctx, "#correct", group(float64(seconds-1)*9))
	checkText(t, bctx, "#p99", "850 ms")
	checkText(t, bctx, "#cost", "$16.00")
	checkText(t, bctx, "#elapsed", "1:39")
	checkText(t, bctx, "#duration", "/ 5:00")
	checkText(t, bctx, "#rate", "9.5 / 10")
	if w := evalFloat(t, bctx, `document.getElementById('progress').getBoundingClientRect().width / document.getElementById('progress-bar').getBoundingClientRect().width`); w < 0.2 || w > 0.5 {
		t.Errorf("the progress bar is %.2f full, want 99/300", w)
	}
	if cls := evalString(t, bctx, `document.getElementById('trend').className`); !strings.Contains(cls, "up") {
		t.Errorf("trend class %q, want up", cls)
	}

	// A new snapshot shows at once, with a falling trend.
	next := demoSnapshot(seconds, &score, &events)
	next.Events = append(next.Events, gameday.ScoreEvent{At: seconds*time.Second + 700*time.Millisecond, Points: -1234,
		Reason: "answer did not match for key dW5pY29ybg (got 5d41402a, expected 7d793037)"})
	next.Score -= 1234
	next.Trend = -300
	b.Publish(next)
	waitText(t, bctx, "#score", group(next.Score))
	waitText(t, bctx, "#trend-arrow", "▼")
	checkText(t, bctx, "#trend-value", "−300")

	// The chart: one point per second (history and stream), drawn across the chart.
	waitTrue(t, bctx, fmt.Sprintf(`(document.getElementById('chart-line').getAttribute('d').match(/[ML]/g) || []).length === %d`, seconds+1))
	width := evalFloat(t, bctx, `document.getElementById('chart-line').getBBox().width / document.getElementById('chart').clientWidth`)
	length := evalFloat(t, bctx, `document.getElementById('chart-line').getTotalLength()`)
	if width < 0.85 || length < 800 {
		t.Errorf("chart line spans %.2f of the chart and is %.0f px long", width, length)
	}
	// ... and the pixels show it: the line's colour in the chart's screenshot.
	shot, err := chromedp.Run(bctx, chromedp.Screenshot(chromedp.ID("chart")))
	if err != nil {
		t.Fatal(err)
	}
	if n := linePixels(t, shot); n < 500 {
		t.Errorf("the chart's screenshot has only %d pixels of the line's colour", n)
	}

	// The score events, newest first, with their reasons.
	newest := next.Events[len(next.Events)-1]
	checkText(t, bctx, "#events li:first-child .reason", newest.Reason)
	checkText(t, bctx, "#events li:first-child .pts", signedInt(newest.Points))
	rows := evalFloat(t, bctx, `document.querySelectorAll('#events li').length`)
	if int(rows) != len(next.Events) {
		t.Errorf("%v event rows, want %d", rows, len(next.Events))
	}
	if got := evalString(t, bctx, `[...document.querySelectorAll('#events .reason')].map(e => e.innerText).join('\n')`); !strings.Contains(got, "answer did not match") {
		t.Errorf("no wrong-answer reason in the events:\n%s", got)
	}

	// Let the score's flash fade (the newest event stays highlighted), then the
	// screenshot.
	time.Sleep(800 * time.Millisecond)
	page, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "board.png")
	if err := os.WriteFile(path, page, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	if dir := os.Getenv("GAMEDAY_SCREENSHOT_DIR"); dir != "" { // relative: to the package's folder
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "board.png"), page, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot copied to %s", filepath.Join(dir, "board.png"))
	}

	// The final snapshot: the page says the run ended and keeps the last numbers;
	// Close then ends the stream, and nothing changes.
	final := next
	final.Second, final.ElapsedS, final.Final = seconds+1, seconds+1, true
	b.Publish(final)
	waitText(t, bctx, "#status-text", "RUN ENDED")
	checkText(t, bctx, "#elapsed", "1:41")
	b.Close()
	time.Sleep(200 * time.Millisecond)
	checkText(t, bctx, "#status-text", "RUN ENDED")
	checkText(t, bctx, "#score", group(next.Score))

	// No script error and no blocked load (a Content-Security-Policy violation is
	// an error entry of the browser log).
	for _, m := range console() {
		if m.IsException() || m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning {
			t.Errorf("browser console: %s", m)
		}
	}
	t.Logf("browser test took %v", time.Since(start))
}

// collectConsole gathers the page's console messages, exceptions and browser log
// entries from now on; the func it returns stops and returns them.
func collectConsole(ctx context.Context) func() []chromedp.ConsoleMessage {
	ctx, cancel := context.WithCancel(ctx)
	var got []chromedp.ConsoleMessage
	done := make(chan struct{})
	messages := chromedp.Console(ctx)
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			got = append(got, m)
		}
	}()
	return func() []chromedp.ConsoleMessage {
		time.Sleep(100 * time.Millisecond) // what is on its way
		cancel()
		<-done
		return got
	}
}

// demoSnapshot is second i of a made-up run: 9 correct answers a second (+10 each),
// and now and then a wrong answer, a timeout or an error, as score events.
func demoSnapshot(i int, score *float64, events *[]gameday.ScoreEvent) gameday.Snapshot {
	at := time.Duration(i)*time.Second + 400*time.Millisecond
	*score += 90
	add := func(points float64, reason string) {
		*score += points
		*events = append(*events, gameday.ScoreEvent{At: at, Points: points, Reason: reason})
	}
	switch {
	case i == 35:
		add(-500, "answer did not match for key SUNhbkhhelVuaWNvcm4 (got 7f3a9c, expected 1c9e42)")
	case i == 62:
		add(-200, "no answer within 8s for key dW5pY29ybi0xMjM0")
	case i == 90:
		add(-100, "503 Service Unavailable for key cmFpbmJvdy0yMg")
	case i%10 == 9:
		// Already counted second by second: the event only reports them.
		*events = append(*events, gameday.ScoreEvent{At: at, Points: 900, Reason: fmt.Sprintf("90 correct answers (%s–%s)", clock(i-9), clock(i))})
	}
	if len(*events) > 12 {
		*events = (*events)[len(*events)-12:]
	}
	wrong := int64(0)
	if i >= 35 {
		wrong = 1
	}
	return gameday.Snapshot{
		Elapsed:    time.Duration(i) * time.Second,
		ElapsedS:   float64(i),
		DurationS:  300,
		Second:     i,
		TargetRate: 10,
		Offered:    int64(i * 10),
		Requests:   int64(i * 10),
		Correct:    int64(i * 9),
		Wrong:      wrong,
		Errors:     int64(min(i/90, 1)),
		Timeouts:   int64(min(i/62, 1)),
		Inflight:   12,
		Score:      *score,
		Trend:      5400,
		Rate:       9.5,
		Latency:    gameday.Latency{P50: 12.5, P90: 40, P99: 850, Max: 8000},
		Cost:       16,
		Events:     slices.Clone(*events),
	}
}

// group formats n as the page does: rounded, with thousands separators and U+2212 for
// a negative number.
func group(n float64) string {
	r := int64(math.Round(n))
	s := strconv.FormatInt(max(r, -r), 10)
	var b strings.Builder
	if r < 0 {
		b.WriteString("\u2212")
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func clock(s int) string { return fmt.Sprintf("%d:%02d", s/60, s%60) }

func signedInt(n float64) string {
	if math.Round(n) > 0 {
		return "+" + group(n)
	}
	return group(n)
}

// innerText is the JavaScript for the rendered text of the element sel selects.
func innerText(sel string) string {
	q, _ := json.Marshal(sel)
	return fmt.Sprintf(`(() => { const e = document.querySelector(%s); return e ? e.innerText : '(no element)'; })()`, q)
}

// waitText waits until the element's rendered text is want.
func waitText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	var got string
	deadline := time.Now().Add(15 * time.Second)
	for {
		var err error
		got, err = chromedp.Run(ctx, chromedp.Evaluate[string](innerText(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s shows %q, want %q", sel, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func checkText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	if got := evalString(t, ctx, innerText(sel)); got != want {
		t.Errorf("%s shows %q, want %q", sel, got, want)
	}
}

// waitTrue waits until the JavaScript expression is true.
func waitTrue(t *testing.T, ctx context.Context, expr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still false: %s", expr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func evalString(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

func evalFloat(t *testing.T, ctx context.Context, expr string) float64 {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[float64](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// linePixels counts the pixels of the chart line's colour (#38bdf8) in a PNG.
func linePixels(t *testing.T, shot []byte) int {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("the chart's screenshot: %v", err)
	}
	near := func(a uint32, b int) bool { d := int(a>>8) - b; return d > -40 && d < 40 }
	n := 0
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if near(cr, 0x38) && near(cg, 0xbd) && near(cb, 0xf8) {
				n++
			}
		}
	}
	return n
}
