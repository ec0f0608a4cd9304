// Package ferret runs FerretDB, a MongoDB-wire server that keeps its data in SQLite,
// inside the test process, so the MongoDB/DocumentDB backend is tested against a real
// server speaking the real protocol.
//
// FerretDB is embedded through its github.com/FerretDB/FerretDB/ferretdb package
// rather than run as a command: its stand-alone build panics without the version file
// its own build generates. It is a heavy module (a pure-Go SQLite among others), so it
// lives in this package of its own, which only tests import; the server binary must
// never link it.
//
// Clients reach the server through a relay the Server owns, an svctest.HangProxy on
// the Server's port. The relay is what makes outages realistic: Stop drops every
// client connection at once, as a crashed server would (FerretDB itself gives open
// connections seconds to finish), and Pause keeps connections open while nothing gets
// through, like a hung server or a network partition. The data directory survives
// Stop and Start.
package ferret

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"

	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// rebindWindow is how long Start keeps retrying the Server's fixed port, which
// another process may hold for a moment after a Stop.
const rebindWindow = 10 * time.Second

// newMu serialises ferretdb.New, which writes a package-level variable of FerretDB's
// (its version information); parallel tests starting servers would race on it.
var newMu sync.Mutex

// Options configures a Server; the zero value serves plain TCP.
type Options struct {
	// TLSCertFile and TLSKeyFile, both PEM, make the server speak only TLS, with
	// that certificate, as DocumentDB does by default.
	TLSCertFile, TLSKeyFile string
}

// Server is one FerretDB instance on a fixed loopback port. Its exported fields do
// not change across Stop and Start. It is safe for concurrent use.
type Server struct {
	Addr string // "127.0.0.1:PORT", where clients connect
	Port int
	Dir  string // the SQLite data directory

	opts Options
	out  *svctest.Tail

	mu  sync.Mutex
	cur *run // nil while stopped
}

// run is one start of the server: FerretDB on a private port and the relay in front.
type run struct {
	relay  *svctest.HangProxy // on the Server's port, to FerretDB's
	cancel context.CancelFunc
	done   chan struct{} // closed once FerretDB's Run has returned
}

// Start starts a server with its data in dir on a free loopback port. Callers must
// Stop it.
func Start(dir string, o Options) (*Server, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("ferret: %w", err)
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return nil, errors.New("ferret: TLS needs both a certificate and a key file")
	}
	s := &Server{Dir: dir, opts: o, out: &svctest.Tail{}}
	// A port below the ephemeral range, which a restart can always bind again.
	var l net.Listener
	for attempt := 1; ; attempt++ {
		port, err := svctest.FreePort(nil)
		if err != nil {
			return nil, fmt.Errorf("ferret: %w", err)
		}
		l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			break
		}
		if attempt == 5 {
			return nil, fmt.Errorf("ferret: %w", err)
		}
	}
	s.Port = l.Addr().(*net.TCPAddr).Port
	s.Addr = l.Addr().String()
	if err := s.launch(l); err != nil {
		return nil, err
	}
	return s, nil
}

// ForTest starts a server for t with its data in a temporary directory and stops it
// when t ends. A test that needs the server must not pass without it, so a failed
// start is fatal, never a skip.
func ForTest(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := Start(t.TempDir(), o)
	if err != nil {
		t.Fatalf("%v", err)
	}
	// Registered after t.TempDir's removal, so it runs before it.
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return s
}

// URI is the MongoDB connection string of the server, without credentials: FerretDB
// on SQLite does not authenticate. With TLS it asks for TLS; the client still needs
// the certificate's authority.
func (s *Server) URI() string {
	if s.opts.TLSCertFile != "" {
		return "mongodb://" + s.Addr + "/?tls=true"
	}
	return "mongodb://" + s.Addr + "/"
}

// Output returns the last few kilobytes FerretDB logged, for error messages.
func (s *Server) Output() string { return s.out.String() }

// Running reports whether the server is started.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != nil
}

// Stop takes the server down like a crash: the port stops accepting, every client
// connection is closed at once, and FerretDB shuts down, closing its database. It
// returns when all of that is done, so the data directory can be reused. Stopping a
// stopped server is a no-op.
func (s *Server) Stop() error {
	s.mu.Lock()
	r := s.cur
	s.cur = nil
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	err := r.relay.Close() // the port, and every connection, paused ones included
	r.cancel()
	<-r.done // prompt: FerretDB's connections ended with the relay's
	if err != nil {
		return fmt.Errorf("ferret: stop %s: %w", s.Addr, err)
	}
	return nil
}

// Start starts a stopped server again on the same port and data directory. The
// port is retried for a few seconds in case another process took it meanwhile.
// Starting a running server is a no-op.
func (s *Server) Start() error {
	if s.Running() {
		return nil
	}
	deadline := time.Now().Add(rebindWindow)
	for {
		l, err := net.Listen("tcp", s.Addr)
		if err == nil {
			return s.launch(l)
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return fmt.Errorf("ferret: listen on %s again: %w", s.Addr, err)
		}
		// Nothing signals when a port is free again; back off and retry.
		time.Sleep(100 * time.Millisecond)
	}
}

// Restart stops the server and starts it again with the same port and data.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

// Pause stops every byte between clients and the server while keeping connections
// open and accepting new ones, like a hung server. Resume undoes it.
func (s *Server) Pause() error {
	return s.withRelay((*svctest.HangProxy).BlackHole)
}

// Resume lets data flow again after Pause, what was held first.
func (s *Server) Resume() error {
	return s.withRelay((*svctest.HangProxy).PassThrough)
}

func (s *Server) withRelay(f func(*svctest.HangProxy)) error {
	s.mu.Lock()
	r := s.cur
	s.mu.Unlock()
	if r == nil {
		return fmt.Errorf("ferret: %s is stopped", s.Addr)
	}
	f(r.relay) // a no-op if a Stop closed it meanwhile
	return nil
}

// launch starts FerretDB on a private port and relays front to it.
func (s *Server) launch(front net.Listener) error {
	logger := slog.New(slog.NewTextHandler(s.out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	newMu.Lock()
	lc := ferretdb.ListenerConfig{TCP: "127.0.0.1:0"}
	if s.opts.TLSCertFile != "" {
		// The relay passes bytes through, so clients reach the TLS listener as if
		// it listened on Addr.
		lc = ferretdb.ListenerConfig{TLS: "127.0.0.1:0", TLSCertFile: s.opts.TLSCertFile, TLSKeyFile: s.opts.TLSKeyFile}
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  lc,
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: (&url.URL{Scheme: "file", Path: s.Dir + "/"}).String(),
	})
	newMu.Unlock()
	if err != nil {
		_ = front.Close()
		return fmt.Errorf("ferret: start on %s with data in %s: %w", s.Addr, s.Dir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_ = f.Run(ctx)
	}()
	// New has bound FerretDB's listener, so MongoDBURI need not wait for Run.
	u, err := url.Parse(f.MongoDBURI())
	if err != nil {
		cancel()
		<-r.done
		_ = front.Close()
		return fmt.Errorf("ferret: FerretDB's URI: %w", err)
	}
	r.relay = svctest.NewHangProxy(front, u.Host)
	s.mu.Lock()
	s.cur = r
	s.mu.Unlock()
	return nil
}
