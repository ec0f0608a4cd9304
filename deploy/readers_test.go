package deploy_test

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// The readers of parse_test.go are only worth their checks if they read what they
// accept correctly and refuse what they do not know.

func TestReadDockerfile(t *testing.T) {
	ins, err := parseDockerfile(`# syntax=docker/dockerfile:1
FROM --platform=$BUILDPLATFORM golang:1.26-alpine AS build
RUN --mount=type=cache,target=/a \
    # a comment inside a continued instruction
    --mount=type=cache,target=/b \
    echo one && \
    echo two
HEALTHCHECK --interval=5s --retries=2 CMD ["wget", "-q", "http://127.0.0.1/healthcheck"]
healthcheck CMD wget -q http://127.0.0.1/healthcheck || exit 1
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 4 {
		t.Fatalf("got %d instructions, want 4: %+v", len(ins), ins)
	}
	if ins[0].cmd != "FROM" || ins[0].args != "golang:1.26-alpine AS build" || !slices.Equal(ins[0].flag("platform"), []string{"$BUILDPLATFORM"}) {
		t.Errorf("FROM: %+v", ins[0])
	}
	if ins[1].line != 3 || !slices.Equal(ins[1].flag("mount"), []string{"type=cache,target=/a", "type=cache,target=/b"}) || ins[1].args != "echo one &&  echo two" {
		t.Errorf("RUN: %+v", ins[1])
	}
	h, err := parseHealthcheck(ins[2])
	if err != nil || h.shell || h.interval != 5*time.Second || h.retries != 2 || h.timeout != 30*time.Second ||
		!slices.Equal(h.command(), []string{"wget", "-q", "http://127.0.0.1/healthcheck"}) {
		t.Errorf("exec form: %+v, %v", h, err)
	}
	h, err = parseHealthcheck(ins[3])
	if err != nil || !h.shell || !slices.Equal(h.command(), []string{"/bin/sh", "-c", "wget -q http://127.0.0.1/healthcheck || exit 1"}) {
		t.Errorf("shell form: %+v, %v", h, err)
	}
	if h.url(t).Path != "/healthcheck" {
		t.Errorf("url: %v", h.url(t))
	}

	for _, bad := range []string{
		"FROM alpine\nRUN <<EOF\necho\nEOF\n",
		"# escape=`\nFROM alpine\n",
		"FROM alpine\nRUN echo \\\n",
		"FROM alpine\nRUN echo \\\n\necho\n",
		"FORM alpine\n",
	} {
		if _, err := parseDockerfile(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	if _, err := parseHealthcheck(instruction{cmd: "HEALTHCHECK", args: "NONE"}); err == nil {
		t.Error("HEALTHCHECK NONE accepted")
	}
}

func TestReadShellCommands(t *testing.T) {
	cmds, err := shellCommands(`set -eux; CGO_ENABLED=0 GOOS=$TARGETOS go build -ldflags "-s -w -X main.version=${VERSION}" -o /out/x ./cmd/x && echo 'a b' "" ${UNSET:-def}`,
		map[string]string{"TARGETOS": "linux", "VERSION": "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 3 {
		t.Fatalf("got %d commands: %+v", len(cmds), cmds)
	}
	if !slices.Equal(cmds[0].argv, []string{"set", "-eux"}) {
		t.Errorf("%q", cmds[0].argv)
	}
	if cmds[1].env["CGO_ENABLED"] != "0" || cmds[1].env["GOOS"] != "linux" ||
		!slices.Equal(cmds[1].argv, []string{"go", "build", "-ldflags", "-s -w -X main.version=v1", "-o", "/out/x", "./cmd/x"}) {
		t.Errorf("%+v", cmds[1])
	}
	if !slices.Equal(cmds[2].argv, []string{"echo", "a b", "", "def"}) {
		t.Errorf("%q", cmds[2].argv)
	}
	for _, bad := range []string{"echo $(date)", "echo `date`", "sleep 1 &", `echo "open`, "(cd /; ls)"} {
		if _, err := shellCommands(bad, nil); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestReadDockerignore(t *testing.T) {
	ps, err := parseDockerignore("# comment\n*\n!go.mod\n!cmd/\n**/*_test.go\n!/deploy/server.ini\n/bin\n")
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"README.md": true, ".git/config": true, "go.mod": false, "cmd/x/main.go": false,
		"cmd/x/main_test.go": true, "main_test.go": true, "deploy/server.ini": false,
		"deploy/other.ini": true, "bin/x": true,
	} {
		if got := ignored(ps, path); got != want {
			t.Errorf("ignored(%s) = %v, want %v", path, got, want)
		}
	}
}

func TestReadYAML(t *testing.T) {
	doc, err := parseYAML(`# top
name: x
services:
  a:
    image: "nginx:1" # trailing comment
    command: ["redis-server", "--save", "", 'it''s']
    ports:
      - "8080:80"
      - 9090:90
    deploy:
      replicas: 3
`)
	if err != nil {
		t.Fatal(err)
	}
	a := doc.get("services", "a")
	if a.get("image").value != "nginx:1" || a.get("deploy", "replicas").value != "3" ||
		!slices.Equal(a.get("command").strings(), []string{"redis-server", "--save", "", "it's"}) ||
		!slices.Equal(a.get("ports").strings(), []string{"8080:80", "9090:90"}) {
		t.Errorf("misread: %+v", a)
	}
	if doc.get("services", "b") != nil || doc.get("name", "x") != nil {
		t.Error("get of a missing key is not nil")
	}
	for _, bad := range []string{
		"a: &x 1\n", "a: *x\n", "a: !!str 1\n", "a: |\n  text\n", "a: {b: 1}\n", "---\na: 1\n",
		"a:\n\tb: 1\n", "a: 1\na: 2\n", "a:\n  - b: 1\n", "a:\n", "a: 1\n  b: 2\n",
		"a: [b, [c]]\n", `a: "x" y` + "\n", "a:\n  b: 1\n c: 2\n", "a: b: c\n",
	} {
		if _, err := parseYAML(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestReadNginx(t *testing.T) {
	src := `# c
events { }
http {
    upstream u { least_conn; server h:80 max_fails=3; }
    server {
        location / { proxy_set_header Connection ""; proxy_pass http://u; } # c
    }
}
`
	ds, err := parseNginx(src)
	if err != nil {
		t.Fatal(err)
	}
	http := ngxFind(ds, "http")[0].block
	up := ngxFind(http, "upstream")[0]
	if !slices.Equal(up.args, []string{"u"}) || !slices.Equal(ngxFind(up.block, "server")[0].args, []string{"h:80", "max_fails=3"}) {
		t.Errorf("upstream: %+v", up)
	}
	loc := ngxFind(ngxFind(http, "server")[0].block, "location")[0]
	if h := ngxFind(loc.block, "proxy_set_header")[0]; !slices.Equal(h.args, []string{"Connection", ""}) {
		t.Errorf("proxy_set_header: %q", h.args)
	}
	if ev := ngxFind(ds, "events")[0]; ev.block == nil {
		t.Error("an empty block reads as a simple directive")
	}
	// What formatNginx writes reads back the same.
	var b strings.Builder
	formatNginx(&b, ds, 0)
	again, err := parseNginx(b.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	var b2 strings.Builder
	formatNginx(&b2, again, 0)
	if b.String() != b2.String() {
		t.Errorf("round trip differs:\n%s\n%s", b.String(), b2.String())
	}
	for _, bad := range []string{"a b", "a { b; ", "a; }", `a "b;`, "{ a; }", "a b#c;"} {
		if _, err := parseNginx(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	for s, want := range map[string]time.Duration{"60s": time.Minute, "1m": time.Minute, "500ms": 500 * time.Millisecond, "30": 30 * time.Second} {
		if got, err := nginxSeconds(s); err != nil || got != want {
			t.Errorf("nginxSeconds(%s) = %v, %v", s, got, err)
		}
	}
}
