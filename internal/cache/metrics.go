package cache

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// chainMetrics are the per-backend series of a Chain.
type chainMetrics struct {
	ops  *prometheus.CounterVec
	time *prometheus.HistogramVec
	reg  prometheus.Registerer
}

// tierMetrics are one tier's series, resolved once so the hot path does not hash
// label values. A local tier has only hit and miss: it is never bypassed, timed,
// written through a queue or shared, so its other series would stay at 0 forever.
type tierMetrics struct {
	hit, miss, corrupt, errors, bypass, dropped, joined prometheus.Counter
	getTime, setTime                                    prometheus.Observer
}

func newChainMetrics(reg prometheus.Registerer) *chainMetrics {
	m := &chainMetrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calcserver_cache_operations_total",
			Help: "Cache operations by backend and result: hit, miss, corrupt (value failed verification and was deleted), error, bypass (backend down, skipped), dropped (write queue full), joined (a lookup that shared the round trip of a concurrent lookup of the same key; the shared read counts once as hit, miss, corrupt or error).",
		}, []string{"backend", "result"}),
		time: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "calcserver_cache_operation_duration_seconds",
			Help:    "Latency of operations on shared cache backends.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}, []string{"backend", "op"}),
		reg: reg,
	}
	if reg != nil {
		reg.MustRegister(m.ops, m.time)
	}
	return m
}

// forTier registers the series of tier name and returns them; every counter starts
// at 0 with its labels.
func (m *chainMetrics) forTier(name string, local bool, up *atomic.Bool) tierMetrics {
	if m.reg != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "calcserver_cache_up",
			Help:        "1 while the backend answers, 0 while it is bypassed.",
			ConstLabels: prometheus.Labels{"backend": name},
		}, func() float64 {
			if up.Load() {
				return 1
			}
			return 0
		}))
	}
	c := func(result string) prometheus.Counter { return m.ops.WithLabelValues(name, result) }
	if local {
		return tierMetrics{hit: c("hit"), miss: c("miss")}
	}
	return tierMetrics{
		hit: c("hit"), miss: c("miss"), corrupt: c("corrupt"), errors: c("error"),
		bypass: c("bypass"), dropped: c("dropped"), joined: c("joined"),
		getTime: m.time.WithLabelValues(name, "get"),
		setTime: m.time.WithLabelValues(name, "set"),
	}
}
