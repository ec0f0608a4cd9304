// Package app builds calcserver from its configuration: the cache backends the
// configuration turns on, the chain over them and the HTTP server. calcserver's
// start, -check and purge and the load benchmarks all go through it, so that
// there is one wiring.
//
// Adding a cache backend takes a package of its own under internal/cache, its keys
// in internal/config (tagged with the backend's name, which also goes into
// config.CacheBackends), one row in Backends, and its documentation.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/config"
	"github.com/unicorn-rentals/unicorn/internal/logging"
	"github.com/unicorn-rentals/unicorn/internal/queue"
	"github.com/unicorn-rentals/unicorn/internal/server"
)

// Options are what the configuration does not say: where the logs go and how the
// server names itself. The zero value works.
type Options struct {
	Logger         *slog.Logger    // startup, backend and server events; nil: discard
	AccessLog      *logging.Access // one line per request; nil: none
	LogWriteFailed func() int64    // log lines lost to failed writes, for /metrics; nil: none
	LogDropped     func() int64    // log lines dropped by a full log buffer, for /metrics; nil: none
	Host           string          // X-Served-By
	Version        string          // the build version /healthcheck shows
}

// App is calcserver built from a configuration. Its server does not listen until
// Server.Open.
type App struct {
	Server *server.Server
	Chain  *cache.Chain
	tiers  []cache.Tier
}

// initTimeout bounds each backend's Init at startup.
const initTimeout = 10 * time.Second

// New builds the application cfg describes, which must have passed Validate. It
// opens the backends cfg turns on and runs the Init of those that have one, builds
// the chain over them in ChainOrder and checks each shared tier once (one that does
// not answer is logged and probed: the server starts degraded), and builds the
// server. It fails on options a backend refuses, and on a backend that cannot
// work as configured (an Init error matching cache.ErrUnusable, such as a missing
// table), which no retry would cure.
func New(cfg config.Config, o Options) (*App, error) {
	mode, err := queue.ParseMode(cfg.WorkMode)
	if err != nil {
		return nil, fmt.Errorf("WorkMode: %w", err)
	}
	format, err := calc.ParseFormat(cfg.ResponseFormat)
	if err != nil {
		return nil, fmt.Errorf("ResponseFormat: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tiers, err := Open(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := initialize(tiers); err != nil {
		CloseTiers(tiers)
		return nil, err
	}
	reg := prometheus.NewRegistry()
	chain := cache.NewChain(cache.Options{Timeout: cfg.CacheTimeout, Logger: log, Registerer: reg}, tiers...)
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout(cfg))
	chain.Check(ctx) // logs each backend that does not answer
	cancel()
	srv := server.New(server.Options{
		Queue:          queue.Options{Cores: cfg.Cores, QueueSize: cfg.QueueSize, WorkTime: cfg.WorkTime, Mode: mode},
		Cache:          chain,
		CalcVersion:    cfg.CalcVersion,
		Format:         format,
		CacheTTL:       cfg.CacheTTL,
		Registry:       reg,
		DenyPattern:    cfg.DenyPattern,
		TrustedProxies: cfg.TrustedProxies,
		Host:           o.Host,
		Version:        o.Version,
		Logger:         log,
		AccessLog:      o.AccessLog,
		LogWriteFailed: o.LogWriteFailed,
		LogDropped:     o.LogDropped,
	})
	return &App{Server: srv, Chain: chain, tiers: tiers}, nil
}

// Close closes the backends. Close the chain first, so that the writes it still
// holds reach them.
func (a *App) Close() { CloseTiers(a.tiers) }

// startupTimeout bounds the first contact with each backend at startup; it is
// longer than CacheTimeout because a first connection (TLS, MySQL handshake,
// information_schema) costs more than a lookup.
func startupTimeout(cfg config.Config) time.Duration {
	return max(cfg.CacheTimeout, 3*time.Second)
}

// initialize runs the Init of every tier that has one. An error matching
// cache.ErrUnusable is returned; any other means the backend cannot be reached,
// which the chain's startup check reports and its probes retry.
func initialize(tiers []cache.Tier) error {
	for _, t := range tiers {
		in, ok := t.Cache.(cache.Initializer)
		if !ok {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), initTimeout)
		err := in.Init(ctx) // a backend logs its own warnings when it succeeds
		cancel()
		if errors.Is(err, cache.ErrUnusable) {
			return err
		}
	}
	return nil
}

// Validate runs every check of cfg that needs no connection: config's own
// (Config.Validate) and, as config does not know which keys turn a backend on,
// that every backend CacheOrder lists is on. Errors name the file, line and key.
func Validate(cfg config.Config) error {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, b := range Backends() {
		if slices.Contains(cfg.CacheOrder, b.Name) && !b.Enabled(cfg) {
			errs = append(errs, cfg.KeyError("CacheOrder", fmt.Sprintf("lists %s, but it is off: set %s", b.Name, b.EnabledBy)))
		}
	}
	if len(errs) == 1 {
		return errs[0] // a lone *config.Error prints on one line
	}
	return errors.Join(errs...)
}

// Check runs every check of the start short of connecting, for -check: Validate;
// that the log named by LogLocation could be opened (without creating it); and,
// when those pass, each backend's Open (which does no I/O), closing what it opened
// at once. Every problem is reported, each naming the file, line and key: an Open
// error is placed on the key that turns the backend on, as config's rules should
// have caught it first.
func Check(cfg config.Config) error {
	var errs []error
	if err := Validate(cfg); err != nil {
		errs = append(errs, err)
	}
	if cfg.LogLocation != "" {
		if _, err := logging.Check(cfg.LogLocation); err != nil {
			msg := strings.TrimPrefix(err.Error(), "logging: ")
			msg = strings.TrimPrefix(msg, "LogLocation: ")
			errs = append(errs, cfg.KeyError("LogLocation", "cannot be written: "+msg))
		}
	}
	if len(errs) == 0 {
		for _, b := range chainOrder(cfg) {
			c, err := b.Open(cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				errs = append(errs, cfg.KeyError(enablingKey(b, cfg, err), b.Name+" backend: "+err.Error()))
				continue
			}
			CloseTiers([]cache.Tier{{Name: b.Name, Cache: c, Local: b.Local}})
		}
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// enablingKey names the key an error of b's Open is reported on: the one that
// turns b on in cfg, or the one the error is about when that is known.
func enablingKey(b Backend, cfg config.Config, err error) string {
	switch b.Name {
	case "memory":
		return "MemoryCacheSize"
	case "redis":
		if len(cfg.RedisAddrs) > 0 {
			return "RedisAddrs"
		}
		return "RedisHost"
	case "memcached":
		if len(cfg.MemcacheServers) > 0 {
			return "MemcacheServers"
		}
		return "MemcacheHost"
	case "file":
		return "FsPath"
	case "mongodb":
		if strings.Contains(err.Error(), "CA file") { // read when the backend is built
			return "MongoDbCAFilePath"
		}
		return "MongoDbHost"
	case "mysql":
		return "MysqlHost"
	case "pgsql":
		return "PgsqlHost"
	case "dynamodb":
		return "DynamoTable"
	}
	return "CacheOrder"
}

// Built names the backends of this build, for config.Config.Warnings.
func Built() map[string]bool {
	built := make(map[string]bool)
	for _, b := range Backends() {
		built[b.Name] = true
	}
	return built
}

// ChainOrder names the tiers cfg turns on in lookup order: CacheOrder first, then
// the rest in the order of Backends (fastest first).
func ChainOrder(cfg config.Config) []string {
	var names []string
	for _, b := range chainOrder(cfg) {
		names = append(names, b.Name)
	}
	return names
}

func chainOrder(cfg config.Config) []Backend {
	var on []Backend
	for _, b := range Backends() {
		if b.Enabled(cfg) {
			on = append(on, b)
		}
	}
	rank := func(b Backend) int {
		if i := slices.Index(cfg.CacheOrder, b.Name); i >= 0 {
			return i
		}
		return len(cfg.CacheOrder)
	}
	slices.SortStableFunc(on, func(a, b Backend) int { return rank(a) - rank(b) })
	return on
}

// Open constructs the backends cfg turns on, as chain tiers in ChainOrder. Like
// each Backend's Open it does no network I/O. CloseTiers closes them.
func Open(cfg config.Config, log *slog.Logger) ([]cache.Tier, error) {
	var tiers []cache.Tier
	for _, b := range chainOrder(cfg) {
		c, err := b.Open(cfg, log)
		if err != nil {
			CloseTiers(tiers)
			return nil, fmt.Errorf("%s backend: %w", b.Name, err)
		}
		tiers = append(tiers, cache.Tier{Name: b.Name, Cache: c, Local: b.Local})
	}
	return tiers, nil
}

// CloseTiers closes every tier that has a Close method.
func CloseTiers(tiers []cache.Tier) {
	for _, t := range tiers {
		switch c := t.Cache.(type) {
		case io.Closer:
			_ = c.Close()
		case interface{ Close() }: // the memory tier
			c.Close()
		}
	}
}
