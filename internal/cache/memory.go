package cache

import (
	"context"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// Memory is the in-process tier: a bounded cache with an optional time to live.
// It never fails, so Chain never bypasses it.
type Memory struct {
	c *otter.Cache[string, calc.Result]
}

var _ Cache = (*Memory)(nil)

// NewMemory returns a memory tier holding at most size entries (size must be at least
// 1), each expiring ttl after it was written (0 = never).
func NewMemory(size int, ttl time.Duration) *Memory {
	o := &otter.Options[string, calc.Result]{MaximumSize: size}
	if ttl > 0 {
		o.ExpiryCalculator = otter.ExpiryWriting[string, calc.Result](ttl)
	}
	return &Memory{c: otter.Must(o)}
}

// Get returns the value stored for key or ErrMiss.
func (m *Memory) Get(_ context.Context, key string) (calc.Result, error) {
	v, ok := m.c.GetIfPresent(key)
	if !ok {
		return calc.Result{}, ErrMiss
	}
	return v, nil
}

// Set stores v for key, evicting the least valuable entry when the cache is full.
func (m *Memory) Set(_ context.Context, key string, v calc.Result) error {
	m.c.Set(key, v)
	return nil
}

// Len returns the approximate number of entries.
func (m *Memory) Len() int { return m.c.EstimatedSize() }

// Close stops the cache's maintenance goroutines.
func (m *Memory) Close() { m.c.StopAllGoroutines() }
