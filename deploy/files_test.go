package deploy_test

// The deploy files must agree with each other and with the server: one port, one
// health path, configurations that load, stop times that cover a drain. Docker,
// compose and ECS are not available where the tests run, so each file is read here
// (with the libraries of parse_test.go) and checked against the others and against
// internal/config.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	ngxconf "github.com/tufanbarisyildirim/gonginx/config"

	"github.com/unicorn-rentals/unicorn/internal/config"
)

// healthPath is what the server answers health checks on.
const healthPath = "/healthcheck"

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("the module root is not the parent of deploy/: %v", err)
	}
	return root
}

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// loadConfig parses and validates a shipped server.ini (rel to the module root).
func loadConfig(t *testing.T, rel string) config.Config {
	t.Helper()
	cfg, err := config.Parse(rel, []byte(readFile(t, rel)))
	if err != nil {
		t.Fatalf("%s does not parse:\n%v", rel, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("%s is not valid:\n%v", rel, err)
	}
	return cfg
}

// stopTime is how long the server may take to stop after SIGTERM with cfg.
func stopTime(cfg config.Config) time.Duration { return cfg.ShutdownDelay + cfg.ShutdownTimeout }

// worstWait is how long a /calc miss may take with cfg when the queue is full: the
// jobs ahead of it (a full line and the running ones) and its own.
func worstWait(cfg config.Config) time.Duration {
	rounds := (cfg.QueueSize+cfg.Cores-1)/cfg.Cores + 1
	return time.Duration(rounds) * cfg.WorkTime
}

// ---------------------------------------------------------------------------
// The image, as the Dockerfile describes it
// ---------------------------------------------------------------------------

type healthCheck struct {
	source      string   // where it was read, for messages
	shell       bool     // run as /bin/sh -c argv[0]
	argv        []string // the exec form, or the shell script alone
	interval    time.Duration
	timeout     time.Duration
	startPeriod time.Duration
	retries     int
}

// command is what the container runtime executes.
func (h healthCheck) command() []string {
	if h.shell {
		return []string{"/bin/sh", "-c", h.argv[0]}
	}
	return h.argv
}

// url is the one http:// URL the health check asks.
func (h healthCheck) url(t *testing.T) *url.URL {
	t.Helper()
	words := h.argv
	if h.shell {
		cmds, err := shellCommands(h.argv[0], nil)
		if err != nil {
			t.Fatalf("%s: %v", h.source, err)
		}
		words = nil
		for _, c := range cmds {
			words = append(words, c.argv...)
		}
	}
	var urls []string
	for _, w := range words {
		if strings.HasPrefix(w, "http://") || strings.HasPrefix(w, "https://") {
			urls = append(urls, w)
		}
	}
	if len(urls) != 1 {
		t.Fatalf("%s: want exactly one URL in the health check, found %q", h.source, urls)
	}
	u, err := url.Parse(urls[0])
	if err != nil {
		t.Fatalf("%s: %v", h.source, err)
	}
	return u
}

// checkHealthURL checks that the health check asks this container's server, over
// IPv4 loopback, on port, at healthPath.
func (h healthCheck) checkURL(t *testing.T, port int) {
	t.Helper()
	u := h.url(t)
	p := u.Port()
	if p == "" {
		p = "80"
	}
	if u.Scheme != "http" || u.Hostname() != "127.0.0.1" || p != strconv.Itoa(port) || u.Path != healthPath || u.RawQuery != "" {
		t.Errorf("%s asks %s, want http://127.0.0.1:%d%s (the server's port and health path, over IPv4 loopback)", h.source, u, port, healthPath)
	}
	if h.shell && !strings.Contains(h.argv[0], "-Y off") {
		t.Errorf("%s: busybox wget should not use a proxy from the environment: add -Y off", h.source)
	}
}

// parseHealthcheck reads a HEALTHCHECK as Docker runs it, with Docker's defaults for
// what it leaves out.
func parseHealthcheck(hc *instructions.HealthCheckCommand) (healthCheck, error) {
	h := healthCheck{source: fmt.Sprintf("Dockerfile:%d HEALTHCHECK", line(hc)),
		interval: 30 * time.Second, timeout: 30 * time.Second, retries: 3}
	c := hc.Health
	if c.Interval != 0 {
		h.interval = c.Interval
	}
	if c.Timeout != 0 {
		h.timeout = c.Timeout
	}
	if c.StartPeriod != 0 {
		h.startPeriod = c.StartPeriod
	}
	if c.Retries != 0 {
		h.retries = c.Retries
	}
	switch {
	case len(c.Test) > 0 && c.Test[0] == "NONE":
		return h, fmt.Errorf("%s: NONE disables the health check", h.source)
	case len(c.Test) == 2 && c.Test[0] == "CMD-SHELL":
		h.shell, h.argv = true, c.Test[1:]
	case len(c.Test) >= 2 && c.Test[0] == "CMD":
		h.argv = c.Test[1:]
	default:
		return h, fmt.Errorf("%s: %q: want CMD", h.source, c.Test)
	}
	if h.argv[0] == "" {
		return h, fmt.Errorf("%s: empty command", h.source)
	}
	return h, nil
}

// image is what the tests need to know about the image the Dockerfile builds.
type image struct {
	build, final dfStage
	env          map[string]string // ENV of the final stage
	uid, gid     int
	expose       []int
	health       healthCheck
	entrypoint   []string
	stopSignal   string
	configPath   string // CALC_CONFIG: the configuration the image reads
	configSource string // the context file the Dockerfile copies there
	binaryPath   string // where the binary is installed (ENTRYPOINT[0])
	setcap       []string
}

// readDockerfile reads the Dockerfile's two stages (build, final), with buildArgs as
// --build-arg values.
func readDockerfile(t *testing.T, buildArgs map[string]string) (build, final dfStage) {
	t.Helper()
	stages, err := parseDockerfile(readFile(t, "Dockerfile"), buildArgs)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	if len(stages) != 2 {
		t.Fatalf("Dockerfile: want 2 stages (build, final), found %d", len(stages))
	}
	return stages[0], stages[1]
}

func loadImage(t *testing.T) image {
	t.Helper()
	var img image
	img.build, img.final = readDockerfile(t, nil)

	img.env = map[string]string{}
	var (
		healths     []*instructions.HealthCheckCommand
		users       []*instructions.UserCommand
		entrypoints []*instructions.EntrypointCommand
		signals     []*instructions.StopSignalCommand
	)
	for _, cmd := range img.final.Commands {
		switch c := cmd.(type) {
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				img.env[kv.Key] = kv.Value
			}
		case *instructions.ExposeCommand:
			for _, f := range c.Ports {
				p, err := strconv.Atoi(strings.TrimSuffix(f, "/tcp"))
				if err != nil {
					t.Fatalf("Dockerfile:%d: EXPOSE %s: want a TCP port", line(c), f)
				}
				img.expose = append(img.expose, p)
			}
		case *instructions.HealthCheckCommand:
			healths = append(healths, c)
		case *instructions.UserCommand:
			users = append(users, c)
		case *instructions.EntrypointCommand:
			entrypoints = append(entrypoints, c)
		case *instructions.StopSignalCommand:
			signals = append(signals, c)
		case *instructions.CmdCommand:
			t.Fatalf("Dockerfile:%d: CMD would be appended to the ENTRYPOINT's arguments; configure with CALC_CONFIG", line(c))
		}
	}
	if len(healths) != 1 || len(users) != 1 || len(entrypoints) != 1 || len(signals) != 1 {
		t.Fatalf("Dockerfile: the final stage needs exactly one HEALTHCHECK, USER, ENTRYPOINT and STOPSIGNAL; found %d, %d, %d, %d",
			len(healths), len(users), len(entrypoints), len(signals))
	}
	var err error
	if img.health, err = parseHealthcheck(healths[0]); err != nil {
		t.Fatal(err)
	}
	user := users[0]
	u, g, _ := strings.Cut(user.User, ":")
	if img.uid, err = strconv.Atoi(u); err != nil {
		t.Fatalf("Dockerfile:%d: USER %s: use a numeric uid:gid (Kubernetes runAsNonRoot can only check a number)", line(user), user.User)
	}
	if img.gid, err = strconv.Atoi(g); err != nil {
		t.Fatalf("Dockerfile:%d: USER %s: use a numeric uid:gid", line(user), user.User)
	}
	ep := entrypoints[0]
	if ep.PrependShell || len(ep.CmdLine) == 0 {
		t.Fatalf("Dockerfile:%d: ENTRYPOINT must be the exec form, so that the server is PID 1 and gets SIGTERM itself", line(ep))
	}
	img.entrypoint, img.binaryPath = ep.CmdLine, ep.CmdLine[0]
	img.stopSignal = signals[0].Signal

	img.configPath = img.env["CALC_CONFIG"]
	for _, cmd := range img.final.Commands {
		switch c := cmd.(type) {
		case *instructions.CopyCommand:
			if c.From == "" && len(c.SourcePaths) == 1 && len(c.SourceContents) == 0 && c.DestPath == img.configPath {
				img.configSource = c.SourcePaths[0]
			}
		case *instructions.RunCommand:
			cmds, err := img.final.runCommands(c)
			if err != nil {
				t.Fatalf("Dockerfile: %v", err)
			}
			for _, sc := range cmds {
				if len(sc.argv) > 0 && sc.argv[0] == "setcap" {
					img.setcap = sc.argv[1:]
				}
			}
		}
	}
	return img
}

// imageConfig is the configuration the image runs with unless told otherwise.
func (img image) config(t *testing.T) config.Config {
	t.Helper()
	return loadConfig(t, img.configSource)
}

// port is the one port the image serves on.
func (img image) port(t *testing.T) int {
	t.Helper()
	if len(img.expose) != 1 {
		t.Fatalf("Dockerfile: want one EXPOSEd port, found %v", img.expose)
	}
	return img.expose[0]
}

func TestDockerfile(t *testing.T) {
	img := loadImage(t)

	// Stages: the builder named in the issue, then plain Alpine.
	if b := img.build.Stage; b.BaseName != "golang:1.26-alpine" || b.Name != "build" {
		t.Errorf("Dockerfile:%d: FROM %s AS %s, want golang:1.26-alpine AS build", b.Location[0].Start.Line, b.BaseName, b.Name)
	}
	if f := img.final.Stage; f.BaseName != "alpine:3" || f.Name != "" {
		t.Errorf("Dockerfile:%d: FROM %s (AS %q), want alpine:3", f.Location[0].Start.Line, f.BaseName, f.Name)
	}
	if !slices.Contains(img.build.args, "VERSION") {
		t.Error("Dockerfile: the build stage needs ARG VERSION")
	}

	// The binary: static, trimmed, stripped, stamped (the build itself runs in
	// TestImageBuildsFromItsContext).
	b := goBuildCommand(t, "v-test")
	if b.env["CGO_ENABLED"] != "0" {
		t.Errorf("Dockerfile: go build needs CGO_ENABLED=0 (a static binary for Alpine's musl), found env %v", b.env)
	}
	if !slices.Contains(b.argv, "-trimpath") {
		t.Errorf("Dockerfile: go build needs -trimpath: %q", b.argv)
	}
	ldflags := flagAfter(b.argv, "-ldflags")
	for _, want := range []string{"-s", "-w", "-X", "main.version=v-test"} {
		if !slices.Contains(strings.Fields(ldflags), want) {
			t.Errorf("Dockerfile: go build -ldflags %q lacks %s (with ARG VERSION)", ldflags, want)
		}
	}

	// The final stage: a non-root user that may bind port 80.
	if img.uid == 0 || img.gid == 0 {
		t.Errorf("Dockerfile: USER %d:%d: the server must not run as root", img.uid, img.gid)
	}
	if want := []string{"cap_net_bind_service=+ep", img.binaryPath}; !slices.Equal(img.setcap, want) {
		t.Errorf("Dockerfile: setcap %q, want %q: the binary needs the file capability to bind port 80 as uid %d", img.setcap, want, img.uid)
	}
	if img.stopSignal != "SIGTERM" {
		t.Errorf("Dockerfile: STOPSIGNAL %s, want SIGTERM (the server drains on it)", img.stopSignal)
	}
	if img.configPath != "/etc/calcserver/server.ini" {
		t.Errorf("Dockerfile: ENV CALC_CONFIG=%s, want /etc/calcserver/server.ini (README tells users to mount there)", img.configPath)
	}
	if img.configSource == "" {
		t.Fatalf("Dockerfile: no COPY writes %s", img.configPath)
	}
	port := img.port(t)
	if cfg := img.config(t); cfg.Port != port {
		t.Errorf("Dockerfile: EXPOSE %d but %s (the image's configuration) has Port %d", port, img.configSource, cfg.Port)
	}
	if cfg := img.config(t); cfg.LogLocation != "" {
		t.Errorf("%s: LogLocation %q: the image must log to stderr (docker logs, awslogs)", img.configSource, cfg.LogLocation)
	}

	// The health check: busybox wget (Alpine has no curl) on the server's health path.
	h := img.health
	h.checkURL(t, port)
	if !strings.HasPrefix(h.argv[0], "wget ") && h.argv[0] != "wget" {
		t.Errorf("%s: %q: use busybox wget, Alpine has no curl", h.source, h.argv)
	}
	if h.timeout <= 0 || h.timeout > h.interval || h.retries < 1 {
		t.Errorf("%s: timeout %v, interval %v, retries %d: want 0 < timeout <= interval and retries >= 1", h.source, h.timeout, h.interval, h.retries)
	}
}

// goBuild is the Dockerfile's go build command, its variables expanded for
// version, the host's GOOS and GOARCH standing in for the target's.
type goBuild struct {
	line int
	env  map[string]string
	argv []string // "go", "build", ...
}

func goBuildCommand(t *testing.T, version string) goBuild {
	t.Helper()
	build, _ := readDockerfile(t, map[string]string{
		"VERSION": version, "TARGETOS": goEnv(t, "GOOS"), "TARGETARCH": goEnv(t, "GOARCH"),
	})
	var found []goBuild
	for _, cmd := range build.Commands {
		run, ok := cmd.(*instructions.RunCommand)
		if !ok {
			continue
		}
		cmds, err := build.runCommands(run)
		if err != nil {
			t.Fatalf("Dockerfile: %v", err)
		}
		for _, c := range cmds {
			if len(c.argv) >= 2 && c.argv[0] == "go" && c.argv[1] == "build" {
				found = append(found, goBuild{line(run), c.env, c.argv})
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("Dockerfile: want one go build in the build stage, found %d", len(found))
	}
	return found[0]
}

func goEnv(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// flagAfter returns the argument after flag in argv ("" when absent).
func flagAfter(argv []string, flag string) string {
	for i, a := range argv {
		if a == flag && i+1 < len(argv) {
			return argv[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

func TestShippedConfigsAreValidAndUsed(t *testing.T) {
	img := loadImage(t)
	used := map[string]string{img.configSource: "the Dockerfile"}
	c := loadCompose(t)
	used[c.configSource] = "docker-compose.yml"
	used[ecsConfigSource(t)] = `README.md "Run on ECS"`

	files, err := filepath.Glob(filepath.Join(repoRoot(t), "deploy", "*.ini"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/*.ini: %v", err)
	}
	for _, f := range files {
		rel := "deploy/" + filepath.Base(f)
		loadConfig(t, rel) // parses, every key known, valid
		if used[rel] == "" {
			t.Errorf("%s is used by nothing: not by the Dockerfile, docker-compose.yml or README.md", rel)
		}
		delete(used, rel)
	}
	for rel, by := range used {
		t.Errorf("%s names %s, which is not a deploy/*.ini", by, rel)
	}
}

// ---------------------------------------------------------------------------
// docker-compose.yml
// ---------------------------------------------------------------------------

type compose struct {
	file         composeFile
	calc         string // the calcserver service's name
	nginx        string
	redis        string
	configSource string // the server.ini the calcserver service mounts (rel to the module root)
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	f, err := parseCompose(readFile(t, "deploy/docker-compose.yml"))
	if err != nil {
		t.Fatalf("deploy/docker-compose.yml: %v", err)
	}
	c := compose{file: f}
	if len(f.Services) == 0 {
		t.Fatal("deploy/docker-compose.yml: no services")
	}
	for _, name := range slices.Sorted(maps.Keys(f.Services)) {
		s := f.Services[name]
		switch {
		case s.Build != nil:
			c.calc = name
		case strings.HasPrefix(s.Image, "nginx:"):
			c.nginx = name
		case strings.HasPrefix(s.Image, "redis:"):
			c.redis = name
		default:
			t.Fatalf("deploy/docker-compose.yml: service %s is none of calcserver (build), nginx, redis", name)
		}
	}
	if c.calc == "" || c.nginx == "" || c.redis == "" {
		t.Fatalf("deploy/docker-compose.yml: want a calcserver (build), an nginx and a redis service; found %q", slices.Sorted(maps.Keys(f.Services)))
	}
	img := loadImage(t)
	for _, v := range f.Services[c.calc].Volumes {
		src, dst, mode := splitVolume(v)
		if dst == img.configPath {
			if mode != "ro" {
				t.Errorf("deploy/docker-compose.yml: mount %s read-only (:ro)", v)
			}
			c.configSource = path.Join("deploy", src)
		}
	}
	if c.configSource == "" {
		t.Fatalf("deploy/docker-compose.yml: the %s service mounts nothing on %s", c.calc, img.configPath)
	}
	return c
}

func splitVolume(v string) (src, dst, mode string) {
	parts := strings.Split(v, ":")
	switch len(parts) {
	case 2:
		return parts[0], parts[1], "rw"
	case 3:
		return parts[0], parts[1], parts[2]
	}
	return v, "", ""
}

func TestCompose(t *testing.T) {
	c := loadCompose(t)
	img := loadImage(t)
	port := img.port(t)
	// Top-level keys other than name and services are refused by the decoder.

	// calcserver: built from the Dockerfile, several replicas, the config mounted.
	calc := c.file.Services[c.calc]
	if filepath.Clean(filepath.Join(repoRoot(t), "deploy", calc.Build.Context)) != repoRoot(t) {
		t.Errorf("deploy/docker-compose.yml: %s build.context must be the module root (..)", c.calc)
	}
	if calc.Build.Dockerfile != "Dockerfile" {
		t.Errorf("deploy/docker-compose.yml: %s build.dockerfile must be Dockerfile", c.calc)
	}
	if _, ok := calc.Build.Args["VERSION"]; !ok {
		t.Errorf("deploy/docker-compose.yml: %s build.args should pass VERSION", c.calc)
	}
	replicas := 0
	if calc.Deploy != nil {
		replicas = calc.Deploy.Replicas
	}
	if replicas < 2 {
		t.Errorf("deploy/docker-compose.yml: %s deploy.replicas = %d, want several", c.calc, replicas)
	}
	if calc.Ports != nil || calc.ContainerName != "" {
		t.Errorf("deploy/docker-compose.yml: %s cannot publish ports or name its container: it has %d replicas", c.calc, replicas)
	}
	if !slices.Contains(calc.Expose, strconv.Itoa(port)) {
		t.Errorf("deploy/docker-compose.yml: %s expose %q, want the image's port %d", c.calc, calc.Expose, port)
	}
	if calc.Healthcheck != nil {
		t.Errorf("deploy/docker-compose.yml: %s must inherit the image's HEALTHCHECK, not define its own", c.calc)
	}
	if v, ok := calc.Environment["CALC_CONFIG"]; ok && v != img.configPath {
		t.Errorf("deploy/docker-compose.yml: CALC_CONFIG=%s, but the configuration is mounted on %s", v, img.configPath)
	}
	cfg := loadConfig(t, c.configSource)
	if cfg.Port != port {
		t.Errorf("%s: Port %d, but the image EXPOSEs and health-checks %d", c.configSource, cfg.Port, port)
	}
	if cfg.LogLocation != "" {
		t.Errorf("%s: LogLocation %q: log to stderr, for docker compose logs", c.configSource, cfg.LogLocation)
	}
	if calc.StopGracePeriod == "" {
		t.Fatalf("deploy/docker-compose.yml: %s has no stop_grace_period (compose's default is 10 s)", c.calc)
	}
	d, err := time.ParseDuration(calc.StopGracePeriod)
	if err != nil {
		t.Fatalf("deploy/docker-compose.yml: stop_grace_period %q: %v", calc.StopGracePeriod, err)
	}
	if d < stopTime(cfg) {
		t.Errorf("deploy/docker-compose.yml: stop_grace_period %v < ShutdownDelay + ShutdownTimeout = %v of %s", d, stopTime(cfg), c.configSource)
	}

	// The replicas share the compose file's Redis.
	if cfg.RedisHost != c.redis || (cfg.RedisPort != 0 && cfg.RedisPort != 6379) {
		t.Errorf("%s: RedisHost %q RedisPort %d, want the compose service %q on 6379", c.configSource, cfg.RedisHost, cfg.RedisPort, c.redis)
	}
	checkDependsOn(t, c, c.calc, c.redis)
	if hc := c.file.Services[c.redis].Healthcheck; hc == nil || len(hc.Test) == 0 {
		t.Errorf("deploy/docker-compose.yml: %s needs a healthcheck: %s waits for it to be healthy", c.redis, c.calc)
	}

	// nginx: its configuration beside this file, read-only, in front of the replicas.
	ngx := c.file.Services[c.nginx]
	if !slices.Contains(ngx.Volumes, "./nginx.conf:/etc/nginx/nginx.conf:ro") {
		t.Errorf("deploy/docker-compose.yml: %s must mount ./nginx.conf:/etc/nginx/nginx.conf:ro, found %q", c.nginx, ngx.Volumes)
	}
	checkDependsOn(t, c, c.nginx, c.calc)
	listen := nginxListenPort(t)
	published := false
	for _, p := range ngx.Ports {
		parts := strings.Split(p, ":")
		if parts[len(parts)-1] == strconv.Itoa(listen) {
			published = true
		}
	}
	if !published {
		t.Errorf("deploy/docker-compose.yml: %s ports %q publish nothing on nginx.conf's listen port %d", c.nginx, ngx.Ports, listen)
	}
}

// checkDependsOn checks that service from starts once service to is healthy.
func checkDependsOn(t *testing.T, c compose, from, to string) {
	t.Helper()
	if dep, ok := c.file.Services[from].DependsOn[to]; !ok || dep.Condition != "service_healthy" {
		t.Errorf("deploy/docker-compose.yml: %s must depend on %s with condition: service_healthy", from, to)
	}
}

// ---------------------------------------------------------------------------
// nginx.conf
// ---------------------------------------------------------------------------

func loadNginx(t *testing.T) []ngxconf.IDirective {
	t.Helper()
	ds, err := parseNginx(readFile(t, "deploy/nginx.conf"))
	if err != nil {
		t.Fatalf("deploy/nginx.conf: %v", err)
	}
	return ds
}

func nginxHTTP(t *testing.T, ds []ngxconf.IDirective) []ngxconf.IDirective {
	t.Helper()
	http := ngxFind(ds, "http")
	if len(http) != 1 || http[0].GetBlock() == nil {
		t.Fatal("deploy/nginx.conf: want one http block")
	}
	return ngxBlock(http[0])
}

func nginxListenPort(t *testing.T) int {
	t.Helper()
	servers := ngxFind(nginxHTTP(t, loadNginx(t)), "server")
	if len(servers) != 1 {
		t.Fatalf("deploy/nginx.conf: want one server block, found %d", len(servers))
	}
	listen := ngxFind(ngxBlock(servers[0]), "listen")
	if len(listen) != 1 || len(ngxArgs(listen[0])) == 0 {
		t.Fatal("deploy/nginx.conf: want one listen directive")
	}
	arg := ngxArgs(listen[0])[0]
	p, err := strconv.Atoi(arg)
	if err != nil {
		t.Fatalf("deploy/nginx.conf:%d: listen %s: want a bare port", listen[0].GetLine(), arg)
	}
	return p
}

// nginxSeconds reads an nginx time ("60s", "1m", "500ms", "1m30s"; a bare number is
// seconds).
func nginxSeconds(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(s)
}

func TestNginxConf(t *testing.T) {
	ds := loadNginx(t)
	http := nginxHTTP(t, ds)
	img := loadImage(t)
	c := loadCompose(t)
	port := img.port(t)
	cfg := loadConfig(t, c.configSource)

	locs := ngxFind(ngxBlock(ngxFind(http, "server")[0]), "location")
	if len(locs) != 1 || !slices.Equal(ngxArgs(locs[0]), []string{"/"}) {
		t.Fatal("deploy/nginx.conf: want one location / in the server block")
	}
	loc := ngxBlock(locs[0])
	one := func(name string) []string {
		t.Helper()
		d := ngxFind(loc, name)
		if len(d) != 1 {
			t.Fatalf("deploy/nginx.conf: want one %s in location /, found %d", name, len(d))
		}
		return ngxArgs(d[0])
	}
	pass := one("proxy_pass")
	name, ok := strings.CutPrefix(pass[0], "http://")
	if !ok {
		t.Fatalf("deploy/nginx.conf: proxy_pass %s: want http://<upstream>", pass[0])
	}

	var up *ngxconf.Upstream
	for _, d := range ngxFind(http, "upstream") {
		if u, ok := d.(*ngxconf.Upstream); ok && u.UpstreamName == name {
			up = u
		}
	}
	if up == nil {
		t.Fatalf("deploy/nginx.conf: proxy_pass names upstream %s, which is not defined", name)
	}
	// least_conn must come before keepalive, or nginx uses round robin under it.
	order := func(n string) int {
		return slices.IndexFunc(up.Directives, func(d ngxconf.IDirective) bool { return d.GetName() == n })
	}
	if order("least_conn") < 0 {
		t.Error("deploy/nginx.conf: the upstream needs least_conn")
	}
	if order("keepalive") < 0 {
		t.Error("deploy/nginx.conf: the upstream needs keepalive (connections kept open to the replicas)")
	} else if order("least_conn") > order("keepalive") {
		t.Error("deploy/nginx.conf: least_conn must come before keepalive")
	}
	if len(up.UpstreamServers) == 0 {
		t.Fatal("deploy/nginx.conf: the upstream has no server")
	}
	for _, s := range up.UpstreamServers {
		if s.Address != c.calc+":"+strconv.Itoa(port) {
			t.Errorf("deploy/nginx.conf:%d: server %s, want %s:%d (the compose service, the image's port)", s.Line, s.Address, c.calc, port)
		}
		if n, err := strconv.Atoi(s.Parameters["max_fails"]); err != nil || n < 1 {
			t.Errorf("deploy/nginx.conf:%d: passive health checks need max_fails >= 1", s.Line)
		}
		if _, err := nginxSeconds(s.Parameters["fail_timeout"]); err != nil {
			t.Errorf("deploy/nginx.conf:%d: passive health checks need fail_timeout: %v", s.Line, err)
		}
	}

	// Keep-alive to the upstream: HTTP/1.1 and no Connection: close.
	if v := one("proxy_http_version"); !slices.Equal(v, []string{"1.1"}) {
		t.Errorf("deploy/nginx.conf: proxy_http_version %v, want 1.1 for keep-alive", v)
	}
	connCleared := false
	for _, d := range ngxFind(loc, "proxy_set_header") {
		if a := ngxArgs(d); len(a) == 2 && strings.EqualFold(a[0], "Connection") && a[1] == "" {
			connCleared = true
		}
	}
	if !connCleared {
		t.Error(`deploy/nginx.conf: keep-alive to the upstream needs proxy_set_header Connection ""`)
	}

	// Timeouts above a miss's 4 s job plus its wait in line.
	for _, n := range []string{"proxy_read_timeout", "proxy_send_timeout"} {
		d, err := nginxSeconds(one(n)[0])
		if err != nil {
			t.Fatalf("deploy/nginx.conf: %s: %v", n, err)
		}
		if n == "proxy_read_timeout" && d <= worstWait(cfg) {
			t.Errorf("deploy/nginx.conf: proxy_read_timeout %v <= %v, the longest a miss can take with %s", d, worstWait(cfg), c.configSource)
		}
	}
	// The documented choice: a 503 is an answer, not a failure to retry elsewhere.
	next := one("proxy_next_upstream")
	if slices.Contains(next, "http_503") || !slices.Contains(next, "error") {
		t.Errorf("deploy/nginx.conf: proxy_next_upstream %v: retry on error (and timeout), never on http_503 (see the comment there)", next)
	}

	// Logs go to the container's stdout and stderr (docker compose logs), which also
	// keeps nginx -t below from writing files outside its temporary directory.
	var logs func(ds []ngxconf.IDirective)
	logs = func(ds []ngxconf.IDirective) {
		for _, d := range ds {
			ok := map[string][]string{"error_log": {"/dev/stderr", "stderr", "/dev/stdout"}, "access_log": {"/dev/stdout", "/dev/stderr", "off"}}[d.GetName()]
			if a := ngxArgs(d); ok != nil && (len(a) == 0 || !slices.Contains(ok, a[0])) {
				t.Errorf("deploy/nginx.conf:%d: %s %q: log to /dev/stdout or /dev/stderr", d.GetLine(), d.GetName(), a)
			}
			logs(ngxBlock(d))
		}
	}
	logs(ds)

	// What nginx itself thinks of the file, with the compose service's name resolving
	// to loopback.
	nginxSyntaxCheck(t, c)
}

// nginxSyntaxCheck runs nginx -t on deploy/nginx.conf as it is, in a mount namespace
// of its own whose /etc/hosts maps the compose services to 127.0.0.1 (nginx resolves
// upstream servers when it reads the file).
func nginxSyntaxCheck(t *testing.T, c compose) {
	t.Helper()
	requireRoot(t)
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("nginx is not installed (bash scripts/deps.sh installs it): it checks deploy/nginx.conf with nginx -t")
	}
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	names := strings.Join(slices.Sorted(maps.Keys(c.file.Services)), " ")
	if err := os.WriteFile(hosts, []byte("127.0.0.1\tlocalhost "+names+"\n::1\tlocalhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(repoRoot(t), "deploy", "nginx.conf")
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", `mount --bind "$1" /etc/hosts && shift && exec "$@"`, "sh", hosts,
		bin, "-t", "-q", "-p", dir+"/", "-e", filepath.Join(dir, "error.log"), "-c", conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := runWithin(cmd, 20*time.Second); err != nil {
		t.Fatalf("nginx -t rejects deploy/nginx.conf (compose services resolving to 127.0.0.1): %v\n%s", err, out.String())
	}
}

// runWithin runs cmd and kills it if it takes longer than d.
func runWithin(cmd *exec.Cmd, d time.Duration) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not finish within %v", cmd.Path, d)
	}
}

// ---------------------------------------------------------------------------
// ecs-task-definition.json
// ---------------------------------------------------------------------------

// The keys RegisterTaskDefinition accepts, for the levels the file uses; a key not
// listed is a typo (JSON decoding into structs would ignore case and miss it).
var (
	ecsTaskKeys = strings.Fields(`family taskRoleArn executionRoleArn networkMode containerDefinitions
		volumes placementConstraints requiresCompatibilities cpu memory tags pidMode ipcMode
		proxyConfiguration inferenceAccelerators ephemeralStorage runtimePlatform enableFaultInjection`)
	ecsContainerKeys = strings.Fields(`name image repositoryCredentials cpu memory memoryReservation links
		portMappings essential restartPolicy entryPoint command environment environmentFiles
		mountPoints volumesFrom linuxParameters secrets dependsOn startTimeout stopTimeout
		versionConsistency hostname user workingDirectory disableNetworking privileged
		readonlyRootFilesystem dnsServers dnsSearchDomains extraHosts dockerSecurityOptions
		interactive pseudoTerminal dockerLabels ulimits logConfiguration healthCheck
		systemControls resourceRequirements firelensConfiguration credentialSpecs`)
	ecsPortKeys   = strings.Fields(`containerPort hostPort protocol name appProtocol containerPortRange`)
	ecsHealthKeys = strings.Fields(`command interval timeout retries startPeriod`)
	ecsLogKeys    = strings.Fields(`logDriver options secretOptions`)
)

func checkKeys(t *testing.T, where string, m map[string]any, allowed []string) {
	t.Helper()
	for k := range m {
		if !slices.Contains(allowed, k) {
			t.Errorf("deploy/ecs-task-definition.json: %s: unknown key %q", where, k)
		}
	}
}

type ecsTask struct {
	raw       map[string]any
	container map[string]any
}

func loadECS(t *testing.T) ecsTask {
	t.Helper()
	data := readFile(t, "deploy/ecs-task-definition.json")
	dec := json.NewDecoder(strings.NewReader(data))
	dec.UseNumber()
	var task map[string]any
	if err := dec.Decode(&task); err != nil {
		t.Fatalf("deploy/ecs-task-definition.json: %v", err)
	}
	if dec.More() {
		t.Fatal("deploy/ecs-task-definition.json: text after the JSON object")
	}
	defs, _ := task["containerDefinitions"].([]any)
	if len(defs) != 1 {
		t.Fatalf("deploy/ecs-task-definition.json: want one container definition, found %d", len(defs))
	}
	c, _ := defs[0].(map[string]any)
	return ecsTask{raw: task, container: c}
}

func jsonInt(t *testing.T, where string, v any) int {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("deploy/ecs-task-definition.json: %s = %v: want a number", where, v)
	}
	i, err := strconv.Atoi(n.String())
	if err != nil {
		t.Fatalf("deploy/ecs-task-definition.json: %s = %v: want an integer", where, v)
	}
	return i
}

// fargateMemory lists, per cpu units, the memory sizes (MiB) Fargate accepts.
func fargateMemory(cpu int) []int {
	span := func(lo, hi, step int) []int {
		var out []int
		for m := lo; m <= hi; m += step {
			out = append(out, m)
		}
		return out
	}
	switch cpu {
	case 256:
		return []int{512, 1024, 2048}
	case 512:
		return span(1024, 4096, 1024)
	case 1024:
		return span(2048, 8192, 1024)
	case 2048:
		return span(4096, 16384, 1024)
	case 4096:
		return span(8192, 30720, 1024)
	case 8192:
		return span(16384, 61440, 4096)
	case 16384:
		return span(32768, 122880, 8192)
	}
	return nil
}

func TestECSTaskDefinition(t *testing.T) {
	task := loadECS(t)
	img := loadImage(t)
	port := img.port(t)
	checkKeys(t, "task", task.raw, ecsTaskKeys)
	c := task.container
	checkKeys(t, "container", c, ecsContainerKeys)

	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	if str(task.raw, "networkMode") != "awsvpc" {
		t.Errorf("networkMode %v, want awsvpc (Fargate)", task.raw["networkMode"])
	}
	if rc, _ := task.raw["requiresCompatibilities"].([]any); len(rc) != 1 || rc[0] != "FARGATE" {
		t.Errorf("requiresCompatibilities %v, want [FARGATE]", task.raw["requiresCompatibilities"])
	}
	cpu, err1 := strconv.Atoi(str(task.raw, "cpu"))
	mem, err2 := strconv.Atoi(str(task.raw, "memory"))
	if err1 != nil || err2 != nil || !slices.Contains(fargateMemory(cpu), mem) {
		t.Errorf("cpu %v memory %v: not a Fargate size (give both as strings of numbers)", task.raw["cpu"], task.raw["memory"])
	}
	for _, k := range []string{"executionRoleArn", "taskRoleArn"} {
		if !regexp.MustCompile(`^arn:aws:iam::<ACCOUNT_ID>:role/[A-Za-z0-9+=,.@_-]+$`).MatchString(str(task.raw, k)) {
			t.Errorf("%s %q: want arn:aws:iam::<ACCOUNT_ID>:role/NAME", k, str(task.raw, k))
		}
	}
	if str(c, "name") == "" || str(c, "image") == "" || c["essential"] != true {
		t.Errorf("the container needs a name, an image and essential: true")
	}

	// The port: the image's, the same on the host side (awsvpc requires it).
	pms, _ := c["portMappings"].([]any)
	if len(pms) != 1 {
		t.Fatalf("want one port mapping, found %d", len(pms))
	}
	pm, _ := pms[0].(map[string]any)
	checkKeys(t, "portMappings[0]", pm, ecsPortKeys)
	if got := jsonInt(t, "containerPort", pm["containerPort"]); got != port {
		t.Errorf("containerPort %d, but the image serves on %d", got, port)
	}
	if hp, ok := pm["hostPort"]; ok && jsonInt(t, "hostPort", hp) != port {
		t.Errorf("hostPort %v: with awsvpc it must equal containerPort %d", hp, port)
	}
	if p := str(pm, "protocol"); p != "" && p != "tcp" {
		t.Errorf("protocol %s, want tcp", p)
	}

	// The health check, as ECS runs it.
	h := ecsHealthCheck(t, task)
	h.checkURL(t, port)
	if h.interval < 5*time.Second || h.interval > 300*time.Second || h.timeout < 2*time.Second || h.timeout > 60*time.Second ||
		h.retries < 1 || h.retries > 10 || h.startPeriod > 300*time.Second || h.timeout > h.interval {
		t.Errorf("healthCheck interval %v timeout %v retries %d startPeriod %v: outside ECS's limits (5-300 s, 2-60 s, 1-10, 0-300 s) or timeout > interval",
			h.interval, h.timeout, h.retries, h.startPeriod)
	}

	// Logs: awslogs with every placeholder the README fills in.
	lc, _ := c["logConfiguration"].(map[string]any)
	checkKeys(t, "logConfiguration", lc, ecsLogKeys)
	opts, _ := lc["options"].(map[string]any)
	if str(lc, "logDriver") != "awslogs" || str(opts, "awslogs-group") == "" || str(opts, "awslogs-region") == "" || str(opts, "awslogs-stream-prefix") == "" {
		t.Errorf("logConfiguration %v: want awslogs with awslogs-group, awslogs-region and awslogs-stream-prefix", lc)
	}

	// The configuration: from S3, the file README.md uploads; stopTimeout covers its drain.
	env, _ := c["environment"].([]any)
	calcConfig := ""
	for _, e := range env {
		kv, _ := e.(map[string]any)
		if str(kv, "name") == "CALC_CONFIG" {
			calcConfig = str(kv, "value")
		}
	}
	if !strings.HasPrefix(calcConfig, "s3://") {
		t.Errorf("environment CALC_CONFIG %q, want an s3:// URL", calcConfig)
	}
	cfg := loadConfig(t, ecsConfigSource(t))
	if cfg.Port != port || cfg.LogLocation != "" {
		t.Errorf("%s: Port %d LogLocation %q: want %d and stderr (awslogs)", ecsConfigSource(t), cfg.Port, cfg.LogLocation, port)
	}
	stop := jsonInt(t, "stopTimeout", c["stopTimeout"])
	if stop > 120 {
		t.Errorf("stopTimeout %d: Fargate allows at most 120", stop)
	}
	if time.Duration(stop)*time.Second < stopTime(cfg) {
		t.Errorf("stopTimeout %d s < ShutdownDelay + ShutdownTimeout = %v of %s", stop, stopTime(cfg), ecsConfigSource(t))
	}

	// README.md fills every placeholder and uploads the configuration where CALC_CONFIG points.
	subst := readmeSubstitutions(t)
	data := readFile(t, "deploy/ecs-task-definition.json")
	for _, p := range regexp.MustCompile(`<[A-Z_]+>`).FindAllString(data, -1) {
		if _, ok := subst[p]; !ok {
			t.Errorf("placeholder %s: README.md's sed command does not replace it", p)
		}
	}
	dest := ecsUploadDest(t)
	filled := calcConfig
	for p, v := range subst {
		filled = strings.ReplaceAll(filled, p, v)
	}
	if filled != dest {
		t.Errorf("CALC_CONFIG %s becomes %s, but README.md uploads the configuration to %s", calcConfig, filled, dest)
	}
}

func ecsHealthCheck(t *testing.T, task ecsTask) healthCheck {
	t.Helper()
	hc, _ := task.container["healthCheck"].(map[string]any)
	checkKeys(t, "healthCheck", hc, ecsHealthKeys)
	h := healthCheck{source: "deploy/ecs-task-definition.json healthCheck",
		interval: 30 * time.Second, timeout: 5 * time.Second, retries: 3}
	cmd, _ := hc["command"].([]any)
	var argv []string
	for _, a := range cmd {
		s, ok := a.(string)
		if !ok {
			t.Fatalf("%s: command %v: want strings", h.source, cmd)
		}
		argv = append(argv, s)
	}
	switch {
	case len(argv) == 2 && argv[0] == "CMD-SHELL":
		h.shell, h.argv = true, argv[1:]
	case len(argv) >= 2 && argv[0] == "CMD":
		h.argv = argv[1:]
	default:
		t.Fatalf("%s: command %q: want [CMD-SHELL, script] or [CMD, argv...]", h.source, argv)
	}
	sec := func(k string, d *time.Duration) {
		if v, ok := hc[k]; ok {
			*d = time.Duration(jsonInt(t, "healthCheck."+k, v)) * time.Second
		}
	}
	sec("interval", &h.interval)
	sec("timeout", &h.timeout)
	sec("startPeriod", &h.startPeriod)
	if v, ok := hc["retries"]; ok {
		h.retries = jsonInt(t, "healthCheck.retries", v)
	}
	return h
}

// ---------------------------------------------------------------------------
// README.md
// ---------------------------------------------------------------------------

// readmeSection returns the text of the "## title" section.
func readmeSection(t *testing.T, title string) string {
	t.Helper()
	readme := readFile(t, "README.md")
	_, rest, ok := strings.Cut(readme, "\n## "+title+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", title)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

var (
	s3cpRE = regexp.MustCompile(`aws s3 cp (deploy/[A-Za-z0-9_.-]+\.ini) "?(s3://[^"\s]+)"?`)
	sedRE  = regexp.MustCompile(`-e "s\|(<[A-Z_]+>)\|([^|"]*)\|g"`)
)

// ecsConfigSource is the configuration README.md tells ECS users to upload.
func ecsConfigSource(t *testing.T) string {
	t.Helper()
	m := s3cpRE.FindAllStringSubmatch(readmeSection(t, "Run on ECS"), -1)
	if len(m) != 1 {
		t.Fatalf(`README.md "Run on ECS": want one "aws s3 cp deploy/FILE.ini s3://..." command, found %d`, len(m))
	}
	return m[0][1]
}

func ecsUploadDest(t *testing.T) string {
	t.Helper()
	return s3cpRE.FindStringSubmatch(readmeSection(t, "Run on ECS"))[2]
}

// readmeSubstitutions maps each placeholder of the task definition to what
// README.md's sed command puts in its place.
func readmeSubstitutions(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range sedRE.FindAllStringSubmatch(readmeSection(t, "Run on ECS"), -1) {
		out[m[1]] = m[2]
	}
	if len(out) == 0 {
		t.Fatal(`README.md "Run on ECS": no sed -e "s|<PLACEHOLDER>|value|g" for the task definition`)
	}
	return out
}

func TestReadmeSections(t *testing.T) {
	img := loadImage(t)
	docker := readmeSection(t, "Run in Docker")
	for _, want := range []string{
		"docker build -t calcserver --build-arg VERSION=", "docker run", "-p 8080:80",
		img.configPath + ":ro", "CALC_CONFIG=s3://", healthPath, "docker compose -f deploy/docker-compose.yml",
		"stop_grace_period", "cap_net_bind_service", "ip_unprivileged_port_start", "no-new-privileges", "Fargate",
	} {
		if !strings.Contains(docker, want) {
			t.Errorf(`README.md "Run in Docker" does not mention %q`, want)
		}
	}
	// Every docker run of the image lets the server drain (docker stop waits 10 s).
	runs := regexp.MustCompile(`(?m)^docker run .*(?:\\\n.*)*`).FindAllString(docker, -1)
	if len(runs) == 0 {
		t.Error(`README.md "Run in Docker": no docker run command`)
	}
	need := stopTime(img.config(t))
	for _, r := range runs {
		m := regexp.MustCompile(`--stop-timeout (\d+)`).FindStringSubmatch(r)
		if m == nil {
			t.Errorf("README.md: %q has no --stop-timeout (docker stop waits only 10 s; the image's configuration needs %v)", r, need)
			continue
		}
		if n, _ := strconv.Atoi(m[1]); time.Duration(n)*time.Second < need {
			t.Errorf("README.md: %q: --stop-timeout %s < %v, ShutdownDelay + ShutdownTimeout of %s", r, m[1], need, img.configSource)
		}
	}

	ecs := readmeSection(t, "Run on ECS")
	for _, want := range []string{
		"aws ecs register-task-definition --cli-input-json file://", healthPath, "stopTimeout",
		"120", "ShutdownDelay", "ShutdownTimeout", "deregistration", "s3:GetObject", "aws logs create-log-group",
	} {
		if !strings.Contains(ecs, want) {
			t.Errorf(`README.md "Run on ECS" does not mention %q`, want)
		}
	}
	task := loadECS(t)
	if lc, _ := task.container["logConfiguration"].(map[string]any); lc != nil {
		opts, _ := lc["options"].(map[string]any)
		if g, _ := opts["awslogs-group"].(string); !strings.Contains(ecs, "--log-group-name "+g) {
			t.Errorf(`README.md "Run on ECS" must create the log group %s`, g)
		}
	}
	if stop := jsonInt(t, "stopTimeout", task.container["stopTimeout"]); !strings.Contains(ecs, fmt.Sprintf("stopTimeout` (%d", stop)) {
		t.Errorf(`README.md "Run on ECS" should give the task definition's stopTimeout (%d)`, stop)
	}
}
