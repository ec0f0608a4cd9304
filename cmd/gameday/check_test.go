package main

import (
	"net"
	"regexp"
	"strings"
	"testing"
)

var checkLineRE = regexp.MustCompile(`(?m)^#\d+ +(CORRECT|INCORRECT|TIMEOUT) in +\d+\.\d\ds /calc\?input=\S+`)

func TestCheckPassesARealCalcserver(t *testing.T) {
	t.Parallel()
	url := startCalcserver(t)
	code, out, errOut := runCLI(t, false, "check", "-target", url, "-count", "3", "-interval", "50ms")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	lines := checkLineRE.FindAllStringSubmatch(out, -1)
	if len(lines) != 3 {
		t.Fatalf("%d request lines, want 3:\n%s", len(lines), out)
	}
	for _, l := range lines {
		if l[1] != "CORRECT" {
			t.Errorf("line %q", l[0])
		}
	}
	if !strings.Contains(out, "pass rate: 3/3 CORRECT (100%)") {
		t.Errorf("no pass rate:\n%s", out)
	}
}

func TestCheckFailsALyingServer(t *testing.T) {
	t.Parallel()
	url := startLiar(t)
	code, out, _ := runCLI(t, false, "check", "-target", url, "-count", "2", "-interval", "10ms")
	if code != exitRuntime {
		t.Errorf("exit %d, want 1", code)
	}
	if n := strings.Count(out, "INCORRECT in "); n != 2 || !strings.Contains(out, " 200 answer did not match for key ") {
		t.Errorf("%d INCORRECT lines:\n%s", n, out)
	}
	if !strings.Contains(out, "pass rate: 0/2 CORRECT (0%)") {
		t.Errorf("no pass rate:\n%s", out)
	}
}

func TestCheckReportsRefusalsAndTimeouts(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() }) // accepts (the kernel's backlog) but never answers
	code, out, _ := runCLI(t, false, "check", "-target", "http://"+ln.Addr().String(), "-count", "1", "-timeout", "200ms")
	if code != exitRuntime || !strings.Contains(out, "TIMEOUT in  0.2") || !strings.Contains(out, "no answer within 200ms") {
		t.Errorf("exit %d:\n%s", code, out)
	}

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := closed.Addr().String()
	closed.Close()
	code, out, _ = runCLI(t, false, "check", "-target", "http://"+addr, "-count", "1")
	if code != exitRuntime || !strings.Contains(out, "INCORRECT in ") || !strings.Contains(out, "connection refused") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestCheckFlagErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "-target: at least one base URL is required"},
		{[]string{"-target", "http://a,http://b"}, "-target http://a,http://b: check takes one base URL"},
		{[]string{"-target", "http://x", "-count", "0"}, "-count 0: must be > 0"},
		{[]string{"-target", "http://x", "-interval", "-1s"}, "-interval -1s: must be > 0"},
		{[]string{"-target", "http://x", "-interval", "0s"}, "-interval 0: must be > 0"},
		{[]string{"-target", "http://x", "-timeout", "0s"}, "-timeout 0: must be > 0"},
		{[]string{"-target", "http://x", "-format", "json"}, `-format "json": must be token or hash`},
		{[]string{"-target", "http://x", "-calc-version", "-2"}, "-calc-version -2: must be 1.."},
		{[]string{"-target", "http://x", "more"}, `unexpected argument "more"`},
	} {
		code, _, errOut := runCLI(t, false, append([]string{"check"}, c.args...)...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("check %q: exit %d, stderr %q; want %d and %q", c.args, code, errOut, exitUsage, c.want)
		}
	}
}
