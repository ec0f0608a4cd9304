package fleet

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// bin is the calcserver binary of this package's tests, built once with -race.
var bin svctest.RaceBuild

func calcserver(t *testing.T) string {
	t.Helper()
	return bin.Path(t, "./cmd/calcserver")
}

func TestMain(m *testing.M) {
	code := m.Run()
	bin.Remove()
	os.Exit(code)
}

// startFleet starts a fleet for t in t's temporary directory and closes it when t ends.
func startFleet(t *testing.T, o Options) *Fleet {
	t.Helper()
	o.Calcserver = calcserver(t)
	o.Dir = t.TempDir()
	o.Log = tlog{t}
	f, err := Start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("close the fleet: %v", err)
		}
	})
	return f
}

// tlog writes progress lines to t.Log.
type tlog struct{ t *testing.T }

func (l tlog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// get sends GET url and returns the status, the X-Cache header and the body.
func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read the body: %v", url, err)
	}
	return resp.StatusCode, resp.Header.Get("X-Cache"), string(b)
}
