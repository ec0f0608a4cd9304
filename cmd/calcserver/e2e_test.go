package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// The end-to-end tests build the real binary and talk to it over loopback.

var bin svctest.RaceBuild

func binary(t *testing.T) string {
	t.Helper()
	return bin.Path(t, "./cmd/calcserver")
}

func TestMain(m *testing.M) {
	code := m.Run()
	bin.Remove()
	os.Exit(code)
}

type proc struct {
	cmd     *exec.Cmd
	base    string
	logPath string
	stderr  *strings.Builder
	done    chan struct{} // closed when the process has exited
	err     error         // its Wait result, valid once done is closed
}

var portRE = regexp.MustCompile(`msg="calcserver started".* port=(\d+)`)

// start runs calcserver with a server.ini made of ini plus a log file and port 0,
// and waits until its startup line names the port.
func start(t *testing.T, ini string, args ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "calcserver.log")
	cfg := filepath.Join(dir, "server.ini")
	ini = fmt.Sprintf("\"LogLocation\" = %q\nPort = 0\n%s", dir+"/", ini)
	if err := os.WriteFile(cfg, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	return launch(t, logPath, nil, append([]string{"-config", cfg}, args...)...)
}

// launch runs calcserver with args and env (nil: the test's own environment), and waits
// until its startup line in the log at logPath names the port.
func launch(t *testing.T, logPath string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{logPath: logPath, stderr: &strings.Builder{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary(t), args...)
	p.cmd.Env = env
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(logPath)
		if m := portRE.FindSubmatch(b); m != nil {
			p.base = "http://127.0.0.1:" + string(m[1])
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("calcserver exited: %v\n%s", p.err, p.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("calcserver did not log its startup line within 20s; stderr:\n%s", p.stderr)
	return nil
}

// logUntil reads the log until cond holds for it, for at most 5 s (the server writes
// its log at least every 100 ms), and returns what it read last.
func (p *proc) logUntil(cond func(logs string) bool) string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(p.logPath)
		if cond(string(b)) || time.Now().After(deadline) {
			return string(b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// terminate sends SIGTERM and waits for a clean exit.
func (p *proc) terminate(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", p.err, p.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit within 15s of SIGTERM")
	}
}

type answer struct {
	code   int
	cache  string
	body   string
	header http.Header
	took   time.Duration
}

// get sends one request. A transport error fails t with Errorf and returns a zero
// answer, so that get can be called from the goroutines of a burst.
func (p *proc) get(t *testing.T, method, path string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, p.base+path, nil)
	begin := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, path, err)
		return answer{header: http.Header{}}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get("X-Cache"), string(b), resp.Header, time.Since(begin)}
}

var tokenRE = regexp.MustCompile(`^ey[0-9A-Za-z]{230,280}$`)

func TestEndToEndCalc(t *testing.T) {
	p := start(t, "WorkMode = sleep\nWorkTime = 20ms\n")

	for i := range 40 {
		key := fmt.Sprintf("key-%d-%x", i, i*7919)
		a := p.get(t, "GET", "/calc?input="+key)
		if a.code != 200 || !tokenRE.MatchString(a.body) || a.body != string(calc.Body(calc.Token, 1, []byte(key))) {
			t.Fatalf("key %s: %d %q", key, a.code, a.body)
		}
		if again := p.get(t, "GET", "/calc?input="+key); again.cache != "HIT" || again.body != a.body {
			t.Fatalf("key %s repeated: X-Cache %q, same body %v", key, again.cache, again.body == a.body)
		}
	}
	for _, key := range []string{"testing", "3615-7184-2117", "ddfdf", "SUNhbkhhelVuaWNvcm4%2FLTg5OTk%3D"} {
		if a := p.get(t, "GET", "/calc?input="+key); a.code != 200 || !tokenRE.MatchString(a.body) {
			t.Errorf("%s: %d %q", key, a.code, a.body)
		}
	}
	if a := p.get(t, "HEAD", "/calc?input=testing"); a.code != 200 || a.body != "" || a.header.Get("Content-Length") != "244" {
		t.Errorf("HEAD: %d %q length %q", a.code, a.body, a.header.Get("Content-Length"))
	}
	if a := p.get(t, "GET", "/calc"); a.code != 400 {
		t.Errorf("missing key: %d", a.code)
	}
	if a := p.get(t, "GET", "/"); a.code != 200 || a.body != "TODO: Create a nice looking homepage." {
		t.Errorf("GET /: %d %q", a.code, a.body)
	}

	// 40 keys twice, 4 named keys, HEAD, the 400 and GET /.
	access := 0
	logs := p.logUntil(func(logs string) bool {
		access = strings.Count(logs, "msg=access")
		return access == 40*2+4+3
	})
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if access != 40*2+4+3 {
		t.Errorf("%d access lines, want %d", access, 40*2+4+3)
	}
	if !strings.Contains(logs, `path="/calc?input=SUNhbkhhelVuaWNvcm4%2FLTg5OTk%3D"`) &&
		!strings.Contains(logs, `path=/calc?input=SUNhbkhhelVuaWNvcm4%2FLTg5OTk%3D`) {
		t.Errorf("access log lacks the escaped path:\n%s", logs)
	}
	if !strings.Contains(lines[0], "WorkMode=sleep") || !strings.Contains(lines[0], "QueueSize=5") {
		t.Errorf("startup line lacks the effective configuration: %s", lines[0])
	}
}

func TestEndToEndQueue(t *testing.T) {
	p := start(t, "WorkMode = sleep\nWorkTime = 1s\nCores = 2\nQueueSize = 5\n")
	const n = 15
	answers := make(chan answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { answers <- p.get(t, "GET", fmt.Sprintf("/calc?input=burst-%d", i)) })
	}
	// And a burst for one key, which must run one job only once the line has room.
	wg.Wait()
	close(answers)
	ok, full := 0, 0
	for a := range answers {
		switch {
		case a.code == 200:
			ok++
		case a.code == 503:
			full++
			if a.took > 900*time.Millisecond || a.header.Get("Retry-After") != "1" {
				t.Errorf("503 took %v (must be at once), Retry-After %q", a.took, a.header.Get("Retry-After"))
			}
		default:
			t.Errorf("unexpected answer %d %s", a.code, a.body)
		}
	}
	if ok != 2+5 || full != n-7 {
		t.Fatalf("%d answered 200 and %d 503; want 7 and %d", ok, full, n-7)
	}

	same := make(chan answer, 20)
	for range 20 {
		wg.Go(func() { same <- p.get(t, "GET", "/calc?input=one-key") })
	}
	wg.Wait()
	close(same)
	kinds := map[string]int{}
	for a := range same {
		kinds[fmt.Sprint(a.code, a.cache)]++
	}
	if kinds["200MISS"] != 1 || kinds["200SHARED"]+kinds["200HIT"] != 19 {
		t.Fatalf("one key burst: %v; want one MISS and 19 SHARED or HIT", kinds)
	}
	var h struct {
		Requests struct{ Served, Hits, Misses, Rejected int }
	}
	if err := json.Unmarshal([]byte(p.get(t, "GET", "/healthcheck").body), &h); err != nil {
		t.Fatal(err)
	}
	if h.Requests.Rejected != n-7 || h.Requests.Served != 7+20 {
		t.Fatalf("healthcheck counts %+v", h.Requests)
	}
	metrics := p.get(t, "GET", "/metrics").body
	// 7 burst jobs and one for the shared key.
	if !strings.Contains(metrics, "calcserver_job_duration_seconds_count 8\n") {
		t.Fatalf("jobs run: want 8\n%s", grep(metrics, "calcserver_job_duration_seconds_count"))
	}
}

func grep(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestEndToEndSIGTERMFinishesTheJobInFlight(t *testing.T) {
	p := start(t, "WorkMode = sleep\nWorkTime = 1500ms\nShutdownDelay = 200ms\nShutdownTimeout = 10s\n")
	p.get(t, "GET", "/calc?input=warm")
	got := make(chan answer, 1)
	go func() { got <- p.get(t, "GET", "/calc?input=in-flight") }()
	waitFor(t, p, `"busy":1`)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, `"status":"draining"`)
	// After ShutdownDelay: a new miss is refused, a hit is served.
	time.Sleep(300 * time.Millisecond)
	if a := p.get(t, "GET", "/calc?input=brand-new"); a.code != 503 {
		t.Errorf("new miss while draining: %d", a.code)
	}
	if a := p.get(t, "GET", "/calc?input=warm"); a.code != 200 || a.cache != "HIT" {
		t.Errorf("hit while draining: %d %s", a.code, a.cache)
	}
	if a := <-got; a.code != 200 || !tokenRE.MatchString(a.body) {
		t.Fatalf("job in flight answered %d %q", a.code, a.body)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("exit: %v\n%s", p.err, p.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("calcserver did not exit after the drain")
	}
	logs, _ := os.ReadFile(p.logPath)
	if !strings.Contains(string(logs), "shutdown complete") {
		t.Fatalf("log lacks the shutdown line:\n%s", logs)
	}
}

// waitFor polls /healthcheck until its body contains want.
func waitFor(t *testing.T, p *proc, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if a := p.get(t, "GET", "/healthcheck"); strings.Contains(a.body, want) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("healthcheck never showed %s", want)
}

func TestEndToEndSIGHUPReopensTheLog(t *testing.T) {
	p := start(t, "WorkMode = sleep\nWorkTime = 1ms\n")
	if err := os.Rename(p.logPath, p.logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(p.logPath); err == nil && strings.Contains(string(b), "log file reopened") {
			p.get(t, "GET", "/calc?input=after-rotate")
			logs := p.logUntil(func(logs string) bool { return strings.Contains(logs, "key=after-rotate") })
			if !strings.Contains(logs, "key=after-rotate") {
				t.Fatalf("new log lacks the access line:\n%s", logs)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("log was not reopened after SIGHUP")
}

// runCmd runs the binary to completion and returns its exit code and output.
func runCmd(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	return runCmdEnv(t, append(os.Environ(), env...), args...)
}

// runCmdEnv runs calcserver with args and exactly the environment env.
func runCmdEnv(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("calcserver %v did not exit", args)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

func writeINI(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "server.ini")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestEndToEndConfigErrorsAndCheck(t *testing.T) {
	typo := writeINI(t, "# comment\nCores = 1\nProt = 80\n")
	code, _, stderr := runCmd(t, nil, "-config", typo)
	if code != 1 || !strings.Contains(stderr, typo+":3") || !strings.Contains(stderr, `"Prot"`) || !strings.Contains(stderr, `did you mean "Port"`) {
		t.Errorf("typo: exit %d\n%s", code, stderr)
	}
	dup := writeINI(t, "QueueSize = 5\n\"QueueSize\" = \"6\"\n")
	code, _, stderr = runCmd(t, nil, "-config", dup)
	if code != 1 || !strings.Contains(stderr, "QueueSize") || !strings.Contains(stderr, ":2") {
		t.Errorf("duplicate: exit %d\n%s", code, stderr)
	}
	code, _, stderr = runCmd(t, nil, "-config", filepath.Join(t.TempDir(), "missing.ini"))
	if code != 1 || !strings.Contains(stderr, "missing.ini") {
		t.Errorf("missing file: exit %d\n%s", code, stderr)
	}
	code, _, stderr = runCmd(t, nil, "-memcache-server", "nohost")
	if code != 2 || !strings.Contains(stderr, "-memcache-server") {
		t.Errorf("bad -memcache-server: exit %d\n%s", code, stderr)
	}
	code, _, _ = runCmd(t, nil, "-no-such-flag")
	if code != 2 {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}

	// The contests' files turn on every backend they name, and -check lists them
	// in the chain, with their passwords masked.
	contest := map[string]struct{ chain, secrets string }{
		"contest-server.ini": {"memory -> redis -> memcached -> file -> mongodb -> mysql -> pgsql", "PgsqlPass MysqlPass MongoDbPass"},
		"day1-crlf.ini":      {"memory -> pgsql", "PgsqlPass"},
	}
	for name, want := range contest {
		t.Run("contest file "+name, func(t *testing.T) {
			path, _ := filepath.Abs(filepath.Join("..", "..", "testdata", name))
			code, stdout, stderr := runCmd(t, nil, "-check", "-config", path)
			if code != 0 || !strings.Contains(stderr, "test is successful") {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			for _, k := range strings.Fields(want.secrets) {
				if !strings.Contains(stdout, k+` = "****"`) {
					t.Errorf("%s not masked:\n%s", k, stdout)
				}
			}
			for _, secret := range []string{"unicorndb\"\nPgsqlDb", "Unic0rn!", "unicornpass"} {
				if strings.Contains(stdout+stderr, secret) {
					t.Errorf("a password (%q) is shown:\n%s\n%s", secret, stdout, stderr)
				}
			}
			if !strings.Contains(stderr, "cache chain: "+want.chain+"\n") {
				t.Errorf("-check does not list the chain %q:\n%s", want.chain, stderr)
			}
			if strings.Contains(stderr, "warning") {
				t.Errorf("a warning for keys every backend now uses:\n%s", stderr)
			}
		})
	}

	// CALC_CONFIG is used without -config; flags override the file.
	cfg := writeINI(t, "Port = 81\nQueueSize = 9\n")
	code, stdout, _ := runCmd(t, []string{"CALC_CONFIG=" + cfg}, "-check", "-port", "8080", "-memcache-server", "127.0.0.1:11211")
	if code != 0 || !strings.Contains(stdout, `Port = "8080"`) || !strings.Contains(stdout, `QueueSize = "9"`) ||
		!strings.Contains(stdout, `MemcacheServers = "127.0.0.1:11211"`) {
		t.Errorf("CALC_CONFIG with flags: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = runCmd(t, nil, "-version")
	if code != 0 || !strings.HasPrefix(stdout, "calcserver ") {
		t.Errorf("-version: %d %q", code, stdout)
	}
	bad := writeINI(t, "WorkMode = fast\nCores = many\n")
	code, _, stderr = runCmd(t, nil, "-check", "-config", bad)
	if code != 1 || !strings.Contains(stderr, "WorkMode") || !strings.Contains(stderr, "Cores") || !strings.Contains(stderr, "configuration "+bad+" test failed") {
		t.Errorf("bad values: exit %d\n%s", code, stderr)
	}
	noLog := writeINI(t, fmt.Sprintf("LogLocation = %q\n", filepath.Join(t.TempDir(), "missing", "dir", "x.log")))
	code, _, stderr = runCmd(t, nil, "-check", "-config", noLog)
	if code != 1 || !strings.Contains(stderr, "LogLocation") {
		t.Errorf("-check with a LogLocation that cannot be opened: exit %d\n%s", code, stderr)
	}
	notDir := writeINI(t, fmt.Sprintf("LogLocation = %q\n", filepath.Join(noLog, "x.log")))
	code, _, stderr = runCmd(t, nil, "-check", "-config", notDir)
	if code != 1 || !strings.Contains(stderr, "not a directory") {
		t.Errorf("-check with a LogLocation under a file: exit %d\n%s", code, stderr)
	}

	// -check creates nothing: not the log file in a LogLocation directory, not a
	// LogLocation file.
	for _, loc := range []string{"dir", "dir/", "dir/server.log"} {
		dir := t.TempDir()
		logDir := filepath.Join(dir, "dir")
		if err := os.Mkdir(logDir, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "server.ini")
		if err := os.WriteFile(cfg, fmt.Appendf(nil, "LogLocation = %q\n", filepath.Join(dir, loc)), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, _, stderr := runCmd(t, nil, "-check", "-config", cfg); code != 0 {
			t.Errorf("-check with LogLocation %s: exit %d\n%s", loc, code, stderr)
		}
		if entries, _ := os.ReadDir(logDir); len(entries) != 0 {
			t.Errorf("-check with LogLocation %s created %s", loc, entries[0].Name())
		}
	}
}

func TestEndToEndPprofListensApart(t *testing.T) {
	p := start(t, "WorkMode = sleep\nWorkTime = 1ms\nPprofAddr = 127.0.0.1:0\n")
	deadline := time.Now().Add(10 * time.Second)
	re := regexp.MustCompile(`msg="pprof listening" addr=(\S+)`)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(p.logPath)
		if m := re.FindSubmatch(b); m != nil {
			resp, err := http.Get("http://" + string(m[1]) + "/debug/pprof/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("pprof index: %d", resp.StatusCode)
			}
			if a := p.get(t, "GET", "/debug/pprof/"); a.code != 404 {
				t.Fatalf("pprof on the public port: %d", a.code)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no pprof listening line")
}

// -check refuses what the start refuses, before any start, and names every
// problem's file, line and key at once.
func TestEndToEndCheckRunsEveryStartCheck(t *testing.T) {
	cluster := writeINI(t, "RedisAddrs = 127.0.0.1:1,127.0.0.1:2\nRedisDB = 1\n")
	missing := filepath.Join(t.TempDir(), "missing", "calcserver.log")
	unwritable := `LogLocation = "` + missing + `": cannot be written: cannot create ` + missing + ": stat " + filepath.Dir(missing) + ": no such file or directory\n"
	several := writeINI(t, "RedisHost = localhost:6379\nPort = abc\nRedisPort = 6380\nMysqlHost = db\nLogLocation = "+missing+"\nCacheOrder = memory,mysql,redis,file\n")
	log := writeINI(t, "Cores = 2\nLogLocation = "+missing+"\n")
	order := writeINI(t, "CacheOrder = redis\nLogLocation = "+missing+"\n")
	badRedis := writeINI(t, "RedisHost = localhost:99999\nCacheOrder = memory,redis\n")
	tests := map[string]struct {
		path string
		want string // stderr
	}{
		"a cluster with RedisDB 1": {cluster, "calcserver: configuration error:\n" +
			"  " + cluster + `:2: RedisDB = "1": must be 0 when RedisAddrs is set: RedisAddrs makes a Redis cluster, and a cluster has only DB 0` + "\n" +
			"calcserver: configuration " + cluster + " test failed\n"},
		// Line errors, the rules between keys and the application's own rules
		// (CacheOrder, LogLocation) together, by line. CacheOrder lists mysql,
		// whose MysqlHost line carries an error, and redis, whose RedisPort line
		// is bad: neither is called off.
		"every problem of the file": {several, "calcserver: configuration error:\n" +
			"  " + several + `:2: Port = "abc": must be a whole number from 0 to 65535` + "\n" +
			"  " + several + `:3: RedisPort = "6380": conflicts with RedisHost = localhost:6379, which names port 6379: give the port in one of the two keys, or the same port in both` + "\n" +
			"  " + several + `:4: MysqlDb = "": must be set when MysqlHost is set (MysqlHost is set on this line)` + "\n" +
			"  " + several + ":5: " + unwritable +
			"  " + several + `:6: CacheOrder = "memory,mysql,redis,file": lists file, but it is off: set FsPath` + "\n" +
			"calcserver: configuration " + several + " test failed\n"},
		// The start fails on opening the log, in serve, with -check's message.
		"an unwritable LogLocation": {log, "calcserver: configuration error:\n" +
			"  " + log + ":2: " + unwritable +
			"calcserver: configuration " + log + " test failed\n"},
		// The file reads: the start names the log too when something else fails.
		"a CacheOrder and an unwritable LogLocation": {order, "calcserver: configuration error:\n" +
			"  " + order + `:1: CacheOrder = "redis": lists redis, but it is off: set RedisHost or RedisAddrs` + "\n" +
			"  " + order + ":2: " + unwritable +
			"calcserver: configuration " + order + " test failed\n"},
		// RedisHost is bad, not missing: CacheOrder is not blamed for it.
		"a CacheOrder with a bad line's backend": {badRedis, "calcserver: configuration error:\n" +
			"  " + badRedis + `:1: RedisHost = "localhost:99999": is not host:port with a port from 1 to 65535: give the host alone and the port in RedisPort` + "\n" +
			"calcserver: configuration " + badRedis + " test failed\n"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			for _, args := range [][]string{{"-check", "-config", tt.path}, {"-config", tt.path, "-port", "0"}} {
				code, _, stderr := runCmd(t, nil, args...)
				want := tt.want
				if args[0] != "-check" {
					want = strings.TrimSuffix(want, "calcserver: configuration "+tt.path+" test failed\n")
				}
				if code != 1 || stderr != want {
					t.Errorf("%v: exit %d, stderr\n%s\nwant\n%s", args, code, stderr, want)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Dir(missing)); !os.IsNotExist(err) {
		t.Errorf("the log's directory was created: %v", err)
	}

	// The flags apply to the lines that read: -memcache-server turns on the
	// memcached that CacheOrder lists.
	flag := writeINI(t, "Cores = x\nCacheOrder = memcached\n")
	for _, args := range [][]string{{"-check", "-config", flag}, {"-config", flag, "-port", "0"}} {
		code, _, stderr := runCmd(t, nil, append(args, "-memcache-server", "127.0.0.1:11211")...)
		if code != 1 || !strings.Contains(stderr, flag+`:1: Cores = "x"`) || strings.Contains(stderr, "CacheOrder") {
			t.Errorf("%v -memcache-server: exit %d, stderr\n%s", args, code, stderr)
		}
	}

	port := writeINI(t, "RedisPort = 6380\n")
	code, _, stderr := runCmd(t, nil, "-check", "-config", port)
	if w := "calcserver: warning: " + port + ":1: RedisPort is set without RedisHost: it is ignored (set RedisHost, or drop RedisPort)\n"; code != 0 || !strings.Contains(stderr, w) {
		t.Errorf("RedisPort without RedisHost: exit %d, stderr\n%s\nwant %s", code, stderr, w)
	}
}
