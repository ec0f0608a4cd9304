package calcproc

import (
	"net/http"
	"path/filepath"
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

	t.Run("a server that refuses its configuration is an error with what it said", func(t *testing.T) {
		_, err := Start(t.Context(), bin, t.TempDir(), "NoSuchKey = 1")
		if err == nil || !strings.Contains(err.Error(), "NoSuchKey") {
			t.Fatalf("Start: %v, want an error naming NoSuchKey", err)
		}
	})
}
