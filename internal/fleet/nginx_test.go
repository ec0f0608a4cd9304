package fleet

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unicorn-rentals/unicorn/deploy"
)

func TestRenderNginx(t *testing.T) {
	c := nginxConfig{Prefix: "/srv/fleet/nginx", Listen: 28080, Upstreams: []int{18001, 18002, 18003}}

	t.Run("the deploy configuration becomes one upstream line per instance with the deploy file's parameters, on loopback, logging into the prefix", func(t *testing.T) {
		out, err := renderNginx(deploy.NginxConf, c)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"    server 127.0.0.1:18001 max_fails=3 fail_timeout=10s;\n        server 127.0.0.1:18002 max_fails=3 fail_timeout=10s;\n        server 127.0.0.1:18003 max_fails=3 fail_timeout=10s;\n",
			"listen 127.0.0.1:28080;",
			"worker_processes 2;",
			"pid /srv/fleet/nginx/nginx.pid;",
			"error_log /srv/fleet/nginx/error.log warn;",
			"access_log /srv/fleet/nginx/access.log upstream;",
			"proxy_temp_path /srv/fleet/nginx/temp/proxy;",
			"client_body_temp_path /srv/fleet/nginx/temp/client_body;",
			// What the fleet exists to measure stays as deployed.
			"least_conn;", "proxy_next_upstream error timeout;", "keepalive 64;",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("rendered configuration lacks %q:\n%s", want, out)
			}
		}
		for _, gone := range []string{"calcserver:80", "listen 80;", "/dev/stdout", "/dev/stderr", "worker_processes auto", "\nuser "} {
			if strings.Contains(out, gone) {
				t.Errorf("rendered configuration still has %q", gone)
			}
		}
	})

	t.Run("as root, the workers run as root's own user and group", func(t *testing.T) {
		c := c
		c.User = "root root"
		out, err := renderNginx(deploy.NginxConf, c)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "\nuser root root;") {
			t.Errorf("no user directive:\n%s", out)
		}
	})

	t.Run("nginx -t accepts the rendered configuration", func(t *testing.T) {
		bin, err := nginxBin("")
		if err != nil {
			t.Fatal(err)
		}
		usr, err := workerUser()
		if err != nil {
			t.Fatal(err)
		}
		prefix := t.TempDir()
		if err := os.Mkdir(filepath.Join(prefix, "temp"), 0o755); err != nil {
			t.Fatal(err)
		}
		c := nginxConfig{Prefix: prefix, Listen: 28080, Upstreams: []int{18001, 18002}, User: usr}
		out, err := renderNginx(deploy.NginxConf, c)
		if err != nil {
			t.Fatal(err)
		}
		conf := filepath.Join(prefix, "nginx.conf")
		if err := os.WriteFile(conf, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := exec.Command(bin, "-t", "-p", prefix+"/", "-c", conf, "-e", filepath.Join(prefix, "error.log")).CombinedOutput()
		if err != nil {
			t.Fatalf("%s -t -c %s: %v\n%s\n%s", bin, conf, err, b, out)
		}
	})

	// Each line the renderer replaces, missing or twice, must stop it with an error
	// that names the line, so a change of deploy/nginx.conf cannot slip through.
	for _, r := range rules {
		loc := r.re.FindStringIndex(deploy.NginxConf)
		if loc == nil {
			t.Fatalf("deploy/nginx.conf has no %s", r.what)
		}
		line := deploy.NginxConf[loc[0]:loc[1]]
		t.Run("a template without its "+r.what+" is refused", func(t *testing.T) {
			_, err := renderNginx(strings.Replace(deploy.NginxConf, line, "", 1), c)
			if err == nil || !strings.Contains(err.Error(), r.what) || !strings.Contains(err.Error(), "found 0 times") {
				t.Errorf("renderNginx: %v, want an error naming the %s found 0 times", err, r.what)
			}
		})
		t.Run("a template with its "+r.what+" twice is refused", func(t *testing.T) {
			_, err := renderNginx(strings.Replace(deploy.NginxConf, line, line+"\n"+line, 1), c)
			if err == nil || !strings.Contains(err.Error(), r.what) || !strings.Contains(err.Error(), "found 2 times") {
				t.Errorf("renderNginx: %v, want an error naming the %s found 2 times", err, r.what)
			}
		})
	}

	t.Run("a template without the upstream log format is refused", func(t *testing.T) {
		_, err := renderNginx(strings.Replace(deploy.NginxConf, "log_format upstream", "log_format other", 1), c)
		if err == nil || !strings.Contains(err.Error(), "log_format upstream") {
			t.Errorf("renderNginx: %v, want an error naming log_format upstream", err)
		}
	})

	t.Run("the upstream's fail_timeout and max_fails are read from the template", func(t *testing.T) {
		ft, mf, err := upstreamParams(deploy.NginxConf)
		if err != nil || ft.String() != "10s" || mf != 3 {
			t.Errorf("upstreamParams = %v, %d, %v; want 10s, 3 (deploy/nginx.conf)", ft, mf, err)
		}
	})
}

func TestParseAccessLine(t *testing.T) {
	line := `127.0.0.1 [29/Nov/2026:19:05:24 +0000] "GET /calc?input=SUNh%3D HTTP/1.1" 200 244 upstream=127.0.0.1:28256, 127.0.0.1:23391 upstream_status=502, 200 request_time=0.964 upstream_time=0.460, 0.504 cache=MISS`
	l, err := ParseAccessLine(line)
	if err != nil {
		t.Fatal(err)
	}
	if l.Status != 200 || l.Bytes != 244 || l.Cache != "MISS" || !l.Retried() || l.Answered() != "127.0.0.1:23391" ||
		strings.Join(l.UpstreamStatus, ",") != "502,200" || l.Request != "GET /calc?input=SUNh%3D HTTP/1.1" {
		t.Errorf("ParseAccessLine = %+v", l)
	}
	nolive := `127.0.0.1 [29/Nov/2026:19:02:22 +0000] "GET /calc?input=Mw%3D%3D HTTP/1.1" 502 157 upstream=calcserver upstream_status=502 request_time=0.000 upstream_time=0.000 cache=-`
	l, err = ParseAccessLine(nolive)
	if err != nil {
		t.Fatal(err)
	}
	if l.Status != 502 || l.Answered() != "calcserver" || l.Retried() {
		t.Errorf("ParseAccessLine(no live upstreams) = %+v", l)
	}
	if _, err := ParseAccessLine("127.0.0.1 - - [29/Nov/2026] combined format"); err == nil {
		t.Error("a line in another format parsed")
	}
}
