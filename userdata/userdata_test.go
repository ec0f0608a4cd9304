//go:build linux

// Package userdata_test drives scripts/release.sh and userdata/user-data.sh end to end:
// the release goes into an in-process S3 fake through Debian's AWS CLI, and the user data
// downloads, verifies and installs it into a temporary CALC_ROOT and runs it. Commands the
// scripts must not reach on a test machine (shutdown, poweroff, systemctl, useradd, ...)
// are fakes first on PATH that record their calls.
package userdata_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

const (
	bucket = "calc-releases"
	// awsCLI is Debian's awscli package (scripts/deps.sh installs it): a v2 build that
	// ignores AWS_ENDPOINT_URL*, so the scripts must pass --endpoint-url themselves.
	awsCLI = "/usr/bin/aws"
	// builtVersion is stamped into the binary TestMain builds with release.sh.
	builtVersion = "v0.0.0-userdata-test"
	// testingToken is the README's token body for the key "testing" at CalcVersion 1.
	testingToken = "eyJ2ZXJzaW9uIjoxLCJrZXkiOiJjZjgwY2Q4YWVkNDgyZDVkMTUyN2Q3ZGM3MmZjZWZmODRlNjMyNjU5Mjg0ODQ0N2QyZGMwYjBlODdkZmM5YTkwIiwidW5pY29ybiI6IjY3MGVlN2I0OWZjNWFkNDY2YWI3YmI1NDUwMTE2NWQ5ODQ4OTJhYTcyNTFjMmNlZjIzNDNhNTU5ZTNjODRlMTAifSAgICAgICAgICAgICAgICAgICAg"
)

var (
	repo     string // the module root
	script   string // userdata/user-data.sh
	builtDir string // calcserver and calcserver.sha256 from release.sh without a bucket
	builtLog string // what that release.sh run printed
)

// outside lists what a run with a temporary CALC_ROOT must never create or change.
var outside = []string{
	"/etc/logrotate.d/calcserver",
	"/etc/systemd/system/calcserver.service",
	"/etc/systemd/system/multi-user.target.wants/calcserver.service",
	"/opt/calcserver",
	"/etc/calcserver",
	"/var/log/calcserver",
	"/run/calcserver.pid",
	"/run/calcserver-watch.pid",
	"/etc/passwd",
	"/etc/group",
}

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

// testMain builds the release once for the package (release.sh without a bucket) and
// checks, around every test, that nothing outside the tests' CALC_ROOTs and nothing in
// the repository's working tree changed.
func testMain(m *testing.M) int {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" {
		fmt.Fprintf(os.Stderr, "go env GOMOD: %v\n", err)
		return 1
	}
	repo = filepath.Dir(strings.TrimSpace(string(gomod)))
	script = filepath.Join(repo, "userdata", "user-data.sh")
	before, err := snapshot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	builtDir, err = os.MkdirTemp("", "userdata-release-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(builtDir)
	cmd := exec.Command("bash", filepath.Join(repo, "scripts", "release.sh"))
	cmd.Dir = builtDir
	cmd.Env = append(cleanEnv(), "OUT="+builtDir, "VERSION="+builtVersion)
	out, err := cmd.CombinedOutput()
	builtLog = string(out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "scripts/release.sh without a bucket: %v\n%s", err, out)
		return 1
	}

	code := m.Run()

	after, err := snapshot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if diff := before.diff(after); diff != "" {
		fmt.Fprintf(os.Stderr, "FAIL: the userdata tests changed things they must not touch "+
			"(on a working tree that others edit meanwhile, their new files show here too):\n%s", diff)
		return 1
	}
	return code
}

// state is what snapshot saw: which outside paths exist (with the content of files) and
// the lines of git status.
type state struct {
	outside map[string]string
	git     []string
}

func snapshot() (state, error) {
	s := state{outside: map[string]string{}}
	for _, p := range outside {
		st, err := os.Stat(p)
		switch {
		case err != nil:
			s.outside[p] = "absent"
		case st.IsDir():
			s.outside[p] = "directory"
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return s, err
			}
			s.outside[p] = fmt.Sprintf("file %x", sha256.Sum256(b))
		}
	}
	out, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=all", "--ignored").Output()
	if err != nil {
		return s, fmt.Errorf("git status: %v", err)
	}
	s.git = strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	return s, nil
}

// diff names outside paths that changed and git status lines that appeared. (Lines that
// went away are somebody else's edits being committed or reverted, not files we made.)
func (s state) diff(after state) string {
	var b strings.Builder
	for _, p := range outside {
		if s.outside[p] != after.outside[p] {
			fmt.Fprintf(&b, "  %s: %s before, %s after\n", p, s.outside[p], after.outside[p])
		}
	}
	for _, l := range after.git {
		if !slices.Contains(s.git, l) {
			fmt.Fprintf(&b, "  git status: new %q in the working tree\n", l)
		}
	}
	return b.String()
}

// cleanEnv is the environment without anything that would point the scripts elsewhere.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "AWS_") || strings.HasPrefix(name, "CALC_") ||
			slices.Contains([]string{"BUCKET", "PREFIX", "CONFIG", "OUT", "VERSION", "AWS", "GOOS", "GOARCH"}, name) {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// without drops the variables names from env.
func without(env []string, names ...string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return slices.Contains(names, name)
	})
}

// machine is one CALC_ROOT with its fake commands.
type machine struct {
	root    string // CALC_ROOT
	fakebin string // first on PATH: shutdown, poweroff, halt, reboot, systemctl, journalctl, useradd
	calls   string // the file the fakes append "name args" lines to
}

// fakes are the commands a test run must not reach; useradd also fails.
var fakes = []string{"shutdown", "poweroff", "halt", "reboot", "systemctl", "journalctl", "useradd"}

func newMachine(t *testing.T) *machine {
	t.Helper()
	m := &machine{root: t.TempDir(), fakebin: t.TempDir()}
	m.calls = filepath.Join(m.fakebin, "calls")
	for _, name := range fakes {
		body := fmt.Sprintf("#!/bin/sh\necho \"%s $*\" >>'%s'\n", name, m.calls)
		if name == "useradd" {
			body += "exit 1\n"
		}
		if err := os.WriteFile(filepath.Join(m.fakebin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Registered after the TempDirs, so it runs before they are removed.
	t.Cleanup(func() { m.stopAll(t) })
	return m
}

func (m *machine) path(rel string) string { return filepath.Join(m.root, rel) }
func (m *machine) bin() string            { return m.path("opt/calcserver/calcserver") }

// env is the environment of a user-data run against fake with CALC_INIT=none; extra
// entries override earlier ones.
func (m *machine) env(fake *svctest.S3Fake, prefix string, extra ...string) []string {
	env := append(cleanEnv(), fake.Env()...)
	env = append(env,
		"PATH="+m.fakebin+":"+os.Getenv("PATH"),
		"CALC_BUCKET="+bucket,
		"CALC_PREFIX="+prefix,
		"CALC_ROOT="+m.root,
		"CALC_AWS="+awsCLI,
		"CALC_INIT=none",
		"CALC_HEALTH_TIMEOUT=30",
		"CALC_SYSTEMCTL="+filepath.Join(m.fakebin, "systemctl"),
	)
	return append(env, extra...)
}

// recorded returns the calls of the fake commands.
func (m *machine) recorded(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(m.calls)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// servers returns the processes running the binary installed in m (or the one a new
// install replaced).
func (m *machine) servers(t *testing.T) []int {
	t.Helper()
	bin := m.bin()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && (exe == bin || exe == bin+" (deleted)") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pidFile returns the pid in CALC_ROOT/run/name, or 0.
func (m *machine) pidFile(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile(m.path("run/" + name))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("run/%s: %v", name, err)
	}
	return pid
}

// stopAll kills the shutdown watcher (checked by its command line) and every process of
// the installed binary, and fails t if one survives.
func (m *machine) stopAll(t *testing.T) {
	t.Helper()
	if pid := m.pidFile(t, "calcserver-watch.pid"); pid > 0 {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(b, []byte("\x00calcserver-watch\x00")) {
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := m.servers(t)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("calcserver processes %v survived SIGKILL", pids)
			return
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// result is one run of user-data.sh.
type result struct {
	out  string
	err  error
	took time.Duration
}

func runUserData(t *testing.T, env []string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	r := result{out: string(out), err: err, took: time.Since(start)}
	t.Logf("user-data.sh took %v (exit: %v):\n%s", r.took.Round(time.Millisecond), err, out)
	return r
}

// mustSucceed fails t unless r exited 0.
func (r result) mustSucceed(t *testing.T) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("user-data.sh failed: %v\n%s", r.err, r.out)
	}
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, data string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// sha256sum is what sha256sum writes for data named calcserver.
func sha256sum(data []byte) []byte {
	sum := sha256.Sum256(data)
	return []byte(hex.EncodeToString(sum[:]) + "  calcserver\n")
}

// putRelease stores the binary TestMain built, its checksum and config under prefix.
func putRelease(t *testing.T, fake *svctest.S3Fake, prefix, config string) {
	t.Helper()
	bin, err := os.ReadFile(filepath.Join(builtDir, "calcserver"))
	if err != nil {
		t.Fatal(err)
	}
	fake.Put(t, bucket, prefix+"/calcserver", bin)
	fake.Put(t, bucket, prefix+"/calcserver.sha256", sha256sum(bin))
	fake.Put(t, bucket, prefix+"/server.ini", []byte(config))
}

var client = &http.Client{Timeout: 10 * time.Second}

// get returns the status and body of GET url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// mustServe checks that the server on port is healthy, runs version and answers /calc.
func mustServe(t *testing.T, port int, version string) {
	t.Helper()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	code, body := get(t, base+"/healthcheck")
	var health struct{ Status, Version string }
	if err := json.Unmarshal([]byte(body), &health); err != nil || code != 200 || health.Status != "ok" || health.Version != version {
		t.Fatalf("/healthcheck: %d %s (%v); want 200, status ok, version %s", code, body, err, version)
	}
	code, body = get(t, base+"/calc?input=testing")
	if code != 200 || len(body) != 244 || !strings.HasPrefix(body, "ey") || body != testingToken {
		t.Fatalf("/calc?input=testing: %d %q (%d bytes); want 200 and the README's 244-byte token", code, body, len(body))
	}
}

// versionOf runs bin -version.
func versionOf(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "-version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -version: %v\n%s", bin, err, out)
	}
	return strings.TrimSpace(string(out))
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	return !strings.HasPrefix(s[strings.LastIndexByte(s, ')')+1:], " Z")
}

// imds is a fake instance metadata service (IMDSv2) on loopback that records requests.
type imds struct {
	URL string
	mu  sync.Mutex
	log []string
}

func newIMDS(t *testing.T, region string) *imds {
	t.Helper()
	f := &imds{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.log = append(f.log, fmt.Sprintf("%s %s ttl=%s token=%s", r.Method, r.URL.Path,
			r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"), r.Header.Get("X-aws-ec2-metadata-token")))
		f.mu.Unlock()
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" && r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") != "":
			io.WriteString(w, "fake-token")
		case r.Method == http.MethodGet && r.URL.Path == "/latest/meta-data/placement/region" && r.Header.Get("X-aws-ec2-metadata-token") == "fake-token":
			io.WriteString(w, region)
		default:
			http.Error(w, "unauthorized", http.StatusUnauthorized)
		}
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *imds) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

func TestReleaseWithoutABucketOnlyBuildsAndChecks(t *testing.T) {
	t.Parallel()
	for _, want := range []string{"BUCKET is not set", "nothing uploaded", "passes calcserver -check"} {
		if !strings.Contains(builtLog, want) {
			t.Errorf("release.sh output lacks %q:\n%s", want, builtLog)
		}
	}
	bin, err := os.ReadFile(filepath.Join(builtDir, "calcserver"))
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(builtDir, "calcserver.sha256")); got != string(sha256sum(bin)) {
		t.Errorf("calcserver.sha256 = %q, want %q", got, sha256sum(bin))
	}
	if got := versionOf(t, filepath.Join(builtDir, "calcserver")); got != "calcserver "+builtVersion {
		t.Errorf("-version = %q, want calcserver %s", got, builtVersion)
	}
	if _, err := os.Stat(filepath.Join(builtDir, "server.ini")); err == nil {
		t.Error("release.sh without a bucket wrote server.ini into OUT")
	}
}

func TestReleaseRefusesAConfigurationThatFailsTheCheck(t *testing.T) {
	t.Parallel()
	fake := svctest.S3(t)
	fake.CreateBucket(t, bucket)
	config := writeFile(t, filepath.Join(t.TempDir(), "server.ini"), "\"LogLocation\" = \"/var/log/calcserver/\"\nProt = 80\n")
	cmd := exec.Command("bash", filepath.Join(repo, "scripts", "release.sh"))
	cmd.Dir = t.TempDir()
	cmd.Env = append(cleanEnv(), fake.Env()...)
	cmd.Env = append(cmd.Env, "BUCKET="+bucket, "PREFIX=broken", "CONFIG="+config, "AWS="+awsCLI, "OUT="+t.TempDir(), "VERSION=v0.0.0-broken")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("release.sh uploaded a broken configuration:\n%s", out)
	}
	for _, want := range []string{config + ":2: unknown key \"Prot\"", "nothing uploaded"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("release.sh output lacks %q:\n%s", want, out)
		}
	}
	for _, key := range []string{"broken/calcserver", "broken/calcserver.sha256", "broken/server.ini"} {
		if _, ok := fake.Get(t, bucket, key); ok {
			t.Errorf("s3://%s/%s was uploaded", bucket, key)
		}
	}
}

func TestReleaseThenUserDataInstallsRunsAndUpgradesOneServer(t *testing.T) {
	t.Parallel()
	fake := svctest.S3(t)
	fake.CreateBucket(t, bucket)
	metadata := newIMDS(t, "us-east-1")
	m := newMachine(t)
	port := freePort(t)
	const prefix, version = "unicorn/test", "v1.2.3-e2e"
	config := fmt.Sprintf(`; the release under test
"LogLocation" = "./"
"FsPath" = "%s"
Port = %d
WorkMode = sleep
WorkTime = 100ms
ShutdownTimeout = 2s
`, m.path("srv/efs"), port)

	// The release, through the real script and the AWS CLI.
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(repo, "scripts", "release.sh"))
	cmd.Dir = t.TempDir()
	cmd.Env = append(cleanEnv(), fake.Env()...)
	cmd.Env = append(cmd.Env, "BUCKET=s3://"+bucket, "PREFIX=/"+prefix+"/", "AWS="+awsCLI, "OUT="+out, "VERSION="+version,
		"CONFIG="+writeFile(t, filepath.Join(t.TempDir(), "server.ini"), config))
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("release.sh: %v\n%s", err, b)
	} else {
		t.Logf("release.sh took %v:\n%s", time.Since(start).Round(time.Millisecond), b)
	}
	bin, ok := fake.Get(t, bucket, prefix+"/calcserver")
	if !ok || !bytes.Equal(bin, []byte(readFile(t, filepath.Join(out, "calcserver")))) {
		t.Fatalf("s3://%s/%s/calcserver is missing or not the built binary", bucket, prefix)
	}
	sum, _ := fake.Get(t, bucket, prefix+"/calcserver.sha256")
	if !regexp.MustCompile(`^[0-9a-f]{64}  calcserver\n$`).Match(sum) || !bytes.Equal(sum, sha256sum(bin)) {
		t.Fatalf("s3://%s/%s/calcserver.sha256 = %q, want %q (sha256sum format)", bucket, prefix, sum, sha256sum(bin))
	}
	if ini, _ := fake.Get(t, bucket, prefix+"/server.ini"); string(ini) != config {
		t.Fatalf("s3://%s/%s/server.ini = %q, want the CONFIG", bucket, prefix, ini)
	}

	// First run: no init system; AWS_REGION is set, so the metadata service is not asked.
	env := m.env(fake, prefix, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+metadata.URL)
	r := runUserData(t, env)
	r.mustSucceed(t)
	t.Logf("one user-data run against the S3 fake: %v", r.took.Round(time.Millisecond))
	mustServe(t, port, version)
	if got := versionOf(t, m.bin()); got != "calcserver "+version {
		t.Errorf("installed -version = %q, want calcserver %s", got, version)
	}
	if got := metadata.requests(); len(got) != 0 {
		t.Errorf("with AWS_REGION set the script asked the metadata service: %v", got)
	}
	if got := readFile(t, m.path("etc/calcserver/server.ini")); got != config {
		t.Errorf("installed server.ini = %q, want the released one", got)
	}
	first := m.pidFile(t, "calcserver.pid")
	if pids := m.servers(t); len(pids) != 1 || pids[0] != first {
		t.Fatalf("servers %v, pid file %d: want exactly the one of the pid file", pids, first)
	}
	logFile := m.path("var/log/calcserver/calcserver.log")
	// The server writes its access log in batches, at least every 100 ms.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(readFile(t, logFile), "key=testing status=200"); {
		if time.Now().After(deadline) {
			t.Errorf("%s has no access line for /calc?input=testing:\n%s", logFile, readFile(t, logFile))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(m.path("etc/systemd/system/calcserver.service")); err == nil {
		t.Error("CALC_INIT=none wrote a systemd unit")
	}

	// logrotate: rename the log, run the snippet's postrotate, and the server writes a new file.
	rotate := readFile(t, m.path("etc/logrotate.d/calcserver"))
	for _, want := range []string{`"` + logFile + `" {`, "create 0640", m.path("run/calcserver.pid"), "kill -HUP", `"` + m.path("var/log/calcserver/console.log") + `" {`, "copytruncate"} {
		if !strings.Contains(rotate, want) {
			t.Errorf("logrotate snippet lacks %q:\n%s", want, rotate)
		}
	}
	postrotate := regexp.MustCompile(`(?s)postrotate\n(.*?)\n\s*endscript`).FindStringSubmatch(rotate)
	if postrotate == nil {
		t.Fatalf("no postrotate script in:\n%s", rotate)
	}
	if err := os.Rename(logFile, logFile+".1"); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("sh", "-c", postrotate[1]).CombinedOutput(); err != nil {
		t.Fatalf("postrotate: %v\n%s", err, b)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		get(t, fmt.Sprintf("http://127.0.0.1:%d/calc?input=rotated", port))
		if b, err := os.ReadFile(logFile); err == nil && strings.Contains(string(b), "key=rotated") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("after the postrotate script the server did not log to a new file")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Second run: an upgrade to the binary TestMain built. CALC_INIT=auto on a machine
	// without systemd, and no AWS_REGION: the region comes from the metadata service.
	putRelease(t, fake, prefix, config)
	env = without(m.env(fake, prefix,
		"CALC_INIT=auto",
		"CALC_SYSTEMD_DIR="+m.path("no-systemd-here"),
		"AWS_EC2_METADATA_SERVICE_ENDPOINT="+metadata.URL,
	), "AWS_REGION", "AWS_EC2_METADATA_DISABLED")
	r = runUserData(t, env)
	r.mustSucceed(t)
	mustServe(t, port, builtVersion)
	second := m.pidFile(t, "calcserver.pid")
	if pids := m.servers(t); len(pids) != 1 || pids[0] != second || second == first {
		t.Fatalf("after the second run: servers %v, pid file %d, first pid %d: want exactly one, new server", pids, second, first)
	}
	if alive(first) {
		t.Errorf("the first server (pid %d) still runs", first)
	}
	wantIMDS := []string{"PUT /latest/api/token ttl=60 token=", "GET /latest/meta-data/placement/region ttl= token=fake-token"}
	if got := metadata.requests(); !slices.Equal(got, wantIMDS) {
		t.Errorf("metadata requests %q, want %q", got, wantIMDS)
	}
	if !strings.Contains(r.out, "region us-east-1 (instance metadata)") {
		t.Errorf("the output does not name the region from the metadata service")
	}

	// Third run: a release whose checksum does not match leaves the running install alone.
	installed := readFile(t, m.bin())
	fake.Put(t, bucket, prefix+"/calcserver.sha256", sha256sum([]byte("something else")))
	r = runUserData(t, env)
	if r.err == nil {
		t.Fatal("user-data.sh installed a release whose checksum does not match")
	}
	if pids := m.servers(t); len(pids) != 1 || pids[0] != second || m.pidFile(t, "calcserver.pid") != second {
		t.Fatalf("after the refused run: servers %v, want just %d", pids, second)
	}
	if readFile(t, m.bin()) != installed {
		t.Error("the refused run changed the installed binary")
	}
	mustServe(t, port, builtVersion)

	// Without CALC_SHUTDOWN_ON_EXIT the death of the server powers nothing off.
	if err := syscall.Kill(second, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // the watcher, were there one, polls every second
	if calls := m.recorded(t); calls != "" {
		t.Errorf("the script ran fake commands: %s", calls)
	}
	if m.pidFile(t, "calcserver-watch.pid") != 0 {
		t.Error("a shutdown watcher was started without CALC_SHUTDOWN_ON_EXIT")
	}
}

func TestUserDataWithShutdownOnExitShutsTheMachineDownWhenTheServerDies(t *testing.T) {
	t.Parallel()
	fake := svctest.S3(t)
	fake.CreateBucket(t, bucket)
	m := newMachine(t)
	port := freePort(t)
	putRelease(t, fake, "asg", fmt.Sprintf("LogLocation = %s\nPort = %d\nWorkMode = sleep\nWorkTime = 100ms\n", m.path("logs/calc.log"), port))
	runUserData(t, m.env(fake, "asg", "CALC_SHUTDOWN_ON_EXIT=1")).mustSucceed(t)
	mustServe(t, port, builtVersion)
	if !strings.Contains(readFile(t, m.path("logs/calc.log")), "msg=access") {
		t.Error("the absolute LogLocation file has no access line")
	}
	pid := m.pidFile(t, "calcserver.pid")
	if m.pidFile(t, "calcserver-watch.pid") == 0 {
		t.Fatal("no watcher pid file")
	}
	if calls := m.recorded(t); calls != "" {
		t.Fatalf("fake commands ran while the server runs: %s", calls)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for m.recorded(t) == "" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if calls := m.recorded(t); calls != "shutdown -h now\n" {
		t.Errorf("after the server died the fakes recorded %q, want \"shutdown -h now\\n\"", calls)
	}
}

func TestUserDataReportsAServerThatDiesAtStart(t *testing.T) {
	t.Parallel()
	fake := svctest.S3(t)
	fake.CreateBucket(t, bucket)
	m := newMachine(t)
	// Someone else holds the port, so the server exits at once.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	putRelease(t, fake, "dies", fmt.Sprintf("Port = %d\n", taken.Addr().(*net.TCPAddr).Port))
	r := runUserData(t, m.env(fake, "dies"))
	if r.err == nil {
		t.Fatal("user-data.sh exited 0 although the server died")
	}
	for _, want := range []string{"exited before /healthcheck answered", "address already in use"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	if pids := m.servers(t); len(pids) != 0 {
		t.Errorf("servers %v run", pids)
	}
	if calls := m.recorded(t); calls != "" {
		t.Errorf("the script ran fake commands: %s", calls)
	}
}

func TestUserDataRefusesABadRelease(t *testing.T) {
	t.Parallel()
	good := "LogLocation = ./\nPort = 1\n"
	bin := readFile(t, filepath.Join(builtDir, "calcserver"))
	for _, tc := range []struct {
		name    string
		objects map[string]string // key under the prefix "p" -> content
		env     []string
		want    []string // in the output
	}{
		{
			name:    "a checksum that does not match",
			objects: map[string]string{"calcserver": bin, "calcserver.sha256": string(sha256sum([]byte("other"))), "server.ini": good},
			want:    []string{"checksum mismatch", "s3://" + bucket + "/p/calcserver has SHA-256", "nothing installed"},
		},
		{
			name:    "a missing server.ini",
			objects: map[string]string{"calcserver": bin, "calcserver.sha256": string(sha256sum([]byte(bin)))},
			want:    []string{"cannot download s3://" + bucket + "/p/server.ini", "nothing installed"},
		},
		{
			name:    "a configuration calcserver -check refuses",
			objects: map[string]string{"calcserver": bin, "calcserver.sha256": string(sha256sum([]byte(bin))), "server.ini": "Prot = 80\n"},
			want:    []string{"s3://" + bucket + "/p/server.ini is not valid", `s3://` + bucket + `/p/server.ini:1: unknown key "Prot"`},
		},
		{
			name: "no bucket",
			env:  []string{"CALC_BUCKET="},
			want: []string{"CALC_BUCKET is not set"},
		},
		{
			name: "an unknown CALC_INIT",
			env:  []string{"CALC_INIT=upstart"},
			want: []string{"CALC_INIT must be auto, systemd or none"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := svctest.S3(t)
			fake.CreateBucket(t, bucket)
			for key, data := range tc.objects {
				fake.Put(t, bucket, "p/"+key, []byte(data))
			}
			m := newMachine(t)
			r := runUserData(t, m.env(fake, "p", tc.env...))
			if r.err == nil {
				t.Fatal("user-data.sh exited 0")
			}
			for _, want := range tc.want {
				if !strings.Contains(r.out, want) {
					t.Errorf("the output lacks %q", want)
				}
			}
			// Nothing runnable, nothing running, nothing to start.
			filepath.WalkDir(m.root, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					t.Error(err)
					return nil
				}
				if info, err := d.Info(); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
					t.Errorf("%s is executable after a refused run", path)
				}
				return nil
			})
			if pids := m.servers(t); len(pids) != 0 {
				t.Errorf("servers %v run after a refused run", pids)
			}
			for _, p := range []string{"opt/calcserver/calcserver", "etc/calcserver/server.ini", "run/calcserver.pid", "etc/logrotate.d/calcserver"} {
				if _, err := os.Stat(m.path(p)); err == nil {
					t.Errorf("a refused run left %s", p)
				}
			}
			if calls := m.recorded(t); calls != "" {
				t.Errorf("the script ran fake commands: %s", calls)
			}
		})
	}
}

func TestUserDataWritesAHardenedSystemdUnitAndLogrotateSnippet(t *testing.T) {
	t.Parallel()
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	nogroup, err := user.LookupGroupId(nobody.Gid)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		config      string // %[1]s is CALC_ROOT
		env         []string
		stopAtLeast float64 // ShutdownDelay + ShutdownTimeout in seconds
		logDir      string  // relative to CALC_ROOT
		logFile     string
		fsPath      string
		execStart   string // after the binary
		restart     bool
	}{
		{
			name: "auto detection finds systemd and the unit restarts always",
			config: `"LogLocation" = "%[1]s/srv/log/calc.log"
FsPath = %[1]s/srv/efs ; the EFS mount
"ShutdownDelay" = "1m30s"
ShutdownTimeout = 500ms
WorkMode = sleep
`,
			env:         []string{"CALC_INIT=auto"},
			stopAtLeast: 90.5,
			logDir:      "srv/log",
			logFile:     "srv/log/calc.log",
			fsPath:      "srv/efs",
			execStart:   " -config %[1]s/etc/calcserver/server.ini",
			restart:     true,
		},
		{
			name: "CALC_SHUTDOWN_ON_EXIT=1 powers off instead of restarting",
			config: "\ufeff`LogLocation` = 'logs/'\r\n" +
				"; FsPath = /elsewhere\r\n" +
				"\"fspath\" = \"%[1]s/srv/cache\" ; keys are not case-sensitive\r\n" +
				"shutdowndelay = 1.5s # a comment\r\n",
			env:         []string{"CALC_INIT=systemd", "CALC_SHUTDOWN_ON_EXIT=1", "CALC_PORT=8081"},
			stopAtLeast: 31.5,
			logDir:      "var/log/calcserver/logs",
			logFile:     "var/log/calcserver/logs/calcserver.log",
			fsPath:      "srv/cache",
			execStart:   " -config %[1]s/etc/calcserver/server.ini -port 8081",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := svctest.S3(t)
			fake.CreateBucket(t, bucket)
			m := newMachine(t)
			putRelease(t, fake, "unit", fmt.Sprintf(tc.config, m.root))
			env := append([]string{
				"CALC_SYSTEMD_DIR=" + t.TempDir(), // stands for /run/systemd/system
				"CALC_USER=nobody",                // exists: no useradd
				"CALC_HEALTH_TIMEOUT=0",           // the fake systemctl starts nothing
			}, tc.env...)
			runUserData(t, m.env(fake, "unit", env...)).mustSucceed(t)

			unitPath := m.path("etc/systemd/system/calcserver.service")
			unit := readFile(t, unitPath)
			t.Logf("%s:\n%s", unitPath, unit)
			v := unitValues(unit)
			want := map[string]string{
				"User":                  "nobody",
				"Group":                 nogroup.Name,
				"WorkingDirectory":      m.path("var/log/calcserver"),
				"ExecStart":             m.bin() + fmt.Sprintf(tc.execStart, m.root),
				"AmbientCapabilities":   "CAP_NET_BIND_SERVICE",
				"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
				"NoNewPrivileges":       "yes",
				"ProtectSystem":         "strict",
				"ProtectHome":           "yes",
				"PrivateTmp":            "yes",
				"WantedBy":              "multi-user.target",
			}
			if tc.restart {
				want["Restart"] = "always"
			} else {
				want["Restart"] = "no"
				want["FailureAction"] = "poweroff"
			}
			for k, w := range want {
				if got := v[k]; len(got) != 1 || got[0] != w {
					t.Errorf("%s=%q, want %q", k, got, w)
				}
			}
			if tc.restart && (v["FailureAction"] != nil || v["OnFailure"] != nil) {
				t.Error("without CALC_SHUTDOWN_ON_EXIT the unit powers off on failure")
			}
			rw := strings.Fields(strings.Join(v["ReadWritePaths"], " "))
			for _, p := range []string{tc.logDir, tc.fsPath} {
				if !slices.Contains(rw, m.path(p)) {
					t.Errorf("ReadWritePaths %q lacks %s", rw, m.path(p))
				}
			}
			if len(v["TimeoutStopSec"]) != 1 {
				t.Fatalf("TimeoutStopSec=%q", v["TimeoutStopSec"])
			}
			if stop, err := strconv.Atoi(v["TimeoutStopSec"][0]); err != nil || float64(stop) < tc.stopAtLeast || float64(stop) > tc.stopAtLeast+30 {
				t.Errorf("TimeoutStopSec=%s, want ShutdownDelay + ShutdownTimeout = %vs rounded up plus a small margin", v["TimeoutStopSec"][0], tc.stopAtLeast)
			}
			if path, err := exec.LookPath("systemd-analyze"); err == nil {
				b, err := exec.Command(path, "verify", unitPath).CombinedOutput()
				// It only warns about unknown keys; a missing ExecStart binary fails it.
				if err != nil || regexp.MustCompile(`(?i)unknown|ignoring|invalid|failed|not executable`).Match(b) {
					t.Errorf("systemd-analyze verify: %v\n%s", err, b)
				}
			}

			wantCalls := "systemctl daemon-reload\nsystemctl enable " + unitPath + "\nsystemctl daemon-reload\nsystemctl restart calcserver.service\n"
			if calls := m.recorded(t); calls != wantCalls {
				t.Errorf("the fakes recorded %q, want %q", calls, wantCalls)
			}
			if pids := m.servers(t); len(pids) != 0 {
				t.Errorf("servers %v run: with systemd the script starts none itself", pids)
			}
			if m.pidFile(t, "calcserver.pid") != 0 {
				t.Error("a pid file was written with systemd")
			}
			for _, p := range []string{tc.logDir, tc.logFile, tc.fsPath} {
				st, err := os.Stat(m.path(p))
				if err != nil {
					t.Error(err)
					continue
				}
				if uid := strconv.Itoa(int(st.Sys().(*syscall.Stat_t).Uid)); uid != nobody.Uid {
					t.Errorf("%s is owned by uid %s, want nobody (%s)", p, uid, nobody.Uid)
				}
			}
			if st, err := os.Stat(m.path(tc.logFile)); err == nil && st.Mode().Perm() != 0o640 {
				t.Errorf("%s has mode %v, want 0640", tc.logFile, st.Mode().Perm())
			}
			rotate := readFile(t, m.path("etc/logrotate.d/calcserver"))
			for _, want := range []string{`"` + m.path(tc.logFile) + `" {`, "create 0640 nobody " + nogroup.Name, "systemctl kill -s HUP calcserver.service"} {
				if !strings.Contains(rotate, want) {
					t.Errorf("logrotate snippet lacks %q:\n%s", want, rotate)
				}
			}
			if strings.Contains(rotate, "console.log") {
				t.Errorf("with systemd the logrotate snippet names a console file:\n%s", rotate)
			}
		})
	}
}

// unitValues parses a unit file into its Key=value settings (every occurrence).
func unitValues(unit string) map[string][]string {
	v := map[string][]string{}
	for line := range strings.SplitSeq(unit, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, val, _ := strings.Cut(line, "=")
		v[k] = append(v[k], val)
	}
	return v
}

// TestUserDataGivesTheRunningServerItsOwnDrainTime: a release that shortens the drain
// must not cut short the server that runs now, which drains by the configuration it
// started with: the new unit's TimeoutStopSec covers the longer of the two.
func TestUserDataGivesTheRunningServerItsOwnDrainTime(t *testing.T) {
	t.Parallel()
	fake := svctest.S3(t)
	fake.CreateBucket(t, bucket)
	m := newMachine(t)
	env := func() []string {
		return m.env(fake, "drain", "CALC_INIT=systemd", "CALC_USER=nobody", "CALC_HEALTH_TIMEOUT=0")
	}
	stopSec := func() int {
		t.Helper()
		v := unitValues(readFile(t, m.path("etc/systemd/system/calcserver.service")))
		n, err := strconv.Atoi(v["TimeoutStopSec"][0])
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	putRelease(t, fake, "drain", "ShutdownDelay = 1m\nShutdownTimeout = 30s\nWorkMode = sleep\n")
	runUserData(t, env()).mustSucceed(t)
	if got := stopSec(); got < 90 {
		t.Fatalf("first release: TimeoutStopSec=%d, want at least 90", got)
	}
	putRelease(t, fake, "drain", "ShutdownTimeout = 1s\nWorkMode = sleep\n")
	runUserData(t, env()).mustSucceed(t)
	if got := stopSec(); got < 90 {
		t.Errorf("second release: TimeoutStopSec=%d, want at least the running server's 90", got)
	}
	// A third run replaces a short drain with a short one: the short time stands.
	runUserData(t, env()).mustSucceed(t)
	if got := stopSec(); got > 30 {
		t.Errorf("third release: TimeoutStopSec=%d, want the short drain's (about 11)", got)
	}
}
