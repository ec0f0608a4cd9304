// Package server is calcserver's HTTP layer: the /calc, /healthcheck, /metrics and /
// handlers, the access log, metrics, and the listen/drain life cycle.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/logging"
	"github.com/unicorn-rentals/unicorn/internal/queue"
)

// Homepage is the body of GET /, as the reference server answers it.
const Homepage = "TODO: Create a nice looking homepage."

// Cache is what the server asks of its cache (a *cache.Chain).
type Cache interface {
	// Get returns the answer for key and the name of the tier that held it, or an
	// error when no tier could answer: the request is then computed.
	Get(ctx context.Context, key string) (calc.Result, string, error)
	// Set stores a computed answer; it must not block on a slow backend.
	Set(key string, r calc.Result)
	// Health reports each tier's state for /healthcheck.
	Health() []cache.Health
}

// Options configure a Server. The zero value of every field works.
type Options struct {
	Queue          queue.Options
	Cache          Cache           // nil: no cache at all
	CalcVersion    int             // 0 means 1
	Format         calc.Format     // response body encoding
	CacheTTL       time.Duration   // sets Cache-Control max-age; 0 = 86400 s
	DenyPattern    []string        // keys containing one of these are refused with 403
	Host           string          // X-Served-By
	Version        string          // build version shown by /healthcheck
	Logger         *slog.Logger    // nil: discard
	AccessLog      *logging.Access // one line per request; nil: none
	LogWriteFailed func() int64    // log lines lost to failed writes, for /metrics; nil: none
	LogDropped     func() int64    // log lines dropped by a full log buffer, for /metrics; nil: none
	// TrustedProxies are the peers whose X-Forwarded-For the access log believes:
	// the client it records is then the rightmost address of that header that is
	// not itself a trusted proxy. Empty: the peer is the client, whatever it sends.
	TrustedProxies []netip.Prefix
	// Registry receives the server's metrics and is served on /metrics; pass the one
	// the cache chain registers on. Nil: a registry of the server's own.
	Registry *prometheus.Registry
}

// Server answers the calcserver wire contract.
type Server struct {
	o       Options
	log     *slog.Logger
	access  *logging.Access
	q       *queue.Queue
	cache   Cache
	m       *metrics
	started time.Time
	retry   string
	hdr     headers
	answers *answers
	handler http.Handler

	draining atomic.Bool // /healthcheck answers 503 once set

	// abandoned ends when Drain runs out of time: the requests still waiting for a
	// job then answer 503 draining instead of having their connection closed.
	abandoned context.Context
	abandon   context.CancelFunc

	served, hits, misses, rejected, notModified atomic.Int64

	srv *http.Server
	ln  net.Listener
}

// headers are the values of a /calc answer that do not change between requests.
type headers struct {
	contentType, servedBy, cacheControl []string
	cache                               map[string][]string
}

// New returns a server; it does not listen until Open.
func New(o Options) *Server {
	if o.CalcVersion == 0 {
		o.CalcVersion = 1
	}
	if o.Cache == nil {
		o.Cache = cache.NewChain(cache.Options{})
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{o: o, log: o.Logger, access: o.AccessLog, cache: o.Cache, started: time.Now()}
	s.abandoned, s.abandon = context.WithCancel(context.Background())
	counter := func(f func() int64) func() float64 {
		return func() float64 {
			if f == nil {
				return 0
			}
			return float64(f())
		}
	}
	qo := o.Queue
	var m *metrics
	qo.Observe = func(held time.Duration) { m.jobs.Observe(held.Seconds()) }
	s.q = queue.New(qo)
	m = newMetrics(o.Registry, s.q, counter(o.LogWriteFailed), counter(o.LogDropped))
	s.m = m

	maxAge := int64(86400)
	if o.CacheTTL > 0 {
		maxAge = int64((o.CacheTTL + time.Second - 1) / time.Second)
	}
	s.answers = newAnswers(o.Format, o.CalcVersion)
	s.hdr = headers{
		contentType:  []string{"text/plain; charset=utf-8"},
		servedBy:     []string{o.Host},
		cacheControl: []string{"public, max-age=" + strconv.FormatInt(maxAge, 10)},
		cache:        map[string][]string{hit: {hit}, miss: {miss}, shared: {shared}},
	}
	retry := int64((o.Queue.WorkTime + time.Second - 1) / time.Second)
	s.retry = strconv.FormatInt(max(retry, 1), 10)

	// Routing is an exact match on the path. http.ServeMux would answer a path
	// that is not clean (//calc, /calc/../calc) with a redirect of its own, in HTML,
	// without the contract's JSON, headers or access line.
	routes := map[string]http.Handler{
		"/calc":        s.methods(http.HandlerFunc(s.handleCalc), "calc"),
		"/healthcheck": s.methods(http.HandlerFunc(s.handleHealth), "healthcheck"),
		"/metrics":     s.methods(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}), "metrics"),
		"/":            s.methods(http.HandlerFunc(s.handleRoot), "root"),
	}
	notFound := s.observe(http.HandlerFunc(s.handleNotFound), "notfound")
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := routes[r.URL.Path]; ok {
			h.ServeHTTP(w, r)
			return
		}
		notFound.ServeHTTP(w, r)
	})
	return s
}

// Handler returns the server's HTTP handler, for tests and for embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Queue returns the server's queue.
func (s *Server) Queue() *queue.Queue { return s.q }

// Open listens on addr (":0" picks a free port) and serves in the background. A bind
// error is returned here, synchronously.
func (s *Server) Open(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("server: listen on %s: %w", addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ConnContext:       s.connContext,
		// OPTIONS * would otherwise get net/http's own 200.
		DisableGeneralOptionsHandler: true,
		ConnState:                    s.connState,
	}
	go func() {
		if err := s.srv.Serve(trackingListener{ln}); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	return nil
}

// Port returns the port Open listens on.
func (s *Server) Port() int {
	if s.ln == nil {
		return 0
	}
	return s.ln.Addr().(*net.TCPAddr).Port
}

// BeginDrain makes /healthcheck answer 503 draining; everything else is served as
// usual, so a load balancer can take the instance out first.
func (s *Server) BeginDrain() { s.draining.Store(true) }

// Drain stops new jobs (new misses are answered 503, hits are still served), waits for
// running and waiting jobs until ctx ends, then closes the listener and waits for the
// answers in flight. It returns ctx.Err() if the jobs did not finish in time: the
// requests still waiting for a job are then answered 503 draining with Retry-After
// (Drain gives them up to abandonGrace to be written), never left to a closed
// connection.
func (s *Server) Drain(ctx context.Context) error {
	s.BeginDrain()
	qerr := s.q.Drain(ctx)
	if qerr != nil {
		s.abandon()
		grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonGrace)
		defer cancel()
		ctx = grace
	}
	var serr error
	if s.srv != nil {
		serr = s.srv.Shutdown(ctx)
	}
	if qerr != nil {
		return qerr // Shutdown then failed for the same reason
	}
	return serr
}

// abandonGrace bounds the time Drain, out of time, gives the requests it abandons to
// write their 503: a few milliseconds in practice.
const abandonGrace = time.Second

// Close stops serving at once.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Close()
}
