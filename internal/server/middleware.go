package server

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unicorn-rentals/unicorn/internal/logging"
)

// record is what a handler tells the access log about its request.
type record struct {
	key   string
	cache string
	wait  time.Duration
}

// recordOf returns the access-log record of the request answered through w. It rides
// on the response writer rather than the request context: a new context would copy
// the whole request on every call.
func recordOf(w http.ResponseWriter) *record {
	if sw, ok := w.(*statusWriter); ok {
		return &sw.rec
	}
	return &record{}
}

// statusWriter remembers the status and size of an answer.
type statusWriter struct {
	http.ResponseWriter
	code  int
	bytes int
	rec   record
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe wraps a handler with the access log line and the request metrics.
func (s *Server) observe(next http.Handler, name string) http.Handler {
	// The usual outcomes' counters are looked up once: WithLabelValues hashes its
	// labels and takes a lock on every call.
	// They also make the series start at 0: /calc's 200s come with a cache result,
	// the other handlers' without.
	results := []string{""}
	if name == "calc" {
		results = []string{hit, miss, shared}
	}
	ok := map[string]prometheus.Counter{}
	for _, c := range results {
		ok[c] = s.m.requests.WithLabelValues(name, "200", c)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cs, ok := r.Context().Value(connKey{}).(*connState); ok {
			cs.handled.Store(true)
		}
		start := time.Now()
		sw := writers.Get().(*statusWriter)
		*sw = statusWriter{ResponseWriter: w}
		defer writers.Put(sw)
		next.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		rec := &sw.rec
		if c, found := ok[rec.cache]; found && sw.code == http.StatusOK {
			c.Inc()
		} else {
			s.m.requests.WithLabelValues(name, statusText(sw.code), rec.cache).Inc()
		}
		if s.access == nil {
			return
		}
		client := r.RemoteAddr
		if len(s.o.TrustedProxies) > 0 {
			client = s.clientOf(r)
		}
		end := time.Now()
		s.access.Log(&logging.AccessRecord{
			Time:      end,
			Client:    client,
			Method:    r.Method,
			Path:      r.RequestURI,
			Key:       rec.key,
			Status:    sw.code,
			Bytes:     sw.bytes,
			Duration:  end.Sub(start),
			Cache:     rec.cache,
			QueueWait: rec.wait,
		})
	})
}

// writers holds statusWriters between requests.
var writers = sync.Pool{New: func() any { return new(statusWriter) }}

// statusText returns code as a label without allocating for the usual codes.
func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 304:
		return "304"
	case 400:
		return "400"
	case 403:
		return "403"
	case 404:
		return "404"
	case 405:
		return "405"
	case 503:
		return "503"
	}
	return strconv.Itoa(code)
}

// methods allows GET and HEAD and answers anything else 405 with Allow.
func (s *Server) methods(next http.Handler, name string) http.Handler {
	return s.observe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			s.fail(w, http.StatusMethodNotAllowed, "method not allowed: use GET or HEAD")
			return
		}
		next.ServeHTTP(w, r)
	}), name)
}

// connState tracks whether the request a connection is reading reached a handler,
// so that requests net/http answers by itself (malformed, headers too large) are
// counted in calcserver_http_refused_total.
type connState struct {
	active  atomic.Bool
	handled atomic.Bool
}

type connKey struct{}

// trackedConn is an accepted connection carrying its connState, so that the
// ConnState hook, called on every request, finds it without a lookup.
type trackedConn struct {
	net.Conn
	state connState
}

// CloseWrite lets net/http half-close the connection as it does a bare TCP one.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// trackingListener hands out trackedConns.
type trackingListener struct{ net.Listener }

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &trackedConn{Conn: c}, nil
}

func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*trackedConn); ok {
		return context.WithValue(ctx, connKey{}, &tc.state)
	}
	return ctx
}

func (s *Server) connState(c net.Conn, state http.ConnState) {
	tc, ok := c.(*trackedConn)
	if !ok {
		return
	}
	cs := &tc.state
	// A request ends when the connection goes idle or closes; a new one begins
	// when it goes active.
	if state != http.StateNew && cs.active.Swap(false) && !cs.handled.Load() {
		s.m.refused.Inc()
	}
	if state == http.StateActive {
		cs.active.Store(true)
		cs.handled.Store(false)
	}
}

// clientOf returns the client the access log records for r when TrustedProxies is
// set: the peer, unless the peer is a trusted proxy; then the rightmost address of
// X-Forwarded-For that is not itself a trusted proxy (each proxy appends the peer it
// saw, so only the part of the header the trusted proxies wrote is believed). When
// every address is trusted, the leftmost one; when an item is not an address, or
// there is no header, the last address believed so far (the peer at worst).
func (s *Server) clientOf(r *http.Request) string {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !s.trusted(peer.Addr()) {
		return r.RemoteAddr
	}
	client := r.RemoteAddr
	values := r.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		rest := values[i]
		for rest != "" {
			item := rest
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				item, rest = rest[j+1:], rest[:j]
			} else {
				rest = ""
			}
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			a, err := parseForwarded(item)
			if err != nil {
				return client
			}
			client = item
			if !s.trusted(a) {
				return client
			}
		}
	}
	return client
}

// parseForwarded reads one X-Forwarded-For item: an address, possibly with a port
// ("192.0.2.1:1234", "[2001:db8::1]:1234"), as some proxies write it.
func parseForwarded(item string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(item); err == nil {
		return a.Unmap(), nil
	}
	ap, err := netip.ParseAddrPort(item)
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}

// trusted reports whether a is in TrustedProxies.
func (s *Server) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.o.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
