// Package cache holds the Cache interface that every backend implements, the embedded
// in-process memory cache, and Chain, which looks a key up tier by tier.
//
// A cache maps a key (the raw bytes of a /calc input, as a string) to its unicorn
// result at the version the cache was built for. Backends never know about each other;
// Chain orders them and checks what shared backends return.
package cache

import (
	"context"
	"errors"

	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// ErrMiss is returned by Get when the key is not stored.
var ErrMiss = errors.New("cache: miss")

// Cache is one storage tier. Get returns ErrMiss for an absent key; any other error
// means the tier could not answer. Both methods honour ctx's deadline.
type Cache interface {
	Get(ctx context.Context, key string) (calc.Result, error)
	Set(ctx context.Context, key string, r calc.Result) error
}
