package sqltable

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
)

// Init runs a backend's Init, one at a time: sem holds a token while one runs,
// and a waiter whose ctx ends first gets an error wrapping ctx.Err(), prefixed by
// what ("mysql: init `db`.`t`"). Once state holds a schema Init returns it at
// once; until then it stores the one learn finds, so that every operation after
// uses it without waiting.
func Init[S any](ctx context.Context, sem chan struct{}, state *atomic.Pointer[S], what string, learn func(context.Context) (*S, error)) (*S, error) {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", what, ctx.Err())
	}
	defer func() { <-sem }()
	if s := state.Load(); s != nil {
		return s, nil
	}
	s, err := learn(ctx)
	if err != nil {
		return nil, err
	}
	state.Store(s)
	return s, nil
}

// LogWarnings gives l, if not nil, the warnings Init found about a backend's
// table. A backend logs them itself rather than leaving it to its caller: Init
// may first succeed long after startup, from a probe, and the operator should
// still see them.
func LogWarnings(l *slog.Logger, backend string, warnings []string) {
	if l == nil {
		return
	}
	for _, w := range warnings {
		l.Warn(backend+" backend: "+w, "backend", backend)
	}
}
