package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/logging"
	"github.com/unicorn-rentals/unicorn/internal/queue"
)

// Cache results as X-Cache shows them.
const (
	hit    = "HIT"
	miss   = "MISS"
	shared = "SHARED"
)

func (s *Server) handleCalc(w http.ResponseWriter, r *http.Request) {
	rec := recordOf(w)
	key, err := inputKey(r.URL.RawQuery)
	if err != nil {
		s.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	rec.key = key
	if MatchKey(key, s.o.DenyPattern...) {
		s.fail(w, http.StatusForbidden, "input is denied by DenyPattern")
		return
	}

	res, _, err := s.cache.Get(r.Context(), key)
	result := hit
	if err != nil {
		var val []byte
		var joined bool
		var wait time.Duration
		// The wait also ends when Drain runs out of time (s.abandoned), so that
		// the request is answered 503 before its connection is closed.
		ctx, cancel := context.WithCancel(r.Context())
		stop := context.AfterFunc(s.abandoned, cancel)
		val, joined, wait, err = s.q.Do(ctx, key, func() ([]byte, error) { return s.compute(key) })
		stop()
		cancel()
		rec.wait = wait
		switch {
		case errors.Is(err, queue.ErrFull):
			s.rejected.Add(1)
			s.m.rejections.WithLabelValues("queue_full").Inc()
			w.Header().Set("Retry-After", s.retry)
			s.fail(w, http.StatusServiceUnavailable, "queue full: retry later")
			return
		case errors.Is(err, queue.ErrDraining):
			s.rejected.Add(1)
			s.m.rejections.WithLabelValues("draining").Inc()
			w.Header().Set("Retry-After", s.retry)
			s.fail(w, http.StatusServiceUnavailable, "draining: the server is shutting down")
			return
		case errors.Is(err, context.Canceled) && r.Context().Err() == nil && s.abandoned.Err() != nil:
			// Drain ran out of time while this request waited for its job.
			s.rejected.Add(1)
			s.m.rejections.WithLabelValues("draining").Inc()
			w.Header().Set("Retry-After", s.retry)
			s.fail(w, http.StatusServiceUnavailable, "draining: the server is shutting down")
			return
		case r.Context().Err() != nil:
			// The client went away while waiting; nobody reads this answer. 499
			// (nginx's "client closed request") keeps it apart from real 503s
			// in the access log and the metrics.
			s.fail(w, statusClientClosed, "client closed the request while waiting")
			return
		case err != nil:
			s.log.Error("job failed", "key", logging.EscapeKey(key), "err", err)
			s.fail(w, http.StatusInternalServerError, "internal error")
			return
		}
		copy(res[:], val)
		result = miss
		if joined {
			result = shared
			s.m.joins.Inc()
		} else {
			s.m.queueWait.Observe(wait.Seconds())
		}
	}
	rec.cache = result

	an := s.answers.get(key, &res)
	// The constant header values are built once in New: assigning the map directly
	// skips canonicalisation and a slice per header on the hot path.
	h := w.Header()
	h["Content-Type"] = s.hdr.contentType
	h["X-Cache"] = s.hdr.cache[result]
	h["X-Served-By"] = s.hdr.servedBy
	h["Cache-Control"] = s.hdr.cacheControl
	h["Etag"] = an.etag
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, an.etag[0]) {
		// A 304 is no served answer: it is counted apart from the 200s.
		s.notModified.Add(1)
		s.m.notModified[result].Inc()
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if result == hit {
		s.hits.Add(1)
	} else {
		s.misses.Add(1)
	}
	s.served.Add(1)
	s.m.answers[result].Inc()
	_, _ = w.Write(an.body) // net/http drops the body of a HEAD answer
}

// statusClientClosed is nginx's status for a request whose client went away.
const statusClientClosed = 499

// etagMatches reports whether an If-None-Match header matches etag, with the weak
// comparison RFC 9110 prescribes for it: "*", or any tag in the list, W/ or not.
func etagMatches(header, etag string) bool {
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
			return true
		}
	}
	return false
}

// compute is the job of a miss: it runs after the simulated work, under no client's
// context, so its result is stored even when every client has gone.
func (s *Server) compute(key string) ([]byte, error) {
	res := calc.Sum(s.o.CalcVersion, []byte(key))
	s.cache.Set(key, res)
	return res[:], nil
}

// health is the /healthcheck document.
type health struct {
	Status   string         `json:"status"`
	Version  string         `json:"version"`
	Uptime   int64          `json:"uptime_seconds"`
	Queue    queueHealth    `json:"queue"`
	Cache    []cache.Health `json:"cache"`
	Requests requestCounts  `json:"requests"`
}

type queueHealth struct {
	Waiting  int `json:"waiting"`
	Capacity int `json:"capacity"`
	Busy     int `json:"busy"`
	Cores    int `json:"cores"`
}

type requestCounts struct {
	Served   int64 `json:"served"`
	Hits     int64 `json:"hits"`
	Misses   int64 `json:"misses"`
	Rejected int64 `json:"rejected"`
	// NotModified counts /calc 304s (If-None-Match matched), apart from served.
	NotModified int64 `json:"not_modified"`
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	st := s.q.Stats()
	doc := health{
		Status:  "ok",
		Version: s.o.Version,
		Uptime:  int64(time.Since(s.started) / time.Second),
		Queue:   queueHealth{Waiting: st.Waiting, Capacity: st.Capacity, Busy: st.Busy, Cores: st.Cores},
		Cache:   s.cache.Health(),
		Requests: requestCounts{
			Served: s.served.Load(), Hits: s.hits.Load(), Misses: s.misses.Load(), Rejected: s.rejected.Load(),
			NotModified: s.notModified.Load(),
		},
	}
	code := http.StatusOK
	for _, c := range doc.Cache {
		if !c.Healthy {
			doc.Status = "degraded"
		}
	}
	if s.draining.Load() {
		doc.Status = "draining"
		code = http.StatusServiceUnavailable
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h["X-Served-By"] = s.hdr.servedBy
	writeJSON(w, code, doc)
}

func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(Homepage))
}

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	s.fail(w, http.StatusNotFound, "not found")
}

// fail answers an error as JSON that no CDN keeps, with X-Served-By so that a
// refusal names the instance that made it.
func (s *Server) fail(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h["X-Served-By"] = s.hdr.servedBy
	writeJSON(w, code, struct {
		Error string `json:"error"`
	}{msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
