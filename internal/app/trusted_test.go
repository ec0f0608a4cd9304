package app

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/unicorn-rentals/unicorn/internal/config"
	"github.com/unicorn-rentals/unicorn/internal/logging"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// TestTrustedProxiesReachTheAccessLog: the key is passed to the server, so the
// access log records the client a trusted balancer forwards.
func TestTrustedProxiesReachTheAccessLog(t *testing.T) {
	cfg, err := config.Parse("server.ini", []byte("TrustedProxies = 192.0.2.0/24\nMemoryCacheSize = 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &svctest.Buffer{}
	access, err := logging.NewAccess(logs, "logfmt")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{AccessLog: access})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	t.Cleanup(func() { _ = a.Chain.Close(context.Background()) })
	r := httptest.NewRequest("GET", "/", nil) // from 192.0.2.1:1234
	r.Header.Set("X-Forwarded-For", "203.0.113.9")
	a.Server.Handler().ServeHTTP(httptest.NewRecorder(), r)
	if !strings.Contains(logs.String(), "client=203.0.113.9 ") {
		t.Fatalf("access log %q: the forwarded client is not recorded", logs.String())
	}
}
