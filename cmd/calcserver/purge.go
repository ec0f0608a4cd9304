package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/app"
	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/cli"
	"github.com/unicorn-rentals/unicorn/internal/server"
)

// purge is `calcserver purge`: it deletes the entries whose key (or its base64
// decoding) contains -match from every backend that can enumerate its keys.
func purge(args []string, e env) int {
	fs := cli.NewFlagSet("calcserver purge", "Usage: calcserver purge [-config PATH|s3://bucket/key] -match TEXT\n\nDeletes cached entries whose key, or its base64-decoded text, contains TEXT.\n\nFlags:\n", e.stderr)
	configPath := fs.String("config", "", "server.ini path or s3://bucket/key (default: $CALC_CONFIG)")
	match := fs.String("match", "", "text to match in keys (required)")
	if code, ok := cli.Parse(fs, args); !ok {
		return code
	}
	if *match == "" {
		fmt.Fprintln(e.stderr, "calcserver purge: -match TEXT is required")
		fs.Usage()
		return exitUsage
	}
	cfg, err := loadConfig(configLocation(*configPath, e.getenv), e.getenv)
	if fe := (*fetchError)(nil); errors.As(err, &fe) {
		fmt.Fprintf(e.stderr, "calcserver purge: %v\n", fe.err)
		return exitRuntime
	}
	if err == nil {
		err = app.Validate(cfg)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "calcserver purge: configuration error:\n%v\n", indent(err.Error()))
		return exitRuntime
	}
	// The memory tier lives and dies with each server: there is nothing of it to
	// purge, so it is not even built.
	cfg.MemoryCacheSize = 0
	tiers, err := app.Open(cfg, slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		fmt.Fprintf(e.stderr, "calcserver purge: %v\n", err)
		return exitRuntime
	}
	defer app.CloseTiers(tiers)
	if len(tiers) == 0 {
		fmt.Fprintln(e.stdout, "no shared cache backend configured: nothing to purge (the memory tier lives and dies with each server)")
		return exitOK
	}
	code := exitOK
	for _, t := range tiers {
		p, ok := t.Cache.(cache.Purger)
		if !ok {
			fmt.Fprintf(e.stdout, "%s: cannot enumerate its keys; entries expire with CacheTTL (or flush the whole cache)\n", t.Name)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		if in, ok := t.Cache.(cache.Initializer); ok {
			if err := in.Init(ctx); err != nil {
				cancel()
				fmt.Fprintf(e.stdout, "%s: failed: %v\n", t.Name, err)
				code = exitRuntime
				continue
			}
		}
		matches := func(key string) bool { return server.MatchKey(key, *match) }
		var n, skipped int
		var err error
		if cp, ok := p.(cache.CountingPurger); ok {
			n, skipped, err = cp.PurgeCounts(ctx, matches)
		} else {
			n, err = p.Purge(ctx, matches)
		}
		cancel()
		if err != nil {
			fmt.Fprintf(e.stdout, "%s: failed after removing %d: %v\n", t.Name, n, err)
			code = exitRuntime
			continue
		}
		fmt.Fprintf(e.stdout, "%s: removed %d\n", t.Name, n)
		if skipped > 0 {
			fmt.Fprintf(e.stdout, "%s: skipped %d rows stored as sha256:<hex> (their key cannot be matched)\n", t.Name, skipped)
		}
	}
	return code
}
