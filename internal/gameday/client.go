package gameday

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxBody bounds what is read of an answer for verification (answers are 44 or 244
// bytes); the rest is drained, so that the connection can carry the next request.
const maxBody = 64 << 10

// userAgent names the load in the servers' access logs.
const userAgent = "unicorn-gameday"

// conns bounds and counts the connections a client has open.
type conns struct {
	slots              chan struct{} // one held per open (or dialing) connection
	open, peak, dialed atomic.Int64
}

// trackedConn gives its slot back once, however often it is closed.
type trackedConn struct {
	net.Conn
	c    *conns
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.c.open.Add(-1)
		<-t.c.slots
	})
	return t.Conn.Close()
}

// slotPoll is how often a dial waiting for a connection slot looks again: a slot
// frees when a connection closes, which the transport does not announce.
const slotPoll = time.Millisecond

// newTransport returns a transport that never has more than limit connections open in
// all. MaxConnsPerHost alone bounds each host; with several targets, idle connections
// to one could add to busy ones to another, so every dial takes a slot of c first and,
// when none is free, closes the idle connections to make one. A slot is always freed
// that way: requests in flight are at most limit, each busy connection serves one of
// them, and the dialing request holds none.
func newTransport(limit int, dialTimeout time.Duration, c *conns) *http.Transport {
	c.slots = make(chan struct{}, limit)
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:               nil, // load goes to the target itself, never through a proxy from the environment
		MaxConnsPerHost:     limit,
		MaxIdleConnsPerHost: limit,
		MaxIdleConns:        limit,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: dialTimeout,
		DisableCompression:  true, // verify the bytes the server sent
		ForceAttemptHTTP2:   false,
	}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := c.acquire(ctx, tr); err != nil {
			return nil, err
		}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			<-c.slots
			return nil, err
		}
		n := c.open.Add(1)
		c.dialed.Add(1)
		for p := c.peak.Load(); n > p && !c.peak.CompareAndSwap(p, n); p = c.peak.Load() {
		}
		return &trackedConn{Conn: conn, c: c}, nil
	}
	return tr
}

// acquire takes a connection slot, closing idle connections to free one.
func (c *conns) acquire(ctx context.Context, tr *http.Transport) error {
	select {
	case c.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(slotPoll)
	defer t.Stop()
	for {
		tr.CloseIdleConnections()
		select {
		case c.slots <- struct{}{}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			t.Reset(slotPoll)
		}
	}
}

// answer is what one GET /calc brought back.
type answer struct {
	status   int // 0: no HTTP answer
	servedBy string
	body     []byte
	latency  time.Duration
	err      error
}

// get sends GET url and reads the answer: the status, X-Served-By and at most maxBody
// bytes of the body, the rest drained before the body is closed.
func get(ctx context.Context, rt http.RoundTripper, rawURL string) answer {
	begin := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("User-Agent", userAgent)
	// RoundTrip, not a Client: a redirect is the target's answer (an ALB's HTTP to
	// HTTPS, say), to be counted, not followed.
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return answer{err: err, latency: time.Since(begin)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	return answer{
		status:   resp.StatusCode,
		servedBy: resp.Header.Get("X-Served-By"),
		body:     body,
		latency:  time.Since(begin),
		err:      err,
	}
}

// isTimeout reports whether err is a deadline that passed.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errorKind names a transport error for the summary and the score events, in the
// words an operator searches for.
func errorKind(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed without an answer"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "DNS: " + dns.Err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s) > 60 {
		s = s[i+2:] // the innermost cause, without addresses
	}
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}

// statusKind is the error kind of a non-200 answer.
func statusKind(status int) string {
	return fmt.Sprintf("status %d", status)
}
