package sqltable

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"
)

// HitFlush is how often counted hits are written to the hits column.
const HitFlush = 250 * time.Millisecond

// maxPendingHits bounds the rows whose hits wait in memory; hits on further rows
// before the next flush are not counted.
const maxPendingHits = 100_000

// Hits counts the hits served from each row in memory, for a backend to add to
// the hits column every HitFlush: an UPDATE per hit would double a hit's cost and
// serialise concurrent hits on one row's lock. It is safe for concurrent use.
type Hits struct {
	mu       sync.Mutex
	pending  map[int64]int64 // row id -> hits not yet written
	flushing sync.Mutex      // held by the flush under way (Begin)
	stop     chan struct{}
	loop     sync.WaitGroup
}

// NewHits returns Hits with nothing counted, which do not flush until Start.
func NewHits() *Hits {
	return &Hits{pending: map[int64]int64{}, stop: make(chan struct{})}
}

// Start calls flush every HitFlush, with 5s to finish, until Stop.
func (h *Hits) Start(flush func(context.Context) error) {
	h.loop.Go(func() {
		t := time.NewTicker(HitFlush)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = flush(ctx)
				cancel()
			}
		}
	})
}

// Begin starts a flush and returns what ends it: a flush waits for one under way, so
// that a flush that returns has written every hit counted before it began, those the
// background flush had already taken included.
func (h *Hits) Begin() (end func()) {
	h.flushing.Lock()
	return h.flushing.Unlock
}

// Count records a hit on row id, to be written by the next flush.
func (h *Hits) Count(id int64) {
	h.mu.Lock()
	if _, ok := h.pending[id]; ok || len(h.pending) < maxPendingHits {
		h.pending[id]++
	}
	h.mu.Unlock()
}

// Take returns the rows with counted hits, in id order so that two hosts flushing
// at once lock them in the same order, and their counts, and starts counting
// afresh. What the flush cannot write it gives back with Keep.
func (h *Hits) Take() (ids []int64, counts map[int64]int64) {
	h.mu.Lock()
	counts = h.pending
	h.pending = map[int64]int64{}
	h.mu.Unlock()
	return slices.Sorted(maps.Keys(counts)), counts
}

// Keep adds back the hits of ids, which a flush took but could not write, for the
// next flush.
func (h *Hits) Keep(ids []int64, counts map[int64]int64) {
	if len(ids) == 0 {
		return
	}
	h.mu.Lock()
	for _, id := range ids {
		h.pending[id] += counts[id]
	}
	h.mu.Unlock()
}

// Stop ends the flushes and waits for one under way. The caller then flushes
// what is left itself.
func (h *Hits) Stop() {
	close(h.stop)
	h.loop.Wait()
}
