package cache

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSeriesStartAtZeroAndLocalTiersAreNotTimed: each tier's counters exist at 0
// before the first operation; the memory tier, never timed, has no latency series
// and none of the results only a shared tier can have.
func TestSeriesStartAtZeroAndLocalTiersAreNotTimed(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := NewChain(Options{Registerer: reg},
		Tier{Name: "memory", Cache: NewMemory(10, 0), Local: true},
		Tier{Name: "redis", Cache: newFake()})
	defer c.Close(context.Background())
	var b strings.Builder
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			b.WriteString(mf.GetName())
			for _, l := range m.GetLabel() {
				b.WriteString(" " + l.GetName() + "=" + l.GetValue())
			}
			b.WriteString("\n")
		}
	}
	got := b.String()
	for _, want := range []string{
		"calcserver_cache_operations_total backend=memory result=hit\n",
		"calcserver_cache_operations_total backend=memory result=miss\n",
		"calcserver_cache_operations_total backend=redis result=corrupt\n",
		"calcserver_cache_operations_total backend=redis result=dropped\n",
		"calcserver_cache_operation_duration_seconds backend=redis op=get\n",
		"calcserver_cache_operation_duration_seconds backend=redis op=set\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("series missing: %s", want)
		}
	}
	for _, never := range []string{
		"calcserver_cache_operation_duration_seconds backend=memory",
		"calcserver_cache_operations_total backend=memory result=bypass",
		"calcserver_cache_operations_total backend=memory result=error",
	} {
		if strings.Contains(got, never) {
			t.Errorf("a series that can never move is exported: %s", never)
		}
	}
	if n := testutil.ToFloat64(c.tiers[1].m.errors); n != 0 {
		t.Fatalf("errors %v before any operation", n)
	}
}
