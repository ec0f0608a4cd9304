package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/unicorn-rentals/unicorn/internal/app"
	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/cli"
	"github.com/unicorn-rentals/unicorn/internal/config"
	"github.com/unicorn-rentals/unicorn/internal/logging"
	"github.com/unicorn-rentals/unicorn/internal/s3config"
	"github.com/unicorn-rentals/unicorn/internal/server"
)

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = cli.ExitUsage
)

// env is everything run takes from the operating system.
type env struct {
	getenv  func(string) string
	stdout  io.Writer
	stderr  io.Writer
	host    string
	signals <-chan os.Signal
}

const usageText = `Usage: calcserver [flags]
       calcserver purge [-config PATH|s3://bucket/key] -match TEXT

Answers GET /calc?input=<key> after a simulated job on a simulated CPU core.

Flags:
`

// run is calcserver's testable main; it returns the process exit code.
func run(args []string, e env) int {
	if len(args) > 0 && args[0] == "purge" {
		return purge(args[1:], e)
	}
	fs := cli.NewFlagSet("calcserver", usageText, e.stderr)
	configPath := fs.String("config", "", "server.ini path or s3://bucket/key (default: $CALC_CONFIG, else built-in defaults)")
	port := fs.String("port", "", "listen port 0..65535, overrides Port (default: Port from the config, else 80)")
	memcache := fs.String("memcache-server", "", "memcached host:port, overrides MemcacheServers")
	check := fs.Bool("check", false, "validate the configuration, print it with secrets masked, exit 0 if valid or 1")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if code, ok := cli.Parse(fs, args); !ok {
		return code
	}
	if *showVersion {
		fmt.Fprintf(e.stdout, "calcserver %s\n", version)
		return exitOK
	}
	portNum := -1
	if *port != "" {
		n, err := strconv.Atoi(*port)
		if err != nil || n < 0 || n > 65535 {
			fmt.Fprintf(e.stderr, "calcserver: -port %q: must be a number 0..65535\n", *port)
			return exitUsage
		}
		portNum = n
	}
	if *memcache != "" {
		if err := config.CheckServer(*memcache); err != nil {
			fmt.Fprintf(e.stderr, "calcserver: -memcache-server %q: %v\n", *memcache, err)
			return exitUsage
		}
	}

	location := configLocation(*configPath, e.getenv)
	cfg, bad, err := loadConfigPartial(location, e.getenv)
	if fe := (*fetchError)(nil); errors.As(err, &fe) {
		// Reading from S3 failed before there was a file to check: one line that says
		// which bucket or key and why.
		fmt.Fprintf(e.stderr, "calcserver: %v\n", fe.err)
		if *check {
			fmt.Fprintf(e.stderr, "calcserver: configuration %s test failed\n", location)
		}
		return exitRuntime
	}
	flags := func(c *config.Config) {
		if portNum >= 0 {
			c.Port = portNum
		}
		if *memcache != "" {
			// The flag of the GameDay variant replaces whatever the file names.
			c.MemcacheServers = []string{*memcache}
			c.MemcacheHost, c.MemcachePort = "", 0
		}
	}
	if err == nil {
		flags(&cfg)
		// -check also builds the backends, as the start does short of connecting.
		validate := startChecks
		if *check {
			validate = app.Check
		}
		err = sortErrors(validate(cfg))
	} else if bad != nil {
		// Some lines cannot be read: the rules of the application (CacheOrder,
		// LogLocation) are checked on the lines that can, so that every problem
		// shows at once.
		flags(&cfg)
		err = withAppErrors(cfg, bad, err)
	}
	if err == nil && *check && cfg.LogLocation != "" {
		// Like nginx -t, check that the log could be opened, as serve would, without
		// creating it: -check leaves no file behind.
		_, err = logging.Check(cfg.LogLocation)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "calcserver: configuration error:\n%v\n", indent(err.Error()))
		if *check {
			fmt.Fprintf(e.stderr, "calcserver: configuration %s test failed\n", describe(location))
		}
		return exitRuntime
	}
	warnings := cfg.Warnings(app.Built())
	if *check {
		for _, kv := range cfg.Entries() {
			fmt.Fprintln(e.stdout, kv)
		}
		for _, w := range warnings {
			fmt.Fprintf(e.stderr, "calcserver: warning: %s\n", w)
		}
		fmt.Fprintf(e.stderr, "calcserver: cache chain: %s\n", describeChain(app.ChainOrder(cfg)))
		fmt.Fprintf(e.stderr, "calcserver: configuration %s test is successful\n", describe(cfg.Source))
		return exitOK
	}
	return serve(cfg, warnings, e)
}

func describe(source string) string {
	if source == "" {
		return "(built-in defaults)"
	}
	return source
}

func describeChain(names []string) string {
	if len(names) == 0 {
		return "none (every request is computed)"
	}
	return strings.Join(names, " -> ")
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// configLocation is where the configuration comes from: the -config flag, else
// $CALC_CONFIG; "" means the defaults.
func configLocation(flag string, getenv func(string) string) string {
	if flag != "" {
		return flag
	}
	return getenv("CALC_CONFIG")
}

// s3Timeout bounds reading the configuration from S3, retries included.
const s3Timeout = time.Minute

// fetchError is a failure to read the configuration from S3, as opposed to a problem
// in the file read.
type fetchError struct{ err error }

func (e *fetchError) Error() string { return e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

// loadConfig reads the configuration at location — a local path or an s3:// URL — or
// returns the defaults for "".
func loadConfig(location string, getenv func(string) string) (config.Config, error) {
	cfg, bad, err := loadConfigPartial(location, getenv)
	if bad != nil {
		return config.Config{}, err
	}
	return cfg, err
}

// loadConfigPartial is loadConfig that, when the file was read but has bad lines,
// returns config.ParsePartial's Config of the lines that read and the keys of those
// that did not, for withAppErrors.
func loadConfigPartial(location string, getenv func(string) string) (config.Config, map[string]bool, error) {
	var data []byte
	var err error
	switch {
	case location == "":
		return config.Default(), nil, nil
	case s3config.IsURL(location):
		ctx, cancel := context.WithTimeout(context.Background(), s3Timeout)
		defer cancel()
		if data, err = s3config.Fetch(ctx, location, getenv); err != nil {
			return config.Config{}, nil, &fetchError{err}
		}
	default:
		if data, err = config.Read(location); err != nil {
			return config.Config{}, nil, err
		}
	}
	return config.ParsePartial(location, data)
}

// startChecks is what the start checks before serve: app.Validate and, when that
// fails, also the LogLocation that serve would open, so that the start reports
// every problem -check does.
func startChecks(cfg config.Config) error {
	err := app.Validate(cfg)
	if err != nil && cfg.LogLocation != "" {
		if le := logLocationError(cfg, nil); le != nil {
			err = errors.Join(err, le)
		}
	}
	return err
}

// logLocationError is the error of a LogLocation that cannot be written, worded as
// app.Check words it: logging.Check's explanation, else openErr; nil when both are
// nil.
func logLocationError(cfg config.Config, openErr error) *config.Error {
	_, err := logging.Check(cfg.LogLocation)
	if err == nil {
		err = openErr
	}
	if err == nil {
		return nil
	}
	msg := strings.TrimPrefix(err.Error(), "logging: ")
	msg = strings.TrimPrefix(msg, "LogLocation: ")
	return cfg.KeyError("LogLocation", "cannot be written: "+msg)
}

// configErrors flattens err (a *config.Error or a tree of errors.Join) into its
// *config.Errors; ok is false when some part of it is another error.
func configErrors(err error) (errs []*config.Error, ok bool) {
	switch x := err.(type) {
	case nil:
		return nil, true
	case *config.Error:
		return []*config.Error{x}, true
	case interface{ Unwrap() []error }:
		for _, e := range x.Unwrap() {
			sub, ok := configErrors(e)
			if !ok {
				return nil, false
			}
			errs = append(errs, sub...)
		}
		return errs, true
	}
	return nil, false
}

// joinConfigErrors returns nil, the single error (which prints on one line), or
// an errors.Join of them all.
func joinConfigErrors(errs []*config.Error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}

// sortErrors orders the problems of err by line, as config.Parse does, once each;
// an error that is not made of *config.Error is returned as it is.
func sortErrors(err error) error {
	errs, ok := configErrors(err)
	if !ok || len(errs) < 2 {
		return err
	}
	seen := make(map[string]bool, len(errs))
	unique := errs[:0:0]
	for _, e := range errs {
		if s := e.Error(); !seen[s] {
			seen[s] = true
			unique = append(unique, e)
		}
	}
	slices.SortStableFunc(unique, func(a, b *config.Error) int { return a.Line - b.Line })
	return joinConfigErrors(unique)
}

// withAppErrors adds to parseErr, the line errors of a file, the errors of the rules
// config does not know — a CacheOrder that lists a backend that is off, a LogLocation
// that cannot be written — found in cfg, the Config of the lines that read (flags
// applied). An error that reads a key of a bad line is left out, as that key holds
// its default rather than what the file says.
func withAppErrors(cfg config.Config, bad map[string]bool, parseErr error) error {
	errs, ok := configErrors(parseErr)
	if !ok {
		return parseErr
	}
	for _, e := range errs {
		if e.Line <= 0 {
			return parseErr // a problem of the whole file, or "more problems not shown"
		}
	}
	lower := make(map[string]bool, len(bad))
	for k := range bad {
		lower[strings.ToLower(k)] = true
	}
	// A rule's message names the keys it reads (set RedisHost or RedisAddrs).
	readsBad := func(e *config.Error) bool {
		for _, w := range strings.FieldsFunc(e.Key+" "+e.Msg, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		}) {
			if lower[strings.ToLower(w)] {
				return true
			}
		}
		return false
	}
	// config already reported the rules between its keys; only the application's
	// own are added.
	own := make(map[string]bool)
	if cross, ok := configErrors(cfg.Validate()); ok {
		for _, e := range cross {
			own[e.Error()] = true
		}
	}
	if appErrs, ok := configErrors(app.Validate(cfg)); ok {
		for _, e := range appErrs {
			if e.Key == "CacheOrder" && !own[e.Error()] && !readsBad(e) {
				errs = append(errs, e)
			}
		}
	}
	if cfg.LogLocation != "" && !bad["LogLocation"] {
		if le := logLocationError(cfg, nil); le != nil {
			errs = append(errs, le)
		}
	}
	return sortErrors(joinConfigErrors(errs))
}

// serve runs the server until a SIGTERM or SIGINT has drained it.
func serve(cfg config.Config, warnings []string, e env) int {
	var logFile *logging.File
	stderr := logging.NewGuard(e.stderr)
	var logDst io.Writer = stderr
	lost := stderr.Failed
	if cfg.LogLocation != "" {
		f, err := logging.OpenFile(cfg.LogLocation)
		if err != nil {
			// Worded as -check words it, with the file and line of LogLocation.
			fmt.Fprintf(e.stderr, "calcserver: configuration error:\n%v\n", indent(logLocationError(cfg, err).Error()))
			return exitRuntime
		}
		logFile, logDst, lost = f, f, f.Failed
	}
	// Request goroutines only append their lines to a buffer; a goroutine of its own
	// writes it out.
	logOut := logging.NewAsync(logDst, logging.BufferSize, logging.FlushInterval)
	defer func() {
		// Runs last on every way out of serve, so that the lines logged before a
		// fatal error, and "shutdown complete", reach the log.
		if err := logOut.Close(); err != nil {
			// The writer is stuck and holds the file: leave the file to the exit.
			if logFile != nil {
				fmt.Fprintf(e.stderr, "calcserver: log %s: %v\n", logFile.Path(), err)
			}
			return
		}
		if logFile != nil {
			logFile.Close()
		}
	}()
	log, err := logging.New(logOut, cfg.LogFormat)
	if err != nil {
		fmt.Fprintf(e.stderr, "calcserver: LogFormat: %v\n", err)
		return exitRuntime
	}
	access, err := logging.NewAccess(logOut, cfg.LogFormat)
	if err != nil {
		fmt.Fprintf(e.stderr, "calcserver: LogFormat: %v\n", err)
		return exitRuntime
	}
	// startupFailed reports an error that stops the start once on standard error
	// and, when the log goes to a file, in the log too.
	startupFailed := func(err error) int {
		if logFile != nil {
			log.Error("startup failed", "err", err)
		}
		_ = logOut.Flush() // the lines logged before it come first, when they go to stderr
		fmt.Fprintf(e.stderr, "calcserver: %v\n", err)
		return exitRuntime
	}

	// go-redis logs failed dials through a logger of its own; the chain already
	// reports a backend's state, so its lines go to debug.
	goredis.SetLogger(redisLog{log})
	a, err := app.New(cfg, app.Options{Logger: log, AccessLog: access, LogWriteFailed: lost, LogDropped: logOut.Dropped,
		Host: e.host, Version: version})
	if err != nil {
		return startupFailed(err)
	}
	defer a.Close()
	srv, chain := a.Server, a.Chain
	if err := srv.Open(net.JoinHostPort("", strconv.Itoa(cfg.Port))); err != nil {
		return startupFailed(listenError(cfg.Port, err))
	}

	if cfg.PprofAddr != "" {
		stop, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			fmt.Fprintf(e.stderr, "calcserver: PprofAddr: %v\n", err)
			srv.Close()
			return exitRuntime
		}
		defer stop()
	}

	attrs := []any{"version", version, "port", srv.Port(), "config", describe(cfg.Source), "cache", describeChain(chain.Names())}
	for _, kv := range cfg.Entries() {
		attrs = append(attrs, kv.Key, kv.Value)
	}
	log.Info("calcserver started", attrs...)
	for _, w := range warnings {
		log.Warn("configuration", "warning", w)
	}
	if logFile != nil {
		fmt.Fprintf(e.stderr, "calcserver %s listening on :%d, logging to %s\n", version, srv.Port(), logFile.Path())
	}

	reopen := func() {
		if logFile == nil {
			return
		}
		// The lines logged before the signal belong in the old file.
		err := logOut.Flush()
		if err == nil {
			err = logFile.Reopen()
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "calcserver: reopen log: %v\n", err)
			log.Error("reopen log failed", "err", err)
			return
		}
		log.Info("log file reopened", "path", logFile.Path())
	}
	for s := range e.signals {
		if s == syscall.SIGHUP {
			reopen()
			continue
		}
		return shutdown(srv, chain, cfg, log, s, e.signals, reopen)
	}
	return shutdown(srv, chain, cfg, log, nil, nil, reopen)
}

// shutdown drains the server as the README's Shutdown section says: /healthcheck 503 at once, everything
// else served for ShutdownDelay, then no new jobs while running and waiting jobs
// finish, for at most ShutdownTimeout. Meanwhile SIGHUP still reopens the log, and a
// second SIGTERM or SIGINT ends the delay early.
func shutdown(srv *server.Server, chain *cache.Chain, cfg config.Config, log *slog.Logger, sig os.Signal, more <-chan os.Signal, reopen func()) int {
	log.Info("shutdown begins", "signal", fmt.Sprint(sig), "delay", cfg.ShutdownDelay, "timeout", cfg.ShutdownTimeout)
	srv.BeginDrain()

	cut, done := make(chan struct{}), make(chan struct{})
	defer close(done)
	go func() {
		var once sync.Once
		for {
			select {
			case <-done:
				return
			case s, ok := <-more:
				if !ok {
					return
				}
				if s == syscall.SIGHUP {
					reopen()
					continue
				}
				once.Do(func() {
					log.Info("second signal: delay cut short", "signal", fmt.Sprint(s))
					close(cut)
				})
			}
		}
	}()
	if cfg.ShutdownDelay > 0 {
		t := time.NewTimer(cfg.ShutdownDelay)
		select {
		case <-t.C:
		case <-cut:
			t.Stop()
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	start := time.Now()
	if err := srv.Drain(ctx); err != nil {
		log.Warn("shutdown timed out; jobs abandoned", "err", err, "waited", time.Since(start))
		srv.Close()
	}
	// Finished jobs queued their results for the shared caches: flush them so
	// another server finds them, with what is left of ShutdownTimeout but at least
	// a second, as a timed-out drain leaves none.
	flush, cancelFlush := context.WithTimeout(context.Background(), max(time.Until(start.Add(cfg.ShutdownTimeout)), time.Second))
	defer cancelFlush()
	if err := chain.Close(flush); err != nil {
		log.Warn("shutdown: cache writes abandoned", "err", err, "pending", chain.Pending())
	}
	log.Info("shutdown complete", "waited", time.Since(start))
	return exitOK
}

// servePprof serves net/http/pprof on addr, apart from the public port so that it
// can stay on loopback or a private interface.
func servePprof(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("pprof listening", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}

// redisLog sends go-redis's own log lines to the server's log at debug level.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}
