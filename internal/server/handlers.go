package server

import (
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
		val, joined, wait, err = s.q.Do(r.Context(), key, func() ([]byte, error) { return s.compute(key) })
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
		s.misses.Add(1)
	} else {
		s.hits.Add(1)
	}
	rec.cache = result
	s.served.Add(1)
	s.m.answers[result].Inc()

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
		w.WriteHeader(http.StatusNotModified)
		return
	}
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
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, doc)
}

func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(Homepage))
}

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	s.fail(w, http.StatusNotFound, "not found")
}

// fail answers an error as JSON that no CDN keeps.
func (s *Server) fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Cache-Control", "no-store")
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
