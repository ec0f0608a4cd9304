package svctest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// HangProxy is a TCP relay on a free loopback port in front of a server, which a test
// switches between passing bytes through and black-holing them. A black hole is the
// fault a dead network path or a hung server makes, and the one that is hardest on a
// client: connections are still accepted (so a dial succeeds), nothing sent on a new
// or an open connection gets an answer, and nothing is refused or closed, so only the
// client's own deadline ends its wait. When the proxy passes bytes through again,
// what it held is delivered, as after a network partition heals.
//
// It is safe for concurrent use.
type HangProxy struct {
	Addr   string // "127.0.0.1:PORT", where clients connect
	Port   int
	Target string // the server's address

	l        net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup // the accept loop and every relay

	mu    sync.Mutex
	hold  chan struct{}         // non-nil while black-holing; closed to let bytes flow
	conns map[net.Conn]struct{} // open connections, both sides; nil once closed
}

// StartHangProxy starts a HangProxy in front of target, passing bytes through.
// Callers must Close it.
func StartHangProxy(target string) (*HangProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("svctest: hang proxy for %s: listen on loopback: %w", target, err)
	}
	return NewHangProxy(l, target), nil
}

// NewHangProxy starts a HangProxy that relays what l accepts to target, passing
// bytes through. The proxy owns l, and Close closes it: a caller that must keep an
// address across outages, like a server restarted on its port, listens on it again
// and starts a new proxy there. Callers must Close it.
func NewHangProxy(l net.Listener, target string) *HangProxy {
	p := &HangProxy{
		Addr:   l.Addr().String(),
		Target: target,
		l:      l,
		conns:  make(map[net.Conn]struct{}),
	}
	if a, ok := l.Addr().(*net.TCPAddr); ok {
		p.Port = a.Port
	}
	p.wg.Add(1)
	go p.accept()
	return p
}

// HangProxyFor starts a HangProxy in front of target for t and closes it when t ends;
// a failed start is fatal.
func HangProxyFor(t testing.TB, target string) *HangProxy {
	t.Helper()
	p, err := StartHangProxy(target)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// BlackHole makes the proxy hold every byte, both ways, on open connections and on
// those it accepts from now on, until PassThrough.
func (p *HangProxy) BlackHole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hold == nil && p.conns != nil {
		p.hold = make(chan struct{})
	}
}

// PassThrough lets bytes flow again, the held ones first.
func (p *HangProxy) PassThrough() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hold != nil {
		close(p.hold)
		p.hold = nil
	}
}

// Accepted returns how many connections the proxy has accepted so far.
func (p *HangProxy) Accepted() int64 { return p.accepted.Load() }

// Close stops accepting, closes every connection, held ones included, and waits for
// the relays to end.
func (p *HangProxy) Close() error {
	err := p.l.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
	if p.hold != nil {
		close(p.hold)
		p.hold = nil
	}
	p.mu.Unlock()
	p.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("svctest: hang proxy %s for %s: close: %w", p.Addr, p.Target, err)
	}
	return nil
}

func (p *HangProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return // closed by Close
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.relay(c)
	}
}

// relay connects client to the target, once bytes may flow, and copies both ways
// until either side ends. A connection accepted in a black hole is held before it
// reaches the target, so the target never sees it until PassThrough.
func (p *HangProxy) relay(client net.Conn) {
	defer p.wg.Done()
	if !p.track(client) {
		return
	}
	defer p.untrack(client)
	if !p.flowing() {
		return
	}
	var d net.Dialer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	server, err := d.DialContext(ctx, "tcp", p.Target)
	cancel()
	if err != nil {
		return // as a relay does: the client sees its connection closed
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	var both sync.WaitGroup
	both.Go(func() { p.copy(server, client) })
	both.Go(func() { p.copy(client, server) })
	both.Wait()
}

// copy copies src to dst, holding data back while black-holing, and closes both when
// either side ends, so the other direction ends too.
func (p *HangProxy) copy(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.flowing() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// flowing blocks while the proxy black-holes. It reports false when the connection
// must end instead, because Close ran.
func (p *HangProxy) flowing() bool {
	for {
		p.mu.Lock()
		hold, closed := p.hold, p.conns == nil
		p.mu.Unlock()
		if closed {
			return false
		}
		if hold == nil {
			return true
		}
		<-hold // closed by PassThrough or Close
	}
}

// track registers c so that Close can close it; it closes c and reports false if
// Close has already run.
func (p *HangProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *HangProxy) untrack(c net.Conn) {
	_ = c.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}
