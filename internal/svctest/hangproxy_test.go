package svctest

import (
	"bufio"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// echoServer answers every line sent to it with the same line, on a loopback port,
// until t ends.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			})
		}
	})
	return l.Addr().String()
}

// client is one connection through the proxy.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t, c, bufio.NewReader(c)}
}

func (c *client) send(line string) {
	c.t.Helper()
	if err := c.c.SetWriteDeadline(time.Now().Add(2 * time.Second)); err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.c.Write([]byte(line + "\n")); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
}

// reply reads one line, waiting at most wait; "" and the error when none came.
func (c *client) reply(wait time.Duration) (string, error) {
	if err := c.c.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return "", err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return line[:len(line)-1], nil
}

func (c *client) mustReply(want string) {
	c.t.Helper()
	got, err := c.reply(5 * time.Second)
	if err != nil || got != want {
		c.t.Fatalf("reply = %q, %v; want %q", got, err, want)
	}
}

// mustHang checks that no reply comes within wait, and that the connection is still
// open: the read ends by its deadline, not by a close.
func (c *client) mustHang(wait time.Duration) {
	c.t.Helper()
	got, err := c.reply(wait)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatalf("reply in a black hole = %q, %v; want none until the deadline", got, err)
	}
}

func TestHangProxyPassesThroughBlackHolesAndPassesThroughAgain(t *testing.T) {
	t.Parallel()
	p := HangProxyFor(t, echoServer(t))

	open := dial(t, p.Addr)
	open.send("before")
	open.mustReply("before")

	p.BlackHole()
	// An open connection gets no answer, and is not closed.
	open.send("held on an open connection")
	open.mustHang(200 * time.Millisecond)
	// A new connection is accepted, and gets no answer either.
	fresh := dial(t, p.Addr)
	fresh.send("held on a new connection")
	fresh.mustHang(200 * time.Millisecond)

	p.PassThrough()
	// What was held arrives, then everything flows again.
	open.mustReply("held on an open connection")
	fresh.mustReply("held on a new connection")
	open.send("after")
	open.mustReply("after")
	later := dial(t, p.Addr)
	later.send("new after")
	later.mustReply("new after")
	if n := p.Accepted(); n < 2 {
		t.Fatalf("Accepted() = %d, want at least 2", n)
	}

	// The switch can be made again.
	p.BlackHole()
	p.BlackHole()
	open.send("twice")
	open.mustHang(100 * time.Millisecond)
	p.PassThrough()
	p.PassThrough()
	open.mustReply("twice")
}

func TestHangProxyCloseEndsHeldConnections(t *testing.T) {
	t.Parallel()
	p, err := StartHangProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr)
	c.send("one")
	c.mustReply("one")
	p.BlackHole()
	c.send("held")
	held := dial(t, p.Addr)
	held.send("held too")

	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5s with connections held")
	}
	for _, cl := range []*client{c, held} {
		if got, err := cl.reply(2 * time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("after Close: reply %q, %v; want the connection closed", got, err)
		}
	}
	if _, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
		t.Fatal("the proxy still accepts connections after Close")
	}
}

func TestHangProxyClosesTheClientWhenTheTargetIsDown(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	p := HangProxyFor(t, down)
	c := dial(t, p.Addr)
	if got, err := c.reply(5 * time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("reply %q, %v; want the connection closed, as the target refuses it", got, err)
	}
}

func TestNewHangProxyRelaysFromItsListenerAndAnotherTakesItsAddressAfterClose(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := NewHangProxy(l, target)
	if p.Addr != l.Addr().String() || p.Port != l.Addr().(*net.TCPAddr).Port || p.Target != target {
		t.Fatalf("proxy at %s (port %d) for %s; want %s for %s", p.Addr, p.Port, p.Target, l.Addr(), target)
	}
	c := dial(t, p.Addr)
	c.send("first")
	c.mustReply("first")
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got, err := c.reply(2 * time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after Close: reply %q, %v; want the connection closed", got, err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on the listener after Close: %v; want it closed", err)
	}

	// As a server restarted on its port: the same address, a new proxy.
	again, err := net.Listen("tcp", p.Addr)
	if err != nil {
		t.Fatalf("listen on %s again: %v", p.Addr, err)
	}
	next := NewHangProxy(again, target)
	t.Cleanup(func() { _ = next.Close() })
	c = dial(t, p.Addr)
	c.send("second")
	c.mustReply("second")
}
