package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// listenErr is the error server.Open returns when net.Listen fails with errno.
func listenErr(port int, errno syscall.Errno) error {
	addr := ":" + strconv.Itoa(port)
	return fmt.Errorf("server: listen on %s: %w", addr,
		&net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", errno)})
}

func TestListenErrorHints(t *testing.T) {
	for _, c := range []struct {
		port    int
		errno   syscall.Errno
		want    []string
		notWant []string
	}{
		{80, syscall.EACCES, []string{"port 80", "permission denied", "CAP_NET_BIND_SERVICE", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "-port 8080", "Port = 8080 in server.ini"}, nil},
		{8080, syscall.EACCES, []string{"port 8080", "permission denied"}, []string{"CAP_NET_BIND_SERVICE", "below 1024"}},
		{8080, syscall.EADDRINUSE, []string{"port 8080", "address already in use", "another process holds port 8080", "-port"}, []string{"CAP_NET_BIND_SERVICE"}},
		{80, syscall.EADDRINUSE, []string{"another process holds port 80"}, []string{"CAP_NET_BIND_SERVICE"}},
		{80, syscall.EADDRNOTAVAIL, []string{"listen on :80", "cannot assign requested address"}, []string{"CAP_NET_BIND_SERVICE"}},
	} {
		got := listenError(c.port, listenErr(c.port, c.errno)).Error()
		if strings.Contains(got, "\n") {
			t.Errorf("port %d, %v: %q spans lines", c.port, c.errno, got)
		}
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("port %d, %v: %q lacks %q", c.port, c.errno, got, w)
			}
		}
		for _, w := range c.notWant {
			if strings.Contains(got, w) {
				t.Errorf("port %d, %v: %q has %q", c.port, c.errno, got, w)
			}
		}
	}
}

// The hint names the capability the systemd unit really grants.
func TestListenErrorNamesTheUnitsCapability(t *testing.T) {
	script, err := os.ReadFile("../../userdata/user-data.sh")
	if err != nil {
		t.Fatal(err)
	}
	const line = "AmbientCapabilities=CAP_NET_BIND_SERVICE"
	if !strings.Contains(string(script), line) {
		t.Fatalf("userdata/user-data.sh no longer has %s: update listenError's hint", line)
	}
}

// A port another process holds: exit code 1 and one line on stderr that names the
// port, not the same error twice.
func TestEndToEndOccupiedPort(t *testing.T) {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	code, stdout, stderr := runCmd(t, nil, "-port", strconv.Itoa(port))
	if code != exitRuntime {
		t.Errorf("exit code %d, want %d", code, exitRuntime)
	}
	if stdout != "" {
		t.Errorf("stdout %q, want nothing", stdout)
	}
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("stderr has %d lines, want 1:\n%s", len(lines), stderr)
	}
	for _, w := range []string{"calcserver: ", fmt.Sprintf("port %d", port), "address already in use", "another process"} {
		if !strings.Contains(lines[0], w) {
			t.Errorf("stderr %q lacks %q", lines[0], w)
		}
	}
}

// With a log file, the failure also goes to the log, and still once to stderr.
func TestEndToEndOccupiedPortLogsToTheFile(t *testing.T) {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	logPath := t.TempDir() + "/calc.log"
	ini := writeINI(t, fmt.Sprintf("Port = %d\nLogLocation = %s\n", port, logPath))
	code, _, stderr := runCmd(t, nil, "-config", ini)
	if code != exitRuntime {
		t.Errorf("exit code %d, want %d", code, exitRuntime)
	}
	if n := strings.Count(stderr, "address already in use"); n != 1 {
		t.Errorf("stderr names the error %d times, want 1:\n%s", n, stderr)
	}
	logs, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logs), "startup failed") || !strings.Contains(string(logs), fmt.Sprintf("port %d", port)) {
		t.Errorf("log lacks the failure:\n%s", logs)
	}
}
