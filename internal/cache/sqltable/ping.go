package sqltable

import (
	"context"
	"time"
)

// InitBudget is the least time Ping gives Init when it has to run it.
const InitBudget = 3 * time.Second

// Ping is a backend's Ping. Once Init has succeeded (inited reports it), it is
// ping, one round trip bounded by ctx. Until then it runs init, which dials and
// reads the catalog: more than a cache lookup's CacheTimeout, which probes pass as
// ctx, allows at any latency. So init runs detached from ctx's deadline and
// cancellation, under its own budget of the larger of timeout and InitBudget. A
// table lost while ping ran (inited turns false) sends Ping to init too, which
// reports why.
func Ping(ctx context.Context, timeout time.Duration, inited func() bool, ping, init func(context.Context) error) error {
	if inited() {
		if err := ping(ctx); err != nil {
			return err
		}
		if inited() {
			return nil
		}
	}
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(timeout, InitBudget))
	defer cancel()
	return init(ictx)
}
