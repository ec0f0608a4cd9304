package deploy_test

// The deploy files must agree with each other and with the server: one port, one
// health path, configurations that load, stop times that cover a drain. Docker,
// compose and ECS are not available where the tests run, so each file is read here
// (parse_test.go) and checked against the others and against internal/config.

import (
	"bytes"
	"encoding/json"
	"fmt"
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

func parseHealthcheck(in instruction) (healthCheck, error) {
	h := healthCheck{source: fmt.Sprintf("Dockerfile:%d HEALTHCHECK", in.line),
		interval: 30 * time.Second, timeout: 30 * time.Second, retries: 3}
	for _, f := range in.flags {
		var err error
		switch f.name {
		case "interval":
			h.interval, err = time.ParseDuration(f.value)
		case "timeout":
			h.timeout, err = time.ParseDuration(f.value)
		case "start-period":
			h.startPeriod, err = time.ParseDuration(f.value)
		case "start-interval":
			_, err = time.ParseDuration(f.value)
		case "retries":
			h.retries, err = strconv.Atoi(f.value)
		default:
			err = fmt.Errorf("unknown flag")
		}
		if err != nil {
			return h, fmt.Errorf("%s: --%s=%s: %v", h.source, f.name, f.value, err)
		}
	}
	word, rest, _ := strings.Cut(in.args, " ")
	switch strings.ToUpper(word) {
	case "NONE":
		return h, fmt.Errorf("%s: NONE disables the health check", h.source)
	case "CMD":
	default:
		return h, fmt.Errorf("%s: want CMD, found %q", h.source, word)
	}
	rest = strings.TrimSpace(rest)
	if argv, ok := execForm(rest); ok {
		h.argv = argv
	} else {
		h.shell, h.argv = true, []string{rest}
	}
	if len(h.argv) == 0 || h.argv[0] == "" {
		return h, fmt.Errorf("%s: empty command", h.source)
	}
	return h, nil
}

// image is what the tests need to know about the image the Dockerfile builds.
type image struct {
	build, final []instruction // the two stages, FROM excluded
	buildFrom    instruction
	finalFrom    instruction
	args         map[string]string // ARG defaults of the build stage
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

func loadImage(t *testing.T) image {
	t.Helper()
	instrs, err := parseDockerfile(readFile(t, "Dockerfile"))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	var img image
	var stages [][]instruction
	var froms []instruction
	for _, in := range instrs {
		if in.cmd == "FROM" {
			froms = append(froms, in)
			stages = append(stages, nil)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before FROM", in.line, in.cmd)
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) != 2 {
		t.Fatalf("Dockerfile: want 2 stages (build, final), found %d", len(stages))
	}
	img.buildFrom, img.finalFrom = froms[0], froms[1]
	img.build, img.final = stages[0], stages[1]

	img.args = map[string]string{}
	for _, in := range img.build {
		if in.cmd == "ARG" {
			name, def, _ := strings.Cut(in.args, "=")
			img.args[name] = def
		}
	}
	img.env = map[string]string{}
	var healths, users, entrypoints, signals []instruction
	for _, in := range img.final {
		switch in.cmd {
		case "ENV":
			name, value, ok := strings.Cut(in.args, "=")
			if !ok || strings.ContainsAny(value, " \"'$") {
				t.Fatalf("Dockerfile:%d: write ENV as NAME=value, one per line, unquoted", in.line)
			}
			img.env[name] = value
		case "EXPOSE":
			for _, f := range strings.Fields(in.args) {
				p, err := strconv.Atoi(strings.TrimSuffix(f, "/tcp"))
				if err != nil {
					t.Fatalf("Dockerfile:%d: EXPOSE %s: want a TCP port", in.line, f)
				}
				img.expose = append(img.expose, p)
			}
		case "HEALTHCHECK":
			healths = append(healths, in)
		case "USER":
			users = append(users, in)
		case "ENTRYPOINT":
			entrypoints = append(entrypoints, in)
		case "STOPSIGNAL":
			signals = append(signals, in)
		case "CMD":
			t.Fatalf("Dockerfile:%d: CMD would be appended to the ENTRYPOINT's arguments; configure with CALC_CONFIG", in.line)
		}
	}
	if len(healths) != 1 || len(users) != 1 || len(entrypoints) != 1 || len(signals) != 1 {
		t.Fatalf("Dockerfile: the final stage needs exactly one HEALTHCHECK, USER, ENTRYPOINT and STOPSIGNAL; found %d, %d, %d, %d",
			len(healths), len(users), len(entrypoints), len(signals))
	}
	if img.health, err = parseHealthcheck(healths[0]); err != nil {
		t.Fatal(err)
	}
	u, g, _ := strings.Cut(users[0].args, ":")
	if img.uid, err = strconv.Atoi(u); err != nil {
		t.Fatalf("Dockerfile:%d: USER %s: use a numeric uid:gid (Kubernetes runAsNonRoot can only check a number)", users[0].line, users[0].args)
	}
	if img.gid, err = strconv.Atoi(g); err != nil {
		t.Fatalf("Dockerfile:%d: USER %s: use a numeric uid:gid", users[0].line, users[0].args)
	}
	argv, ok := execForm(entrypoints[0].args)
	if !ok || len(argv) == 0 {
		t.Fatalf("Dockerfile:%d: ENTRYPOINT must be the exec form, so that the server is PID 1 and gets SIGTERM itself", entrypoints[0].line)
	}
	img.entrypoint, img.binaryPath = argv, argv[0]
	img.stopSignal = signals[0].args

	img.configPath = img.env["CALC_CONFIG"]
	for _, in := range img.final {
		if in.cmd != "COPY" || len(in.flag("from")) > 0 {
			continue
		}
		f := strings.Fields(in.args)
		if len(f) == 2 && f[1] == img.configPath {
			img.configSource = f[0]
		}
	}
	for _, in := range img.final {
		if in.cmd != "RUN" {
			continue
		}
		cmds, err := shellCommands(in.args, nil)
		if err != nil {
			t.Fatalf("Dockerfile:%d: %v", in.line, err)
		}
		for _, c := range cmds {
			if len(c.argv) > 0 && c.argv[0] == "setcap" {
				img.setcap = c.argv[1:]
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
	if got := img.buildFrom.args; !regexp.MustCompile(`^golang:1\.26-alpine AS build$`).MatchString(got) {
		t.Errorf("Dockerfile:%d: FROM %s, want golang:1.26-alpine AS build", img.buildFrom.line, got)
	}
	if got := img.finalFrom.args; got != "alpine:3" {
		t.Errorf("Dockerfile:%d: FROM %s, want alpine:3", img.finalFrom.line, got)
	}
	if _, ok := img.args["VERSION"]; !ok {
		t.Error("Dockerfile: the build stage needs ARG VERSION")
	}

	// The binary: static, trimmed, stripped, stamped (the build itself runs in
	// TestImageBuildsFromItsContext).
	b := goBuildCommand(t, img, "v-test")
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
	port := img.port(t)
	if cfg := img.config(t); cfg.Port != port {
		t.Errorf("Dockerfile: EXPOSE %d but %s (the image's configuration) has Port %d", port, img.configSource, cfg.Port)
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

func goBuildCommand(t *testing.T, img image, version string) goBuild {
	t.Helper()
	vars := map[string]string{}
	for k, v := range img.args {
		vars[k] = v
	}
	vars["VERSION"] = version
	vars["TARGETOS"], vars["TARGETARCH"] = goEnv(t, "GOOS"), goEnv(t, "GOARCH")
	var found []goBuild
	for _, in := range img.build {
		if in.cmd != "RUN" {
			continue
		}
		cmds, err := shellCommands(in.args, vars)
		if err != nil {
			t.Fatalf("Dockerfile:%d: %v", in.line, err)
		}
		for _, c := range cmds {
			if len(c.argv) >= 2 && c.argv[0] == "go" && c.argv[1] == "build" {
				found = append(found, goBuild{in.line, c.env, c.argv})
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
	doc          *yamlNode
	calc         string // the calcserver service's name
	nginx        string
	redis        string
	configSource string // the server.ini the calcserver service mounts (rel to the module root)
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	doc, err := parseYAML(readFile(t, "deploy/docker-compose.yml"))
	if err != nil {
		t.Fatalf("deploy/docker-compose.yml: %v", err)
	}
	c := compose{doc: doc}
	services := doc.get("services")
	if services == nil || services.kind != 'm' {
		t.Fatal("deploy/docker-compose.yml: no services")
	}
	for _, name := range services.keys {
		s := services.fields[name]
		image := ""
		if n := s.get("image"); n != nil {
			image = n.value
		}
		switch {
		case s.get("build") != nil:
			c.calc = name
		case strings.HasPrefix(image, "nginx:"):
			c.nginx = name
		case strings.HasPrefix(image, "redis:"):
			c.redis = name
		default:
			t.Fatalf("deploy/docker-compose.yml: service %s is none of calcserver (build), nginx, redis", name)
		}
	}
	if c.calc == "" || c.nginx == "" || c.redis == "" {
		t.Fatalf("deploy/docker-compose.yml: want a calcserver (build), an nginx and a redis service; found %q", services.keys)
	}
	img := loadImage(t)
	for _, v := range services.get(c.calc, "volumes").strings() {
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
	for _, k := range c.doc.keys {
		if k != "name" && k != "services" {
			t.Errorf("deploy/docker-compose.yml: top-level key %s: the tests read only name and services", k)
		}
	}
	svc := func(name string) *yamlNode { return c.doc.get("services", name) }

	// calcserver: built from the Dockerfile, several replicas, the config mounted.
	calc := svc(c.calc)
	if got := calc.get("build", "context"); got == nil || filepath.Clean(filepath.Join(repoRoot(t), "deploy", got.value)) != repoRoot(t) {
		t.Errorf("deploy/docker-compose.yml: %s build.context must be the module root (..)", c.calc)
	}
	if got := calc.get("build", "dockerfile"); got == nil || got.value != "Dockerfile" {
		t.Errorf("deploy/docker-compose.yml: %s build.dockerfile must be Dockerfile", c.calc)
	}
	if calc.get("build", "args", "VERSION") == nil {
		t.Errorf("deploy/docker-compose.yml: %s build.args should pass VERSION", c.calc)
	}
	replicas := 0
	if n := calc.get("deploy", "replicas"); n != nil {
		replicas, _ = strconv.Atoi(n.value)
	}
	if replicas < 2 {
		t.Errorf("deploy/docker-compose.yml: %s deploy.replicas = %d, want several", c.calc, replicas)
	}
	if calc.get("ports") != nil || calc.get("container_name") != nil {
		t.Errorf("deploy/docker-compose.yml: %s cannot publish ports or name its container: it has %d replicas", c.calc, replicas)
	}
	if !slices.Contains(calc.get("expose").strings(), strconv.Itoa(port)) {
		t.Errorf("deploy/docker-compose.yml: %s expose %q, want the image's port %d", c.calc, calc.get("expose").strings(), port)
	}
	if calc.get("healthcheck") != nil {
		t.Errorf("deploy/docker-compose.yml: %s must inherit the image's HEALTHCHECK, not define its own", c.calc)
	}
	if env := calc.get("environment"); env != nil {
		if v := env.get("CALC_CONFIG"); v != nil && v.value != img.configPath {
			t.Errorf("deploy/docker-compose.yml: CALC_CONFIG=%s, but the configuration is mounted on %s", v.value, img.configPath)
		}
	}
	cfg := loadConfig(t, c.configSource)
	if cfg.Port != port {
		t.Errorf("%s: Port %d, but the image EXPOSEs and health-checks %d", c.configSource, cfg.Port, port)
	}
	if cfg.LogLocation != "" {
		t.Errorf("%s: LogLocation %q: log to stderr, for docker compose logs", c.configSource, cfg.LogLocation)
	}
	grace := calc.get("stop_grace_period")
	if grace == nil {
		t.Fatalf("deploy/docker-compose.yml: %s has no stop_grace_period (compose's default is 10 s)", c.calc)
	}
	d, err := time.ParseDuration(grace.value)
	if err != nil {
		t.Fatalf("deploy/docker-compose.yml: stop_grace_period %q: %v", grace.value, err)
	}
	if d < stopTime(cfg) {
		t.Errorf("deploy/docker-compose.yml: stop_grace_period %v < ShutdownDelay + ShutdownTimeout = %v of %s", d, stopTime(cfg), c.configSource)
	}

	// The replicas share the compose file's Redis.
	if cfg.RedisHost != c.redis || (cfg.RedisPort != 0 && cfg.RedisPort != 6379) {
		t.Errorf("%s: RedisHost %q RedisPort %d, want the compose service %q on 6379", c.configSource, cfg.RedisHost, cfg.RedisPort, c.redis)
	}
	checkDependsOn(t, c, c.calc, c.redis)
	if svc(c.redis).get("healthcheck", "test") == nil {
		t.Errorf("deploy/docker-compose.yml: %s needs a healthcheck: %s waits for it to be healthy", c.redis, c.calc)
	}

	// nginx: its configuration beside this file, read-only, in front of the replicas.
	ngx := svc(c.nginx)
	if !slices.Contains(ngx.get("volumes").strings(), "./nginx.conf:/etc/nginx/nginx.conf:ro") {
		t.Errorf("deploy/docker-compose.yml: %s must mount ./nginx.conf:/etc/nginx/nginx.conf:ro, found %q", c.nginx, ngx.get("volumes").strings())
	}
	checkDependsOn(t, c, c.nginx, c.calc)
	listen := nginxListenPort(t)
	published := false
	for _, p := range ngx.get("ports").strings() {
		parts := strings.Split(p, ":")
		if parts[len(parts)-1] == strconv.Itoa(listen) {
			published = true
		}
	}
	if !published {
		t.Errorf("deploy/docker-compose.yml: %s ports %q publish nothing on nginx.conf's listen port %d", c.nginx, ngx.get("ports").strings(), listen)
	}
}

// checkDependsOn checks that service from starts once service to is healthy.
func checkDependsOn(t *testing.T, c compose, from, to string) {
	t.Helper()
	cond := c.doc.get("services", from, "depends_on", to, "condition")
	if cond == nil || cond.value != "service_healthy" {
		t.Errorf("deploy/docker-compose.yml: %s must depend on %s with condition: service_healthy", from, to)
	}
}

// ---------------------------------------------------------------------------
// nginx.conf
// ---------------------------------------------------------------------------

func loadNginx(t *testing.T) []*ngxDirective {
	t.Helper()
	ds, err := parseNginx(readFile(t, "deploy/nginx.conf"))
	if err != nil {
		t.Fatalf("deploy/nginx.conf: %v", err)
	}
	return ds
}

func nginxHTTP(t *testing.T, ds []*ngxDirective) []*ngxDirective {
	t.Helper()
	http := ngxFind(ds, "http")
	if len(http) != 1 || http[0].block == nil {
		t.Fatal("deploy/nginx.conf: want one http block")
	}
	return http[0].block
}

func nginxListenPort(t *testing.T) int {
	t.Helper()
	servers := ngxFind(nginxHTTP(t, loadNginx(t)), "server")
	if len(servers) != 1 {
		t.Fatalf("deploy/nginx.conf: want one server block, found %d", len(servers))
	}
	listen := ngxFind(servers[0].block, "listen")
	if len(listen) != 1 || len(listen[0].args) == 0 {
		t.Fatal("deploy/nginx.conf: want one listen directive")
	}
	p, err := strconv.Atoi(listen[0].args[0])
	if err != nil {
		t.Fatalf("deploy/nginx.conf:%d: listen %s: want a bare port", listen[0].line, listen[0].args[0])
	}
	return p
}

// nginxSeconds reads an nginx time ("60s", "1m", "500ms", "30").
func nginxSeconds(s string) (time.Duration, error) {
	m := regexp.MustCompile(`^([0-9]+)(ms|s|m|h)?$`).FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("time %q: this reader knows ms, s, m and h", s)
	}
	n, _ := strconv.Atoi(m[1])
	unit := map[string]time.Duration{"": time.Second, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}[m[2]]
	return time.Duration(n) * unit, nil
}

func TestNginxConf(t *testing.T) {
	ds := loadNginx(t)
	http := nginxHTTP(t, ds)
	img := loadImage(t)
	c := loadCompose(t)
	port := img.port(t)
	cfg := loadConfig(t, c.configSource)

	locs := ngxFind(ngxFind(http, "server")[0].block, "location")
	if len(locs) != 1 || !slices.Equal(locs[0].args, []string{"/"}) {
		t.Fatal("deploy/nginx.conf: want one location / in the server block")
	}
	loc := locs[0].block
	one := func(name string) []string {
		t.Helper()
		d := ngxFind(loc, name)
		if len(d) != 1 {
			t.Fatalf("deploy/nginx.conf: want one %s in location /, found %d", name, len(d))
		}
		return d[0].args
	}
	pass := one("proxy_pass")
	name, ok := strings.CutPrefix(pass[0], "http://")
	if !ok {
		t.Fatalf("deploy/nginx.conf: proxy_pass %s: want http://<upstream>", pass[0])
	}

	var up *ngxDirective
	for _, u := range ngxFind(http, "upstream") {
		if len(u.args) == 1 && u.args[0] == name {
			up = u
		}
	}
	if up == nil {
		t.Fatalf("deploy/nginx.conf: proxy_pass names upstream %s, which is not defined", name)
	}
	// least_conn must come before keepalive, or nginx uses round robin under it.
	order := func(n string) int {
		return slices.IndexFunc(up.block, func(d *ngxDirective) bool { return d.name == n })
	}
	if order("least_conn") < 0 {
		t.Error("deploy/nginx.conf: the upstream needs least_conn")
	}
	if order("keepalive") < 0 {
		t.Error("deploy/nginx.conf: the upstream needs keepalive (connections kept open to the replicas)")
	} else if order("least_conn") > order("keepalive") {
		t.Error("deploy/nginx.conf: least_conn must come before keepalive")
	}
	servers := ngxFind(up.block, "server")
	if len(servers) == 0 {
		t.Fatal("deploy/nginx.conf: the upstream has no server")
	}
	for _, s := range servers {
		if s.args[0] != c.calc+":"+strconv.Itoa(port) {
			t.Errorf("deploy/nginx.conf:%d: server %s, want %s:%d (the compose service, the image's port)", s.line, s.args[0], c.calc, port)
		}
		params := map[string]string{}
		for _, a := range s.args[1:] {
			k, v, _ := strings.Cut(a, "=")
			params[k] = v
		}
		if n, err := strconv.Atoi(params["max_fails"]); err != nil || n < 1 {
			t.Errorf("deploy/nginx.conf:%d: passive health checks need max_fails >= 1", s.line)
		}
		if _, err := nginxSeconds(params["fail_timeout"]); err != nil {
			t.Errorf("deploy/nginx.conf:%d: passive health checks need fail_timeout: %v", s.line, err)
		}
	}

	// Keep-alive to the upstream: HTTP/1.1 and no Connection: close.
	if v := one("proxy_http_version"); !slices.Equal(v, []string{"1.1"}) {
		t.Errorf("deploy/nginx.conf: proxy_http_version %v, want 1.1 for keep-alive", v)
	}
	connCleared := false
	for _, d := range ngxFind(loc, "proxy_set_header") {
		if len(d.args) == 2 && strings.EqualFold(d.args[0], "Connection") && d.args[1] == "" {
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

	// What nginx itself thinks of the file, with the compose hostnames mapped to
	// loopback and every path it writes moved to a temporary directory.
	nginxSyntaxCheck(t, c)
}

// nginxSyntaxCheck runs nginx -t on a copy of the configuration.
func nginxSyntaxCheck(t *testing.T, c compose) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("nginx is not installed (bash scripts/deps.sh installs it): it checks deploy/nginx.conf with nginx -t")
	}
	dir := t.TempDir()
	var rewrite func(ds []*ngxDirective, upstream bool)
	rewrite = func(ds []*ngxDirective, upstream bool) {
		for _, d := range ds {
			switch {
			case upstream && d.name == "server":
				host, port, ok := strings.Cut(d.args[0], ":")
				if !ok || host != c.calc {
					t.Fatalf("deploy/nginx.conf:%d: upstream server %s is not the compose service", d.line, d.args[0])
				}
				d.args[0] = "127.0.0.1:" + port
			case d.name == "error_log" || d.name == "access_log" || d.name == "pid":
				d.args[0] = filepath.Join(dir, d.name+".out")
			}
			rewrite(d.block, d.name == "upstream")
		}
	}
	copied, err := parseNginx(readFile(t, "deploy/nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	rewrite(copied, false)
	var b strings.Builder
	b.WriteString("pid " + filepath.Join(dir, "nginx.pid") + ";\n")
	formatNginx(&b, copied, 0)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-t", "-q", "-p", dir+"/", "-e", filepath.Join(dir, "error.log"), "-c", conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := runWithin(cmd, 20*time.Second); err != nil {
		t.Fatalf("nginx -t rejects deploy/nginx.conf (hostnames mapped to 127.0.0.1): %v\n%s\n--- as tested:\n%s", err, out.String(), b.String())
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
