package ferret

import (
	"context"
	"net"
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

func TestStopKeepsTheDataAndThePort(t *testing.T) {
	s := ForTest(t, Options{})
	ctx := context.Background()
	coll := connect(t, s, 2*time.Second)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "kept"}}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	addr := s.Addr

	if err := s.Stop(); err != nil {
		t.Fatal(err)
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
