package calcproc

import (
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

func TestStart(t *testing.T) {
	bin := svctest.BuildStatic(t, "./cmd/calcserver", "test")

	t.Run("a started server answers on the port its log names and stops cleanly on SIGTERM", func(t *testing.T) {
		p, err := Start(t.Context(), bin, t.TempDir(), "WorkMode = sleep\nWorkTime = 1ms\nShutdownTimeout = 1s")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get("http://" + p.Addr() + "/healthcheck")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/healthcheck: %s", resp.Status)
		}
		if err := p.Alive(); err != nil {
			t.Errorf("Alive while it runs: %v", err)
		}
		if err := p.Stop(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		if p.Alive() == nil {
			t.Error("Alive after Stop reports nil")
		}
		if filepath.Base(p.Log()) != LogName {
			t.Errorf("log %s, want %s", p.Log(), LogName)
		}
	})

	t.Run("StartPort listens on the port asked for, a taken port is ErrPortInUse, and Kill ends the server", func(t *testing.T) {
		held, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		port := held.Addr().(*net.TCPAddr).Port
		_, err = StartPort(t.Context(), bin, t.TempDir(), "WorkMode = sleep", port, nil)
		if !errors.Is(err, ErrPortInUse) {
			t.Fatalf("StartPort on a held port: %v, want ErrPortInUse", err)
		}
		held.Close()
		p, err := StartPort(t.Context(), bin, t.TempDir(), "WorkMode = sleep", port, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := "127.0.0.1:" + strconv.Itoa(port); p.Addr() != want {
			t.Errorf("Addr %s, want %s", p.Addr(), want)
		}
		if err := p.Kill(); err != nil {
			t.Fatal(err)
		}
		if p.Alive() == nil {
			t.Error("Alive after Kill reports nil")
		}
	})

	t.Run("a server that refuses its configuration is an error with what it said", func(t *testing.T) {
		_, err := Start(t.Context(), bin, t.TempDir(), "NoSuchKey = 1")
		if err == nil || !strings.Contains(err.Error(), "NoSuchKey") {
			t.Fatalf("Start: %v, want an error naming NoSuchKey", err)
		}
	})
}
