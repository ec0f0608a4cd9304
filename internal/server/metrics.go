package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/unicorn-rentals/unicorn/internal/queue"
)

// metrics are the server's Prometheus series, registered on a registry of its own.
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec        // by handler, code and cache result
	calcs       *prometheus.CounterVec        // /calc answers by cache result
	answers     map[string]prometheus.Counter // calcs' counters by result, looked up once
	notMods     *prometheus.CounterVec        // /calc 304s by cache result
	notModified map[string]prometheus.Counter // notMods' counters by result, looked up once
	rejections  *prometheus.CounterVec        // 503s by reason
	joins       prometheus.Counter
	jobs        prometheus.Histogram
	queueWait   prometheus.Histogram
	refused     prometheus.Counter
	logLost     prometheus.CounterFunc
	logDropped  prometheus.CounterFunc
}

func newMetrics(reg *prometheus.Registry, q *queue.Queue, logLost, logDropped func() float64) *metrics {
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calcserver_http_requests_total",
			Help: "HTTP requests that reached a handler, by handler, status code and cache result.",
		}, []string{"handler", "code", "cache"}),
		calcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calcserver_calc_answers_total",
			Help: "Successful /calc answers by cache result (HIT, MISS, SHARED).",
		}, []string{"cache"}),
		notMods: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calcserver_calc_not_modified_total",
			Help: "/calc answers 304 Not Modified (If-None-Match matched) by cache result (HIT, MISS, SHARED); not counted in calcserver_calc_answers_total.",
		}, []string{"cache"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calcserver_rejections_total",
			Help: "/calc requests answered 503, by reason (queue_full, draining).",
		}, []string{"reason"}),
		joins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "calcserver_singleflight_joins_total",
			Help: "Misses that joined another request's job instead of queueing their own.",
		}),
		jobs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "calcserver_job_duration_seconds",
			Help:    "Time a job held a simulated core.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "calcserver_queue_wait_seconds",
			Help:    "Time a miss waited in line before its job got a core.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "calcserver_http_refused_total",
			Help: "Requests answered by the HTTP layer before any handler (malformed, headers too large).",
		}),
	}
	// Every series with known labels starts at 0, so that a rate or an alert sees
	// it before its first event.
	m.answers = map[string]prometheus.Counter{}
	m.notModified = map[string]prometheus.Counter{}
	for _, c := range []string{hit, miss, shared} {
		m.answers[c] = m.calcs.WithLabelValues(c)
		m.notModified[c] = m.notMods.WithLabelValues(c)
	}
	for _, r := range []string{"queue_full", "draining"} {
		m.rejections.WithLabelValues(r)
	}
	gauge := func(name, help string, f func(queue.Stats) int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return float64(f(q.Stats())) })
	}
	m.logLost = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "calcserver_log_writes_failed_total",
		Help: "Log lines that could not be written.",
	}, logLost)
	m.logDropped = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "calcserver_log_lines_dropped_total",
		Help: "Log lines dropped because the log buffer was full (the log writer was slow or stuck).",
	}, logDropped)
	reg.MustRegister(m.requests, m.calcs, m.notMods, m.rejections, m.joins, m.jobs, m.queueWait, m.refused, m.logLost, m.logDropped,
		gauge("calcserver_queue_waiting", "Jobs waiting for a core.", func(s queue.Stats) int { return s.Waiting }),
		gauge("calcserver_queue_capacity", "Places in the waiting line (QueueSize).", func(s queue.Stats) int { return s.Capacity }),
		gauge("calcserver_cores_busy", "Simulated cores running a job.", func(s queue.Stats) int { return s.Busy }),
		gauge("calcserver_cores", "Simulated cores (Cores).", func(s queue.Stats) int { return s.Cores }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}
