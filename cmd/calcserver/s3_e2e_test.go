package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// s3Env is the environment of a calcserver that reads its configuration from the S3
// fake: the host's variables without any AWS_* one (which could send the SDK elsewhere),
// the fake's, then extra (later entries win).
func s3Env(t *testing.T, f *svctest.S3Fake, extra ...string) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "CALC_CONFIG=") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	env = append(env, "HOME="+t.TempDir())
	env = append(env, f.Env()...)
	return append(env, extra...)
}

func TestEndToEndConfigFromS3(t *testing.T) {
	f := svctest.S3(t)
	f.CreateBucket(t, "unicorn-config")
	logDir := t.TempDir()
	ini := fmt.Sprintf("\"LogLocation\" = %q\nPort = 0\nWorkMode = sleep\nWorkTime = 10ms\nQueueSize = 9\n", logDir+"/")
	f.Put(t, "unicorn-config", "prod/server.ini", []byte(ini))
	f.Put(t, "unicorn-config", "typo.ini", []byte("Port = 0\nQueueSize = 7\nPrt = 80\n"))
	f.CreateBucket(t, "locked")
	f.Put(t, "locked", "server.ini", []byte(ini))
	f.Deny("locked")
	const url = "s3://unicorn-config/prod/server.ini"

	t.Run("the server starts from CALC_CONFIG and says where its configuration came from", func(t *testing.T) {
		p := launch(t, filepath.Join(logDir, "calcserver.log"), s3Env(t, f, "CALC_CONFIG="+url))
		if a := p.get(t, "GET", "/calc?input=testing"); a.code != 200 || !tokenRE.MatchString(a.body) {
			t.Fatalf("/calc: %d %q", a.code, a.body)
		}
		if a := p.get(t, "GET", "/healthcheck"); a.code != 200 || !strings.Contains(a.body, `"capacity":9`) {
			t.Fatalf("/healthcheck does not show the file's QueueSize: %d %s", a.code, a.body)
		}
		b, _ := os.ReadFile(p.logPath)
		if !strings.Contains(string(b), "config="+url) {
			t.Fatalf("the startup line does not name %s:\n%s", url, b)
		}
		p.terminate(t)
	})

	t.Run("-check reads an S3 location and prints its keys", func(t *testing.T) {
		code, stdout, stderr := runCmdEnv(t, s3Env(t, f), "-check", "-config", url)
		if code != 0 || !strings.Contains(stdout, `QueueSize = "9"`) || !strings.Contains(stderr, "configuration "+url+" test is successful") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
	})

	t.Run("-check names the S3 location and line of a bad key", func(t *testing.T) {
		code, _, stderr := runCmdEnv(t, s3Env(t, f), "-check", "-config", "s3://unicorn-config/typo.ini")
		if code != 1 || !strings.Contains(stderr, `s3://unicorn-config/typo.ini:3: unknown key "Prt" (did you mean "Port"?)`) ||
			!strings.Contains(stderr, "test failed") {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	failures := []struct {
		name string
		args []string
		env  []string
		says []string
	}{
		{"a missing key is NoSuchKey", []string{"-config", "s3://unicorn-config/prod/nope.ini"}, nil,
			[]string{"s3://unicorn-config/prod/nope.ini", "NoSuchKey", `"prod/nope.ini"`}},
		{"a missing bucket is NoSuchBucket", []string{"-config", "s3://unicorn-nope/server.ini"}, nil,
			[]string{"s3://unicorn-nope/server.ini", "NoSuchBucket", `"unicorn-nope"`}},
		{"a refused read is AccessDenied", []string{"-config", "s3://locked/server.ini"}, nil,
			[]string{"AccessDenied", "s3:GetObject"}},
		{"no credentials are said as such", []string{"-config", url},
			[]string{"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY="}, []string{"no AWS credentials found"}},
		{"an unreachable S3 is named", []string{"-config", url},
			[]string{"AWS_ENDPOINT_URL_S3=http://" + closed}, []string{"cannot reach S3", closed}},
		{"a location without a key is refused before any request", []string{"-config", "s3://unicorn-config"},
			[]string{"AWS_ENDPOINT_URL_S3=http://" + closed}, []string{"no key"}},
		{"-check fails the same way", []string{"-check", "-config", "s3://unicorn-config/prod/nope.ini"}, nil,
			[]string{"NoSuchKey", "test failed"}},
		{"CALC_CONFIG fails the same way", nil, []string{"CALC_CONFIG=s3://unicorn-nope/x.ini"}, []string{"NoSuchBucket"}},
		{"purge fails the same way", []string{"purge", "-config", "s3://unicorn-nope/x.ini", "-match", "x"}, nil, []string{"NoSuchBucket"}},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCmdEnv(t, s3Env(t, f, tc.env...), tc.args...)
			if code != 1 {
				t.Errorf("exit %d, want 1\n%s", code, stderr)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			// One line says what failed; -check adds its verdict line.
			if max := 1 + strings.Count(strings.Join(tc.args, " "), "-check"); len(lines) > max {
				t.Errorf("%d lines of stderr, want at most %d:\n%s", len(lines), max, stderr)
			}
			if strings.Contains(stderr, "operation error") || strings.Contains(stderr, "goroutine") {
				t.Errorf("stderr shows SDK internals:\n%s", stderr)
			}
			for _, s := range tc.says {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr does not say %q:\n%s", s, stderr)
				}
			}
		})
	}
}
