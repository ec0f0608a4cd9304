package bench

import (
	"context"
	"fmt"

	"github.com/unicorn-rentals/unicorn/internal/fleet"
)

// runFleet benches the fleet strategy in dir: o.Instances calcservers, each with the
// memory tier in front of one shared Redis, behind nginx with the deploy directory's
// configuration (least connections), as internal/fleet starts them. The load goes to
// nginx.
func runFleet(ctx context.Context, o Options, r Result, dir string) (Result, error) {
	n := o.Instances
	if n == 0 {
		n = DefaultInstances
	}
	fmt.Fprintf(o.Log, "bench: %s: starting redis, %d calcservers and nginx\n", r.Strategy, n)
	f, err := fleet.Start(ctx, fleet.Options{
		Calcserver: o.Calcserver,
		Dir:        dir,
		Instances:  n,
		ServerINI:  serverINI(o) + "MemoryCacheSize = 100000\n",
		Redis:      true,
		Log:        o.Log,
	})
	if err != nil {
		r.Status, r.Reason = StatusSkipped, oneLine(fmt.Sprintf("the fleet did not start: %v", err))
		return r, nil
	}
	fmt.Fprintf(o.Log, "bench: %s: nginx on %s in front of %d calcservers; offering %.0f requests/s for %v\n",
		r.Strategy, f.URL(), n, o.Load.Rate, o.Load.Duration)
	return measure(ctx, o, r, f.URL(), f.Close)
}
