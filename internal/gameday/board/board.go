// Package board is the live scoreboard of `gameday run -board ADDR`: a web page that
// shows the score, its trend, the rates, the latency, the cost, a chart of the score
// over time and the latest score events, as the event's scoreboard does, updated
// about once a second by server-sent events.
//
// Use:
//
//	b := board.New(board.Options{Title: "GameDay", Targets: targets, Logger: logger})
//	ln, err := net.Listen("tcp", addr) // fail early on a busy port
//	if err != nil { ... }
//	go b.Serve(ln)                     // or mount b.Handler() on a server of your own
//	defer b.Close()
//	... gameday.Run(ctx, opts, b.Publish) // Publish about once a second
//
// Publish never blocks on a client: each client has a small buffered channel, and
// when a slow client's channel is full its oldest message is dropped (every message
// is the whole state, so the newest one is what counts). A client whose connection
// takes no data for Options.WriteTimeout is disconnected. Close ends every stream
// (with a final "end" event), stops Serve's server, and waits for the streams'
// handlers to return; after Close, Publish does nothing and /events answers 204,
// which tells browsers not to reconnect. Every method is safe for concurrent use.
//
// The handler serves:
//
//	GET /          the page (embedded HTML, CSS and JS: nothing is fetched from elsewhere)
//	GET /events    text/event-stream: each message one "data:" line with the Snapshot
//	               JSON; the latest snapshot at once, then each published one; an
//	               "end" event when the board closes
//	GET /snapshot  the latest Snapshot JSON (204 before the first Publish)
//	GET /history   the score over time: [[second, score], ...] for the chart
//
// The Snapshot JSON is gameday.Snapshot's (events always present, at_ms from At when
// AtMS is not set, a NaN or an infinity as 0). A snapshot with Final set makes the
// page say the run ended.
package board

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/gameday"
)

// Options configures a Board. The zero value of a field takes its default.
type Options struct {
	Title        string        // heading of the page; default "GameDay"
	Targets      []string      // shown under the title
	Logger       *slog.Logger  // default: discard
	History      int           // chart points kept (older ones are thinned); default 7200
	ClientBuffer int           // messages buffered per client; default 16
	WriteTimeout time.Duration // a client taking no data this long is dropped; default 10s
	KeepAlive    time.Duration // comment line sent on an idle stream; default 15s
}

// closeGrace is how long Close lets streams write their "end" event before it cuts
// the connections that are still writing.
const closeGrace = time.Second

//go:embed static
var static embed.FS

var page = template.Must(template.ParseFS(static, "static/index.html"))

// Board holds the latest snapshot and the connected clients.
type Board struct {
	opt  Options
	log  *slog.Logger
	mux  *http.ServeMux
	done chan struct{} // closed by Close

	mu      sync.Mutex
	closed  bool
	latest  []byte // the latest message's JSON; nil before the first Publish
	hist    []point
	clients map[*client]struct{}
	srv     *http.Server // Serve's, if any
	streams sync.WaitGroup
}

type point struct {
	second int
	score  float64
}

// client is one /events stream.
type client struct {
	ch chan []byte
	w  http.ResponseWriter
	rc *http.ResponseController

	mu     sync.Mutex // guards the write deadline against Close's kick
	kicked bool
}

// New returns a board with no snapshot yet.
func New(o Options) *Board {
	if o.Title == "" {
		o.Title = "GameDay"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.History <= 0 {
		o.History = 7200
	}
	if o.History < 4 {
		o.History = 4
	}
	if o.ClientBuffer <= 0 {
		o.ClientBuffer = 16
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 15 * time.Second
	}
	b := &Board{
		opt:     o,
		log:     o.Logger,
		done:    make(chan struct{}),
		clients: make(map[*client]struct{}),
	}
	assets, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(assets)
	b.mux = http.NewServeMux()
	b.mux.HandleFunc("GET /{$}", b.serveIndex)
	b.mux.HandleFunc("GET /events", b.serveEvents)
	b.mux.HandleFunc("GET /snapshot", b.serveSnapshot)
	b.mux.HandleFunc("GET /history", b.serveHistory)
	for _, name := range []string{"board.js", "board.css"} {
		b.mux.Handle("GET /"+name, files)
	}
	return b
}

// Handler returns the board's HTTP handler (the routes in the package doc).
func (b *Board) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// The page's own files only: no other origin can be reached from it.
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		b.mux.ServeHTTP(w, r)
	})
}

// Serve serves Handler on ln until Close; it returns nil after Close, or the error
// that stopped it. It closes ln.
func (b *Board) Serve(ln net.Listener) error {
	srv := &http.Server{
		Handler:           b.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		ln.Close()
		return nil
	}
	b.srv = srv
	b.mu.Unlock()
	b.log.Info("board: serving", "url", "http://"+ln.Addr().String()+"/")
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// wireEvent is a score event as the page reads it.
type wireEvent struct {
	AtMS   int64   `json:"at_ms"`
	Points float64 `json:"points"`
	Reason string  `json:"reason"`
}

// wireSnapshot is gameday.Snapshot's JSON with the board's events: the shallower
// Events field wins over the embedded one.
type wireSnapshot struct {
	gameday.Snapshot
	Events []wireEvent `json:"events"`
}

// Publish makes s the latest snapshot and sends it to every client. It never blocks
// on a client. After Close it does nothing.
func (b *Board) Publish(s gameday.Snapshot) {
	// JSON has no NaN or infinity (a percentile of no samples, say): 0 stands for them.
	finiteFields(reflect.ValueOf(&s).Elem())
	w := wireSnapshot{Snapshot: s, Events: make([]wireEvent, len(s.Events))}
	for i, e := range s.Events {
		at := e.AtMS
		if at == 0 {
			at = e.At.Milliseconds()
		}
		w.Events[i] = wireEvent{AtMS: at, Points: finite(e.Points), Reason: e.Reason}
	}
	data, err := json.Marshal(w)
	if err != nil {
		b.log.Warn("board: snapshot not published", "err", err)
		return
	}
	msg := make([]byte, 0, len(data)+8)
	msg = append(msg, "data: "...)
	msg = append(msg, data...)
	msg = append(msg, "\n\n"...)

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.latest = data
	b.record(point{s.Second, s.Score})
	for c := range b.clients {
		select {
		case c.ch <- msg:
		default:
			// Full: drop the oldest. Only Publish sends, under b.mu, so there is room now.
			select {
			case <-c.ch:
			default:
			}
			c.ch <- msg
		}
	}
}

func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// finiteFields sets the NaN and infinite floats of v, a struct, and of the structs in
// it, to 0.
func finiteFields(v reflect.Value) {
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		if v.CanSet() {
			v.SetFloat(finite(v.Float()))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			finiteFields(v.Field(i))
		}
	}
}

// record appends p to the chart's history: one point per second, a second that goes
// back starts a new history, and past Options.History points every other one goes.
func (b *Board) record(p point) {
	if n := len(b.hist); n > 0 {
		last := b.hist[n-1].second
		switch {
		case p.second == last:
			b.hist[n-1] = p
			return
		case p.second < last:
			b.hist = b.hist[:0]
		}
	}
	b.hist = append(b.hist, p)
	if len(b.hist) > b.opt.History {
		kept := b.hist[:0]
		for i, q := range b.hist {
			if i%2 == 0 || i == len(b.hist)-1 {
				kept = append(kept, q)
			}
		}
		b.hist = kept
	}
}

// Clients returns the number of connected /events streams.
func (b *Board) Clients() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.clients)
}

// Close ends every stream and stops Serve's server. It waits for the streams'
// handlers (a client that takes no data is cut after a second). It is idempotent.
func (b *Board) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.done)
	srv := b.srv
	b.mu.Unlock()

	if !waitTimeout(&b.streams, closeGrace) {
		// Streams still writing to clients that take no data: cut them.
		b.mu.Lock()
		for c := range b.clients {
			c.kick()
		}
		b.mu.Unlock()
		b.streams.Wait()
	}
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return srv.Close()
	}
	return nil
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func (b *Board) serveIndex(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := page.Execute(&buf, struct {
		Title   string
		Targets []string
	}{b.opt.Title, b.opt.Targets}); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(buf.Bytes())
}

func (b *Board) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	data := b.latest
	b.mu.Unlock()
	w.Header().Set("Cache-Control", "no-cache")
	if data == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(data)
	w.Write([]byte("\n"))
}

func (b *Board) serveHistory(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	pts := make([][2]float64, len(b.hist))
	for i, p := range b.hist {
		pts[i] = [2]float64{float64(p.second), p.score}
	}
	b.mu.Unlock()
	data, err := json.Marshal(pts)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(data)
}

func (b *Board) serveEvents(w http.ResponseWriter, r *http.Request) {
	c := &client{
		ch: make(chan []byte, b.opt.ClientBuffer),
		w:  w,
		rc: http.NewResponseController(w),
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		w.WriteHeader(http.StatusNoContent) // EventSource: do not reconnect
		return
	}
	latest := b.latest
	b.clients[c] = struct{}{}
	b.streams.Add(1)
	n := len(b.clients)
	b.mu.Unlock()
	b.log.Debug("board: client connected", "client", r.RemoteAddr, "clients", n)
	defer func() {
		b.mu.Lock()
		delete(b.clients, c)
		n := len(b.clients)
		b.mu.Unlock()
		b.streams.Done()
		b.log.Debug("board: client gone", "client", r.RemoteAddr, "clients", n)
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // a proxy in front must not buffer the stream
	w.WriteHeader(http.StatusOK)
	first := []byte("retry: 2000\n\n")
	if latest != nil {
		first = append(first, "data: "...)
		first = append(first, latest...)
		first = append(first, "\n\n"...)
	}
	if c.write(first, b.opt.WriteTimeout) != nil {
		return
	}

	keepAlive := time.NewTicker(b.opt.KeepAlive)
	defer keepAlive.Stop()
	// end sends what Publish queued before Close (the final snapshot among it), then
	// the end event.
	end := func() {
		for {
			select {
			case msg := <-c.ch:
				if c.write(msg, closeGrace/2) != nil {
					return
				}
			default:
				c.write([]byte("event: end\ndata: {}\n\n"), closeGrace/2)
				return
			}
		}
	}
	for {
		var err error
		select {
		case <-b.done:
			end()
			return
		case <-r.Context().Done():
			return
		case msg := <-c.ch:
			err = c.write(msg, b.opt.WriteTimeout)
		case <-keepAlive.C:
			err = c.write([]byte(": keep-alive\n\n"), b.opt.WriteTimeout)
		}
		if err != nil {
			b.log.Debug("board: client dropped", "client", r.RemoteAddr, "err", err)
			return
		}
	}
}

// write sends p and flushes it within d.
func (c *client) write(p []byte, d time.Duration) error {
	c.deadline(time.Now().Add(d))
	defer c.deadline(time.Time{})
	if _, err := c.w.Write(p); err != nil {
		return err
	}
	return c.rc.Flush()
}

// deadline sets the connection's write deadline, unless Close has cut it.
func (c *client) deadline(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.kicked {
		c.rc.SetWriteDeadline(t) // not supported by every writer: then WriteTimeout is moot
	}
}

// kick makes the connection's writes fail now, and keeps them failing.
func (c *client) kick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kicked = true
	c.rc.SetWriteDeadline(time.Now())
}
