package ferret

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func connect(t *testing.T, s *Server, timeout time.Duration) *mongo.Collection {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(s.URI()).
		SetTimeout(timeout).SetServerSelectionTimeout(timeout).SetRetryReads(false).SetRetryWrites(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c.Database("test").Collection("things")
}

// eventually retries op until it succeeds: after an outage the driver rediscovers
// the server on its own schedule, which nothing signals.
func eventually(t *testing.T, what string, op func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := op()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still failing after 15s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// helloed opens a connection to addr and has a MongoDB hello answered on it, so it
// is known to reach FerretDB, and leaves it with a 5s deadline.
func helloed(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	doc, err := bson.Marshal(bson.D{{Key: "hello", Value: 1}, {Key: "$db", Value: "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	// An OP_MSG: length, request ID, response to, op code 2013, flags, one body section.
	le := binary.LittleEndian
	msg := le.AppendUint32(nil, uint32(21+len(doc)))
	msg = le.AppendUint32(le.AppendUint32(le.AppendUint32(msg, 1), 0), 2013)
	msg = append(le.AppendUint32(msg, 0), 0)
	if _, err := c.Write(append(msg, doc...)); err != nil {
		t.Fatalf("send hello: %v", err)
	}
	header := make([]byte, 16)
	if _, err := io.ReadFull(c, header); err != nil {
		t.Fatalf("read hello's answer: %v", err)
	}
	if _, err := io.ReadFull(c, make([]byte, le.Uint32(header)-16)); err != nil {
		t.Fatalf("read hello's answer: %v", err)
	}
	return c
}

func TestStopKeepsTheDataAndThePort(t *testing.T) {
	s := ForTest(t, Options{})
	ctx := context.Background()
	coll := connect(t, s, 2*time.Second)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "kept"}}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	addr := s.Addr
	open := helloed(t, addr)

	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return within 10s with a connection open")
	}
	// A crash drops open connections: the read ends by a close, not by its deadline.
	if _, err := open.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a connection open across Stop: %v; want it closed", err)
	}
	if s.Running() {
		t.Error("Running after Stop")
	}
	if err := s.Stop(); err != nil {
		t.Errorf("a second Stop: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the port still accepts connections after Stop")
	}
	if err := coll.FindOne(ctx, bson.D{}).Err(); err == nil {
		t.Fatal("a query succeeded on a stopped server")
	}

	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if s.Addr != addr {
		t.Errorf("Addr changed from %s to %s", addr, s.Addr)
	}
	if err := s.Start(); err != nil {
		t.Errorf("Start of a running server: %v", err)
	}
	eventually(t, "a query after Start", func() error {
		return coll.FindOne(ctx, bson.D{{Key: "_id", Value: "kept"}}).Err()
	})

	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a query after Restart", func() error {
		return coll.FindOne(ctx, bson.D{{Key: "_id", Value: "kept"}}).Err()
	})
}

func TestPauseHoldsEverythingBack(t *testing.T) {
	s := ForTest(t, Options{})
	ctx := context.Background()
	const timeout = 300 * time.Millisecond
	coll := connect(t, s, timeout)
	eventually(t, "the first insert", func() error {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}})
		return err
	})

	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := coll.FindOne(ctx, bson.D{}).Err(); err == nil {
		t.Fatal("a query succeeded on a paused server")
	}
	if took := time.Since(start); took < timeout/2 {
		t.Errorf("the query failed after %v; a paused server should have let it time out", took)
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a query after Resume", func() error {
		return coll.FindOne(ctx, bson.D{{Key: "_id", Value: "x"}}).Err()
	})

	// Stop must not wait for a paused connection.
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	_ = coll.FindOne(ctx, bson.D{}).Err()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Pause(); err == nil {
		t.Error("Pause of a stopped server succeeded")
	}
}

func TestStartRejectsHalfATLSConfiguration(t *testing.T) {
	if s, err := Start(t.TempDir(), Options{TLSCertFile: "cert.pem"}); err == nil {
		_ = s.Stop()
		t.Fatal("Start with a certificate but no key succeeded")
	}
}
