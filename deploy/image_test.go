package deploy_test

// The image without Docker: the binary is built the way the Dockerfile builds it, from
// the files the .dockerignore lets into the build context, and then run the way the
// image runs it — alone in an empty root, and as the image's user with its file
// capability, next to busybox, in a network namespace of its own where the
// Dockerfile's HEALTHCHECK and the ECS task's healthCheck are run against it.

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/patternmatcher"

	"github.com/unicorn-rentals/unicorn/internal/config"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// testVersion is stamped into the binary the tests build, as VERSION would be.
const testVersion = "deploy-test"

// shared holds what several tests use: the build context, the binary built from it.
var shared struct {
	dir  string // removed by TestMain
	once sync.Once
	ctx  string // the build context as Docker would see it
	bin  string // the binary, as the Dockerfile's build stage builds it
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "calcserver-deploy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test must run as root (as CI runs it): it uses chroot, network namespaces, mknod and file capabilities")
	}
}

// imageBinary builds the binary once per run, as the Dockerfile does; see buildImage.
func imageBinary(t *testing.T) (bin, ctx string) {
	t.Helper()
	shared.once.Do(func() {
		shared.err = errors.New("the build stopped in an earlier test")
		shared.ctx, shared.bin, shared.err = buildImage(t)
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.bin, shared.ctx
}

// buildImage copies the module into a build context as the .dockerignore filters it,
// lays out the build stage from the Dockerfile's WORKDIR and COPY lines, and runs the
// Dockerfile's go build there with its flags and environment.
func buildImage(t *testing.T) (ctx, bin string, err error) {
	root := repoRoot(t)
	img := loadImage(t)
	patterns, err := parseDockerignore(readFile(t, ".dockerignore"))
	if err != nil {
		return "", "", err
	}
	ctx = filepath.Join(shared.dir, "context")
	if err := copyContext(root, ctx, patterns); err != nil {
		return "", "", fmt.Errorf("copying the build context: %v", err)
	}

	stage := filepath.Join(shared.dir, "build-stage")
	workdir := "/"
	for _, cmd := range img.build.Commands {
		switch c := cmd.(type) {
		case *instructions.WorkdirCommand:
			if !path.IsAbs(c.Path) {
				return "", "", fmt.Errorf("Dockerfile:%d: WORKDIR %s: use an absolute path", line(c), c.Path)
			}
			workdir = c.Path
		case *instructions.AddCommand:
			return "", "", fmt.Errorf("Dockerfile:%d: the build stage should COPY from the context only", line(c))
		case *instructions.CopyCommand:
			if c.From != "" || len(c.SourceContents) > 0 {
				return "", "", fmt.Errorf("Dockerfile:%d: the build stage should COPY from the context only", line(c))
			}
			dest := c.DestPath
			intoDir := strings.HasSuffix(dest, "/") || len(c.SourcePaths) > 1
			if !path.IsAbs(dest) {
				dest = path.Join(workdir, dest)
			}
			for _, src := range c.SourcePaths {
				if err := dockerCopy(ctx, src, filepath.Join(stage, filepath.FromSlash(dest)), intoDir); err != nil {
					return "", "", fmt.Errorf("Dockerfile:%d: COPY %s: %v", line(c), src, err)
				}
			}
		}
	}

	b := goBuildCommand(t, testVersion)
	argv := append([]string(nil), b.argv...)
	for i, a := range argv {
		if a == "-o" && i+1 < len(argv) && path.IsAbs(argv[i+1]) {
			bin = filepath.Join(stage, filepath.FromSlash(argv[i+1]))
			argv[i+1] = bin
		}
	}
	if bin == "" {
		return "", "", fmt.Errorf("Dockerfile:%d: go build needs -o /absolute/path", b.line)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = filepath.Join(stage, filepath.FromSlash(workdir))
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "GOFLAGS" && k != "GOWORK" && b.env[k] == "" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GOFLAGS=-mod=readonly", "GOWORK=off")
	for k, v := range b.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := runWithin(cmd, 5*time.Minute); err != nil {
		return "", "", fmt.Errorf("the Dockerfile's build (%q in the build context) fails: %v\n%s", argv, err, out.String())
	}
	return ctx, bin, nil
}

// copyContext copies the files of root that the .dockerignore patterns do not leave
// out into ctx.
func copyContext(root, ctx string, patterns *patternmatcher.PatternMatcher) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if skipDir(patterns, rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if ignored(patterns, rel) {
			return nil
		}
		dst := filepath.Join(ctx, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		case d.Type().IsRegular():
			return copyFile(p, dst, 0)
		}
		return nil
	})
}

// dockerCopy copies the context path src to dst as COPY does: a file to dst (or into
// it when dst is a directory), a directory's contents into dst.
func dockerCopy(ctx, src, dst string, intoDir bool) error {
	if strings.ContainsAny(src, "*?[") {
		return errors.New("wildcards are not supported by this test")
	}
	from := filepath.Join(ctx, filepath.FromSlash(path.Clean(src)))
	st, err := os.Stat(from)
	if err != nil {
		return fmt.Errorf("not in the build context (see .dockerignore): %v", err)
	}
	if !st.IsDir() {
		if intoDir {
			dst = filepath.Join(dst, filepath.Base(from))
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return copyFile(from, dst, 0)
	}
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		return copyFile(p, to, 0)
	})
}

// copyFile copies a regular file; mode 0 keeps the source's permissions.
func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if mode == 0 {
		st, err := in.Stat()
		if err != nil {
			return err
		}
		mode = st.Mode().Perm()
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// checkStatic fails unless bin is a static executable: no program interpreter (the
// dynamic loader, which Alpine's musl has at another path than glibc), no dynamic
// section, no shared library needed.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s is not static: it has a %v program header", bin, p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v (%v)", bin, libs, err)
	}
}

func TestImageBuildsFromItsContext(t *testing.T) {
	img := loadImage(t)
	patterns, err := parseDockerignore(readFile(t, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".git/HEAD", ".git", "bin/calcserver", "calcserver", "calcserver.log",
		"cmd/calcserver/calcserver.log", "node_modules/x/index.js", "cover.out", "deploy.test",
		"internal/config/config_test.go", "testdata/x.ini", "internal/x/testdata/y", ".env",
		"README.md", "deploy/docker-compose.yml", "deploy/ecs-server.ini"} {
		if !ignored(patterns, p) {
			t.Errorf(".dockerignore lets %s into the build context", p)
		}
	}
	for _, p := range []string{"go.mod", "go.sum", "cmd/calcserver/main.go", "internal/config/config.go", img.configSource} {
		if ignored(patterns, p) {
			t.Errorf(".dockerignore leaves out %s, which the build needs", p)
		}
	}

	bin, ctx := imageBinary(t)
	checkStatic(t, bin)
	if st, err := os.Stat(bin); err == nil {
		t.Logf("static binary: %.1f MB", float64(st.Size())/1e6)
	}
	out, err := exec.Command(bin, "-version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "calcserver "+testVersion {
		t.Errorf("%s -version: %q, %v; want calcserver %s (stamped from ARG VERSION)", bin, out, err, testVersion)
	}
	if _, err := os.Stat(filepath.Join(ctx, filepath.FromSlash(img.configSource))); err != nil {
		t.Errorf("the final stage copies %s, which is not in the build context: %v", img.configSource, err)
	}

	// The final stage takes the binary from where the build stage wrote it.
	b := goBuildCommand(t, testVersion)
	out0 := flagAfter(b.argv, "-o")
	found := false
	for _, cmd := range img.final.Commands {
		run, ok := cmd.(*instructions.RunCommand)
		if !ok {
			continue
		}
		for _, m := range instructions.GetMounts(run) {
			if m.Type != instructions.MountTypeBind || m.From != img.build.Name {
				continue
			}
			if path.Clean(m.Source) != path.Dir(out0) {
				t.Errorf("Dockerfile:%d: mounts %s from the build stage, but go build writes %s", line(run), m.Source, out0)
			}
			cmds, err := img.final.runCommands(run)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cmds {
				if len(c.argv) >= 3 && c.argv[0] == "install" {
					found = true
					src, dst := c.argv[len(c.argv)-2], c.argv[len(c.argv)-1]
					if src != path.Join(m.Target, path.Base(out0)) || dst != img.binaryPath {
						t.Errorf("Dockerfile:%d: install %s %s, want install %s %s", line(run), src, dst, path.Join(m.Target, path.Base(out0)), img.binaryPath)
					}
				}
			}
		}
	}
	if !found {
		t.Error("Dockerfile: the final stage does not install the binary from a bind mount of the build stage")
	}
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

// proc is a started process whose output is collected.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *svctest.Buffer
	done chan struct{}
	err  error // cmd.Wait's, once done is closed
}

// start starts cmd and makes sure it is gone when the test ends.
func start(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, out: &svctest.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.WaitDelay = 2 * time.Second
	if err := svctest.Spawn(cmd); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitOutput waits until the output contains s; it fails if the process exits first
// or d passes.
func (p *proc) waitOutput(t *testing.T, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.out.String(), s) {
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) before printing %q:\n%s", p.name, p.err, s, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q within %v:\n%s", p.name, s, d, p.out.String())
		}
	}
}

// exit waits for the process to end, at most d, and returns its exit error.
func (p *proc) exit(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("%s did not exit within %v:\n%s", p.name, d, p.out.String())
		return nil
	}
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling %s: %v", p.name, err)
	}
}

// ---------------------------------------------------------------------------
// The binary alone
// ---------------------------------------------------------------------------

var startedPortRE = regexp.MustCompile(`msg="calcserver started".* port=(\d+)`)

// TestStaticBinaryInEmptyRoot runs the binary in a root that holds nothing else — no
// libc, no /etc, no /dev — with no configuration and no environment, as an
// unprivileged user, and asks its /healthcheck over loopback.
func TestStaticBinaryInEmptyRoot(t *testing.T) {
	requireRoot(t)
	bin, _ := imageBinary(t)
	checkStatic(t, bin)
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(bin, filepath.Join(root, "calcserver"), 0o755); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 1 {
		t.Fatalf("the root holds %d entries, want the binary alone", len(entries))
	}

	cmd := exec.Command("/calcserver", "-port", "0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: 10001, Gid: 10001}}
	cmd.Dir = "/"
	cmd.Env = []string{} // no CALC_CONFIG: the built-in defaults
	p := start(t, "calcserver in an empty root", cmd)
	p.waitOutput(t, "calcserver started", 15*time.Second)
	m := startedPortRE.FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("no port in the startup line:\n%s", p.out.String())
	}

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://127.0.0.1:" + m[1] + healthPath)
	if err != nil {
		t.Fatalf("GET %s: %v\n%s", healthPath, err, p.out.String())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var h struct{ Status, Version string }
	if resp.StatusCode != 200 || json.Unmarshal(body, &h) != nil || h.Status != "ok" || h.Version != testVersion {
		t.Fatalf("GET %s: %d %s, want 200 with status ok and version %s", healthPath, resp.StatusCode, body, testVersion)
	}
	if !strings.Contains(p.out.String(), `config="(built-in defaults)"`) {
		t.Errorf("the server did not run on its built-in defaults:\n%s", p.out.String())
	}

	p.signal(t, syscall.SIGTERM)
	if err := p.exit(t, 10*time.Second); err != nil {
		t.Fatalf("after SIGTERM: %v, want exit 0:\n%s", err, p.out.String())
	}
}

// ---------------------------------------------------------------------------
// The image's health checks, in a root like the image's
// ---------------------------------------------------------------------------

// alpinePath is the PATH of the alpine image.
const alpinePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// busybox is where Debian's busybox-static installs it; the tests need it static, as
// it runs alone in the test root.
const busybox = "/bin/busybox"

// imageRoot lays out a root like the image's: busybox and its applets, /etc/hosts,
// /dev/null, the image's configuration, and the binary with the Dockerfile's file
// capability, at the Dockerfile's paths.
func imageRoot(t *testing.T, img image, bin, ctx string) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"", "bin", "etc", "dev", path.Dir(img.binaryPath), path.Dir(img.configPath)} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "tmp"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}

	if _, err := os.Stat(busybox); err != nil {
		t.Fatalf("%s is missing: install busybox-static (bash scripts/deps.sh): the image's health check is run by busybox", busybox)
	}
	f, err := elf.Open(busybox)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("%s is not static: install busybox-static (bash scripts/deps.sh)", busybox)
		}
	}
	f.Close()
	if err := copyFile(busybox, filepath.Join(root, "bin", "busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "hosts"), []byte("127.0.0.1\tlocalhost\n::1\tlocalhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	null := filepath.Join(root, "dev", "null")
	if err := syscall.Mknod(null, syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		t.Fatalf("mknod /dev/null: %v", err)
	}
	if err := os.Chmod(null, 0o666); err != nil {
		t.Fatal(err)
	}

	if err := copyFile(filepath.Join(ctx, filepath.FromSlash(img.configSource)), filepath.Join(root, img.configPath), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(root, img.binaryPath)
	if err := copyFile(bin, dst, 0o755); err != nil {
		t.Fatal(err)
	}
	caps, err := fileCapability(img.setcap)
	if err != nil {
		t.Fatalf("Dockerfile: setcap %q: %v", img.setcap, err)
	}
	if err := syscall.Setxattr(dst, "security.capability", caps, 0); err != nil {
		t.Fatalf("setting the file capability on %s: %v", dst, err)
	}
	return root
}

// fileCapability encodes the security.capability attribute setcap writes for the
// Dockerfile's "setcap cap_net_bind_service=+ep PATH": VFS_CAP_REVISION_2 with the
// effective flag, CAP_NET_BIND_SERVICE (10) permitted, nothing inheritable.
func fileCapability(setcap []string) ([]byte, error) {
	if len(setcap) != 2 || setcap[0] != "cap_net_bind_service=+ep" {
		return nil, errors.New("this test knows only cap_net_bind_service=+ep")
	}
	const (
		revision2 = 0x02000000
		effective = 0x000001
		netBind   = 10
	)
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], revision2|effective)
	binary.LittleEndian.PutUint32(b[4:], 1<<netBind) // permitted, low word
	return b, nil
}

// netns is a network namespace of the test's own, kept alive by a sleeping process.
type netns struct {
	path string // /proc/PID/ns/net
	root string // the image-like root commands run in
	env  []string
}

func newNetns(t *testing.T, root string, env []string) *netns {
	t.Helper()
	holder := start(t, "the namespace holder", exec.Command("unshare", "--net", "--", "sleep", "600"))
	n := &netns{path: fmt.Sprintf("/proc/%d/ns/net", holder.cmd.Process.Pid), root: root, env: env}
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ns, err := os.Readlink(n.path); err == nil && ns != self {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unshare --net did not enter a new network namespace:\n%s", holder.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return n
}

// command runs argv inside the namespace and the root, as uid:gid (uid < 0: root);
// nnp sets no_new_privs first, as docker run --security-opt no-new-privileges does.
func (n *netns) command(uid, gid int, nnp bool, env []string, argv ...string) *exec.Cmd {
	args := []string{"--net=" + n.path, "--root=" + n.root}
	if uid >= 0 {
		args = append(args, "--setuid", strconv.Itoa(uid), "--setgid", strconv.Itoa(gid))
	}
	args = append(append(args, "--"), argv...)
	name := "nsenter"
	if nnp {
		name, args = "setpriv", append([]string{"--no-new-privs", "--", "nsenter"}, args...)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = n.root // nsenter keeps the working directory: the new root's /
	cmd.Env = append(append([]string(nil), n.env...), env...)
	return cmd
}

// host runs a command of the host (not in the root) inside the namespace, as root.
func (n *netns) host(t *testing.T, argv ...string) string {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=" + n.path, "--"}, argv...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := runWithin(cmd, 10*time.Second); err != nil {
		t.Fatalf("%q in the namespace: %v\n%s", argv, err, out.String())
	}
	return out.String()
}

// check runs a health check the way the runtime does, in the namespace and the root,
// as the image's user, killed after its timeout; it returns the exit code (-1 for a
// timeout) and the output.
func (n *netns) check(img image, h healthCheck) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	c := n.command(img.uid, img.gid, false, nil, h.command()...)
	cmd := exec.CommandContext(ctx, c.Path, c.Args[1:]...)
	cmd.Dir, cmd.Env, cmd.WaitDelay = c.Dir, c.Env, time.Second
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return -1, fmt.Sprintf("timed out after %v: %s", h.timeout, out)
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	return -2, err.Error()
}

// server starts the image's entrypoint in the namespace as the image's user.
func (n *netns) server(t *testing.T, img image, name string, nnp bool, env ...string) *proc {
	t.Helper()
	return start(t, name, n.command(img.uid, img.gid, nnp, env, img.entrypoint...))
}

func TestImageHealthChecks(t *testing.T) {
	requireRoot(t)
	img := loadImage(t)
	bin, ctx := imageBinary(t)
	root := imageRoot(t, img, bin, ctx)
	cfg := img.config(t)
	env := []string{"PATH=" + alpinePath, "HOME=/", "HOSTNAME=calcserver"}
	for k, v := range img.env {
		env = append(env, k+"="+v)
	}
	ns := newNetns(t, root, env)
	up := exec.Command("nsenter", "--net="+ns.path, "--root="+root, "--", "/bin/ip", "link", "set", "lo", "up")
	up.Dir = root
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("busybox ip link set lo up: %v\n%s", err, out)
	}

	docker := img.health
	ecs := ecsHealthCheck(t, loadECS(t))
	// The same check in the exec form, which the runner must support as well.
	stages, err := parseDockerfile(fmt.Sprintf("FROM scratch\nHEALTHCHECK --timeout=%s CMD [\"wget\", \"-q\", \"-Y\", \"off\", \"-O\", \"/dev/null\", \"http://127.0.0.1:%d%s\"]\n",
		docker.timeout, img.port(t), healthPath), nil)
	if err != nil {
		t.Fatalf("exec form: %v", err)
	}
	hc, ok := stages[0].Commands[0].(*instructions.HealthCheckCommand)
	if !ok {
		t.Fatalf("exec form: read as %T", stages[0].Commands[0])
	}
	execForm, err := parseHealthcheck(hc)
	if err != nil || execForm.shell {
		t.Fatalf("exec form: %v %+v", err, execForm)
	}
	checks := []healthCheck{docker, execForm, ecs}
	expect := func(when string, healthy bool) {
		t.Helper()
		for _, h := range checks {
			code, out := ns.check(img, h)
			if healthy && code != 0 {
				t.Errorf("%s: %q exits %d, want 0 (healthy):\n%s", when, h.command(), code, out)
			}
			if !healthy && code == 0 {
				t.Errorf("%s: %q exits 0, want non-zero (unhealthy):\n%s", when, h.command(), out)
			}
		}
	}

	// Nothing listens yet.
	expect("before the server starts", false)

	// The image as it runs: its user, its file capability, its configuration, port 80.
	if v := strings.TrimSpace(ns.host(t, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start")); v != "1024" {
		t.Fatalf("a new network namespace has ip_unprivileged_port_start %s, want the kernel's 1024", v)
	}
	srv := ns.server(t, img, "calcserver as the image's user", false)
	srv.waitOutput(t, "calcserver started", 15*time.Second)
	if !strings.Contains(srv.out.String(), "port="+strconv.Itoa(img.port(t))) || !strings.Contains(srv.out.String(), "config="+img.configPath) {
		t.Fatalf("the server does not run on port %d with %s:\n%s", img.port(t), img.configPath, srv.out.String())
	}
	expect("while the server runs", true)
	code, body := ns.check(img, healthCheck{source: "wget -O -", argv: []string{"wget", "-q", "-Y", "off", "-O", "-", "http://127.0.0.1" + healthPath}, timeout: 3 * time.Second})
	var h struct{ Status, Version string }
	if code != 0 || json.Unmarshal([]byte(body), &h) != nil || h.Status != "ok" || h.Version != testVersion {
		t.Errorf("busybox wget %s: exit %d, %q; want status ok, version %s", healthPath, code, body, testVersion)
	}

	// Stopped: SIGTERM drains and exits 0 well within the image's stop time; then
	// nothing answers.
	srv.signal(t, syscall.SIGTERM)
	if err := srv.exit(t, stopTime(cfg)+5*time.Second); err != nil {
		t.Fatalf("after SIGTERM: %v, want exit 0:\n%s", err, srv.out.String())
	}
	expect("after the server stopped", false)

	// With no_new_privs (docker run --security-opt no-new-privileges) the kernel ignores
	// the file capability, and port 80 is refused while the namespace keeps the
	// kernel's ip_unprivileged_port_start (as on Fargate, or with --network host)...
	nnp := ns.server(t, img, "calcserver with no_new_privs", true)
	if err := nnp.exit(t, 15*time.Second); err == nil || !strings.Contains(nnp.out.String(), "permission denied") {
		t.Fatalf("with no_new_privs and ip_unprivileged_port_start 1024 the server should fail to bind port %d: %v\n%s", img.port(t), err, nnp.out.String())
	}
	// ...and allowed once the namespace sets it to 0, as Docker 20.10 and later do.
	ns.host(t, "/bin/sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start")

	// A configuration mounted over the image's (docker run -v) with a ShutdownDelay:
	// from SIGTERM on, /healthcheck answers 503 and the health check fails while the
	// server still serves.
	drain := regexp.MustCompile(`(?m)^ShutdownDelay\s*=.*$`).ReplaceAllString(readFile(t, img.configSource), "ShutdownDelay = 3s")
	if c, err := config.Parse("drain.ini", []byte(drain)); err != nil || c.ShutdownDelay != 3*time.Second {
		t.Fatalf("drain.ini: %v, ShutdownDelay %v", err, c.ShutdownDelay)
	}
	if err := os.WriteFile(filepath.Join(root, img.configPath), []byte(drain), 0o644); err != nil {
		t.Fatal(err)
	}
	nnp = ns.server(t, img, "calcserver with no_new_privs, port start 0", true)
	nnp.waitOutput(t, "calcserver started", 15*time.Second)
	expect("no_new_privs with ip_unprivileged_port_start 0", true)
	nnp.signal(t, syscall.SIGTERM)
	nnp.waitOutput(t, "shutdown begins", 5*time.Second)
	select {
	case <-nnp.done:
		t.Fatalf("the server exited before its ShutdownDelay:\n%s", nnp.out.String())
	default:
	}
	expect("while draining", false)
	select {
	case <-nnp.done:
		t.Fatalf("the server exited during the checks, so they did not see it draining:\n%s", nnp.out.String())
	default:
	}
	if err := nnp.exit(t, 3*time.Second+stopTime(cfg)+5*time.Second); err != nil {
		t.Fatalf("after SIGTERM: %v, want exit 0:\n%s", err, nnp.out.String())
	}
}
