package mongo

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/cache/cachetest"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/svctest/ferret"
)

const testDB = "unicorn"

// opts returns the Options of a Cache at version on s, with a timeout generous
// enough for FerretDB under the race detector on a busy machine.
func opts(s *ferret.Server, version int) Options {
	return Options{Host: s.Addr, Database: testDB, Version: version, Timeout: 2 * time.Second}
}

// newTestCache returns a Cache for o that is closed when t ends.
func newTestCache(t testing.TB, o Options) *Cache {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatalf("New(%+v): %v", o, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rawCollection returns the entries' collection on s through a plain client, to
// write and inspect what a Cache cannot.
func rawCollection(t testing.TB, s *ferret.Server) *mongo.Collection {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(s.URI()).SetTimeout(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	return client.Database(testDB).Collection(DefaultCollection)
}

// put stores v as the raw value of key at version, bypassing the Cache.
func put(t testing.TB, coll *mongo.Collection, version int, key string, v any) {
	t.Helper()
	sk := cache.StorageKey(version, key)
	doc := bson.D{{Key: "_id", Value: sk}, {Key: fieldKey, Value: key}, {Key: fieldValue, Value: v}}
	if _, err := coll.ReplaceOne(context.Background(), bson.D{{Key: "_id", Value: sk}}, doc, options.Replace().SetUpsert(true)); err != nil {
		t.Fatal(err)
	}
}

// rawDoc returns the document stored for key at version.
func rawDoc(t testing.TB, coll *mongo.Collection, version int, key string) bson.Raw {
	t.Helper()
	doc, err := coll.FindOne(context.Background(), bson.D{{Key: "_id", Value: cache.StorageKey(version, key)}}).Raw()
	if err != nil {
		t.Fatalf("the document of %q: %v", key, err)
	}
	return doc
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConformance(t *testing.T) {
	s := ferret.ForTest(t, ferret.Options{})
	raw := rawCollection(t, s)
	cachetest.Conformance(t, cachetest.Backend{
		New: func(t testing.TB, version int) cachetest.Shared {
			return newTestCache(t, opts(s, version))
		},
		Put: func(t testing.TB, version int, key string, v []byte) {
			put(t, raw, version, key, bson.Binary{Data: v})
		},
	})
}

func TestTheDocumentIsReadable(t *testing.T) {
	s := ferret.ForTest(t, ferret.Options{})
	c := newTestCache(t, opts(s, 1))
	raw := rawCollection(t, s)

	for _, key := range []string{"SUNhbkhhelVuaWNvcm4/LTg5OTk=", "not UTF-8 \xff"} {
		cachetest.Set(t, c, 1, key)
		doc := rawDoc(t, raw, 1, key)
		k, ok := bytesOf(doc.Lookup(fieldKey))
		if !ok || string(k) != key {
			t.Errorf("key of %q = %v, want the key", key, doc.Lookup(fieldKey))
		}
		if _, v, ok := doc.Lookup(fieldValue).BinaryOK(); !ok || string(v) != string(cache.EncodeValue(1, key, calc.Sum(1, []byte(key)))) {
			t.Errorf("value of %q = %v, want EncodeValue as BinData", key, doc.Lookup(fieldValue))
		}
		if _, err := doc.LookupErr(fieldExpires); err == nil {
			t.Errorf("an entry without TTL has an expiry date: %v", doc)
		}
	}
	if k, ok := rawDoc(t, raw, 1, "SUNhbkhhelVuaWNvcm4/LTg5OTk=").Lookup(fieldKey).StringValueOK(); !ok {
		t.Errorf("a UTF-8 key is not stored as a string: %q", k)
	}

	t.Run("a value stored as a string is read too", func(t *testing.T) {
		const key = "typed by hand"
		put(t, raw, 1, key, string(cache.EncodeValue(1, key, calc.Sum(1, []byte(key)))))
		cachetest.WantHit(t, c, 1, key)
	})
	t.Run("a value of another BSON type is corrupt", func(t *testing.T) {
		put(t, raw, 1, "a number", 42)
		if _, err := c.Get(ctxT(t), "a number"); !errors.Is(err, cache.ErrCorrupt) {
			t.Fatalf("Get = %v, want ErrCorrupt", err)
		}
	})
}

func TestACorruptValueIsReplaced(t *testing.T) {
	s := ferret.ForTest(t, ferret.Options{})
	ctx := ctxT(t)
	c := newTestCache(t, opts(s, 1))
	raw := rawCollection(t, s)
	const key = "3615-7184-2117"
	cachetest.Set(t, c, 1, key)
	put(t, raw, 1, key, bson.Binary{Data: []byte("H@XX0RR333DDD")})

	// What the Chain does with a corrupt value: delete it, compute, store.
	if _, err := c.Get(ctx, key); !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("Get of garbage = %v, want ErrCorrupt", err)
	}
	if err := c.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	cachetest.WantMiss(t, c, key)
	cachetest.Set(t, c, 1, key)
	cachetest.WantHit(t, c, 1, key)

	t.Run("Set alone overwrites garbage", func(t *testing.T) {
		put(t, raw, 1, key, bson.Binary{Data: []byte("garbage")})
		cachetest.Set(t, c, 1, key)
		cachetest.WantHit(t, c, 1, key)
		if n, err := raw.CountDocuments(ctx, bson.D{{Key: "_id", Value: cache.StorageKey(1, key)}}); err != nil || n != 1 {
			t.Fatalf("%d documents for the key, %v; want 1", n, err)
		}
	})
}

func TestInit(t *testing.T) {
	s := ferret.ForTest(t, ferret.Options{})
	ctx := ctxT(t)
	c := newTestCache(t, opts(s, 1))
	for range 2 {
		if err := c.Init(ctx); err != nil {
			t.Fatalf("Init: %v", err)
		}
	}
	names, err := rawCollection(t, s).Database().ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(names, ","), DefaultCollection) {
		t.Errorf("collections = %q, want %s created", names, DefaultCollection)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("Warnings() = %q, want none without a TTL", w)
	}
	indexes := indexNames(t, rawCollection(t, s))
	if len(indexes) != 1 || indexes[0] != "_id_" {
		t.Errorf("indexes = %q, want only _id_, which is the unique index on the storage key", indexes)
	}
	t.Run("another host's Init finds the collection made", func(t *testing.T) {
		if err := newTestCache(t, opts(s, 2)).Init(ctx); err != nil {
			t.Fatalf("Init: %v", err)
		}
	})
}

func indexNames(t testing.TB, coll *mongo.Collection) []string {
	t.Helper()
	specs, err := coll.Indexes().ListSpecifications(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	return names
}

// commands records the commands a client sends.
type commands struct {
	mu   sync.Mutex
	sent []bson.Raw
}

func (cs *commands) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		cs.sent = append(cs.sent, append(bson.Raw(nil), e.Command...))
	}}
}

func (cs *commands) named(name string) []bson.Raw {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var out []bson.Raw
	for _, c := range cs.sent {
		if _, err := c.LookupErr(name); err == nil {
			out = append(out, c)
		}
	}
	return out
}

func TestTTL(t *testing.T) {
	s := ferret.ForTest(t, ferret.Options{})
	ctx := ctxT(t)
	const ttl = 300 * time.Millisecond
	o := opts(s, 1)
	o.TTL = ttl
	var logged bytes.Buffer
	o.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	var sent commands
	c, err := newCache(o, sent.monitor())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	raw := rawCollection(t, s)

	t.Run("Init asks for a TTL index on the expiry date", func(t *testing.T) {
		if err := c.Init(ctx); err != nil {
			t.Fatalf("Init: %v", err)
		}
		cmds := sent.named("createIndexes")
		if len(cmds) != 1 {
			t.Fatalf("%d createIndexes commands, want 1", len(cmds))
		}
		idx, ok := cmds[0].Lookup("indexes", "0").DocumentOK()
		if !ok {
			t.Fatalf("createIndexes without an index: %v", cmds[0])
		}
		if keys := idx.Lookup("key").Document().String(); keys != `{"expires": {"$numberInt":"1"}}` {
			t.Errorf("index key = %s, want expires ascending", keys)
		}
		if secs, ok := idx.Lookup("expireAfterSeconds").AsInt64OK(); !ok || secs != 0 {
			t.Errorf("expireAfterSeconds = %v, want 0: each entry carries its own date", idx.Lookup("expireAfterSeconds"))
		}
		// FerretDB v1 cannot build TTL indexes; MongoDB and DocumentDB can.
		indexes := strings.Join(indexNames(t, raw), ",")
		warnings := strings.Join(c.Warnings(), "\n")
		switch {
		case strings.Contains(indexes, ttlIndex):
			if warnings != "" {
				t.Errorf("the TTL index exists, yet Warnings() = %q", warnings)
			}
		case !strings.Contains(warnings, "TTL index"):
			t.Errorf("no TTL index (indexes %s) and Warnings() = %q does not say why", indexes, warnings)
		case !strings.Contains(logged.String(), "TTL index"):
			t.Errorf("the warning was not logged; the log holds %q", logged.String())
		}
	})

	t.Run("an entry carries its expiry date and is a miss once past it", func(t *testing.T) {
		before := time.Now()
		cachetest.Set(t, c, 1, "short-lived")
		ms, ok := rawDoc(t, raw, 1, "short-lived").Lookup(fieldExpires).DateTimeOK()
		if !ok {
			t.Fatal("no expiry date")
		}
		exp := time.UnixMilli(ms)
		if exp.Before(before.Add(ttl).Add(-time.Millisecond)) || exp.After(time.Now().Add(ttl)) {
			t.Fatalf("expires %v, want %v after the Set (at %v)", exp, ttl, before)
		}
		cachetest.WantHit(t, c, 1, "short-lived")
		time.Sleep(time.Until(exp)) // the date is known: nothing to poll for
		cachetest.WantMiss(t, c, "short-lived")
		cachetest.Set(t, c, 1, "short-lived")
		cachetest.WantHit(t, c, 1, "short-lived")
	})

	t.Run("an entry without a date never expires, whatever the TTL", func(t *testing.T) {
		const key = "written by a host without a TTL"
		put(t, raw, 1, key, bson.Binary{Data: cache.EncodeValue(1, key, calc.Sum(1, []byte(key)))})
		cachetest.WantHit(t, c, 1, key)
	})
}

func TestTTLIndexModel(t *testing.T) {
	m := ttlIndexModel()
	if got := fmt.Sprint(m.Keys); got != fmt.Sprint(bson.D{{Key: fieldExpires, Value: 1}}) {
		t.Errorf("keys = %s, want expires ascending", got)
	}
	var io options.IndexOptions
	for _, set := range m.Options.List() {
		if err := set(&io); err != nil {
			t.Fatal(err)
		}
	}
	if io.ExpireAfterSeconds == nil || *io.ExpireAfterSeconds != 0 {
		t.Errorf("expireAfterSeconds = %v, want 0", io.ExpireAfterSeconds)
	}
	if io.Name == nil || *io.Name != ttlIndex {
		t.Errorf("name = %v, want %s", io.Name, ttlIndex)
	}
}

// purgeText is what Purge's match looks for in the tests.
const purgeText = "H@XX0RR333DDD"

func TestPurge(t *testing.T) {
	s := ferret.ForTest(t, ferret.Options{})
	ctx := ctxT(t)
	v1 := newTestCache(t, opts(s, 1))
	v2 := newTestCache(t, opts(s, 2))
	raw := rawCollection(t, s)

	// More doomed entries than purgeBatch, among more than one batch of the scan.
	var doomed, kept []string
	var docs []any
	for i := range 1300 {
		if i%2 == 0 {
			k := fmt.Sprintf("x=%d&name=%s", i, purgeText)
			doomed = append(doomed, k)
			docs = append(docs, entry(v1, k), entry(v2, k))
		} else {
			k := fmt.Sprintf("x=%d&name=ok", i)
			kept = append(kept, k)
			docs = append(docs, entry(v1, k))
		}
	}
	// Documents that are not entries, or entries without an original key, stay.
	foreign := []any{
		bson.D{{Key: "_id", Value: "someone:else:" + purgeText}, {Key: fieldValue, Value: "x\n" + purgeText}},
		bson.D{{Key: "_id", Value: "unicorn:v1:not-an-entry"}, {Key: fieldValue, Value: "no newline " + purgeText}},
		bson.D{{Key: "_id", Value: "unicorn:v1:a-number"}, {Key: fieldValue, Value: 7}},
		bson.D{{Key: "_id", Value: 12345}, {Key: fieldValue, Value: "x\n" + purgeText}},
	}
	if _, err := raw.InsertMany(ctx, append(docs, foreign...)); err != nil {
		t.Fatal(err)
	}

	match := func(key string) bool { return strings.Contains(key, purgeText) }
	n, err := v1.Purge(ctx, match)
	if err != nil {
		t.Fatalf("Purge: %v", err)
	}
	if want := 2 * len(doomed); n != want {
		t.Errorf("Purge removed %d, want %d", n, want)
	}
	// What is left, read at once: a Get per key would take seconds.
	want := map[string]bool{}
	for _, k := range kept {
		want[cache.StorageKey(1, k)] = true
	}
	for _, d := range foreign {
		want[fmt.Sprint(d.(bson.D)[0].Value)] = true
	}
	left := map[string]bool{}
	cur, err := raw.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	for cur.Next(ctx) {
		var doc struct {
			ID any `bson:"_id"`
		}
		if err := cur.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		left[fmt.Sprint(doc.ID)] = true
	}
	if err := cur.Err(); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(left, want) {
		t.Errorf("%d documents left, want the %d kept entries and the %d foreign documents", len(left), len(kept), len(foreign))
	}
	cachetest.WantMiss(t, v1, doomed[0])
	cachetest.WantMiss(t, v2, doomed[len(doomed)-1])
	cachetest.WantHit(t, v1, 1, kept[0])

	n, err = v1.Purge(ctx, match)
	if err != nil || n != 0 {
		t.Errorf("second Purge = %d, %v; want 0, nil", n, err)
	}
}

// entry is the document c's Set writes for key.
func entry(c *Cache, key string) bson.D {
	return c.document(cache.StorageKey(c.version, key), key, cache.EncodeValue(c.version, key, calc.Sum(c.version, []byte(key))), time.Now())
}

// failMargin is what FerretDB under the race detector on a busy machine may add
// to Timeout before an operation on a server that is down fails; reconnectWithin
// bounds the driver's rediscovery of a server that is back.
const (
	failMargin      = 500 * time.Millisecond
	reconnectWithin = 15 * time.Second
)

func TestAStoppedServerFailsFast(t *testing.T) {
	s := ferret.ForTest(t, ferret.Options{})
	const timeout = 200 * time.Millisecond
	o := opts(s, 1)
	o.Timeout = timeout
	c := newTestCache(t, o)
	// The first operation may wait for the server to be discovered.
	if err := c.Init(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	cachetest.Set(t, c, 1, "before")

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	cachetest.FailsFast(t, c, timeout+failMargin, "stopped")
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	cachetest.WaitWorking(t, c, reconnectWithin)
	cachetest.WantHit(t, c, 1, "before") // the data directory survived
}

func TestAHungServerFailsFast(t *testing.T) {
	s := ferret.ForTest(t, ferret.Options{})
	const timeout = 200 * time.Millisecond
	o := opts(s, 1)
	o.Timeout = timeout
	c := newTestCache(t, o)
	if err := c.Init(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	cachetest.Set(t, c, 1, "before")

	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	cachetest.FailsFast(t, c, timeout+failMargin, "hung")
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	cachetest.WaitWorking(t, c, reconnectWithin)
	cachetest.WantHit(t, c, 1, "before")
}

func TestADoneContextFailsWithoutAMiss(t *testing.T) {
	s := ferret.ForTest(t, ferret.Options{})
	cachetest.DoneContext(t, newTestCache(t, opts(s, 1)))
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeCerts(t, dir, "127.0.0.1")
	s := ferret.ForTest(t, ferret.Options{TLSCertFile: cert, TLSKeyFile: key})
	o := opts(s, 1)
	o.EnableSSL = true

	t.Run("the CA bundle verifies the server", func(t *testing.T) {
		o := o
		o.CAFilePath = ca
		c := newTestCache(t, o)
		cachetest.Set(t, c, 1, "encrypted")
		cachetest.WantHit(t, c, 1, "encrypted")
	})
	t.Run("another CA does not", func(t *testing.T) {
		other, _, _ := writeCerts(t, t.TempDir(), "127.0.0.1")
		o := o
		o.CAFilePath = other
		o.Timeout = 500 * time.Millisecond
		if err := newTestCache(t, o).Ping(context.Background()); err == nil {
			t.Fatal("Ping succeeded against a certificate of an unknown authority")
		}
	})
	t.Run("without SSL the server is not reached", func(t *testing.T) {
		o := opts(s, 1)
		o.Timeout = 500 * time.Millisecond
		if err := newTestCache(t, o).Ping(context.Background()); err == nil {
			t.Fatal("Ping in plain text succeeded against a TLS server")
		}
	})
}

// writeCerts writes a new CA and a certificate for host signed by it into dir, and
// returns the paths of the CA, the certificate and its key, all PEM.
func writeCerts(t testing.TB, dir, host string) (caFile, certFile, keyFile string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, leafKey := newKey(), newKey()
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "unicorn test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP(host)},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", leafDER), write("key.pem", "EC PRIVATE KEY", keyDER)
}

func TestClientOptions(t *testing.T) {
	ca, _, _ := writeCerts(t, t.TempDir(), "127.0.0.1")
	co, name, err := clientOptions(Options{
		Host: "unicorn.cluster-abc.us-east-1.docdb.amazonaws.com", User: "team", Pass: "s3cret",
		Database: "gameday", EnableSSL: true, CAFilePath: ca, Version: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "unicorn.cluster-abc.us-east-1.docdb.amazonaws.com:27017/gameday.unicorntable"; name != want {
		t.Errorf("name = %q, want %q", name, want)
	}
	if strings.Contains(name, "s3cret") {
		t.Errorf("the name %q shows the password", name)
	}
	if co.RetryWrites == nil || *co.RetryWrites {
		t.Error("retryable writes are on; DocumentDB rejects them")
	}
	if co.RetryReads == nil || *co.RetryReads {
		t.Error("retryable reads are on; the breaker decides about retries")
	}
	if co.Auth == nil || co.Auth.Username != "team" || co.Auth.Password != "s3cret" || co.Auth.AuthSource != "admin" {
		t.Errorf("Auth = %+v, want team's credentials against admin", co.Auth)
	}
	tc := co.TLSConfig
	switch {
	case tc == nil:
		t.Fatal("no TLS config with EnableSSL")
	case tc.RootCAs == nil:
		t.Error("the CA bundle is not used")
	case tc.InsecureSkipVerify:
		t.Error("certificate verification is off")
	case tc.MinVersion != tls.VersionTLS12:
		t.Errorf("MinVersion = %x, want TLS 1.2", tc.MinVersion)
	}

	t.Run("without SSL there is no TLS config and no auth without a user", func(t *testing.T) {
		co, _, err := clientOptions(Options{Host: "db", Database: "d", Version: 1})
		if err != nil {
			t.Fatal(err)
		}
		if co.TLSConfig != nil || co.Auth != nil {
			t.Errorf("TLSConfig = %v, Auth = %v; want neither", co.TLSConfig, co.Auth)
		}
	})
	t.Run("SSL without a CA file uses the system's roots", func(t *testing.T) {
		co, _, err := clientOptions(Options{Host: "db", Database: "d", Version: 1, EnableSSL: true})
		if err != nil {
			t.Fatal(err)
		}
		if co.TLSConfig == nil || co.TLSConfig.RootCAs != nil {
			t.Errorf("TLSConfig = %+v, want one with the system's roots", co.TLSConfig)
		}
	})
	t.Run("a port in the host is used", func(t *testing.T) {
		co, _, err := clientOptions(Options{Host: "db:27018", Database: "d", Version: 1})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(co.Hosts) != "[db:27018]" {
			t.Errorf("Hosts = %v, want [db:27018]", co.Hosts)
		}
	})
}

func TestNewRejectsBadOptions(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := Options{Host: "db", Database: "unicorn", Version: 1}
	for name, change := range map[string]func(o *Options){
		"no host":                          func(o *Options) { o.Host = "" },
		"no database":                      func(o *Options) { o.Database = "" },
		"a database name with a dot":       func(o *Options) { o.Database = "a.b" },
		"a database name too long":         func(o *Options) { o.Database = strings.Repeat("d", 64) },
		"a collection name with a dollar":  func(o *Options) { o.Collection = "a$b" },
		"a system collection":              func(o *Options) { o.Collection = "system.users" },
		"a negative port":                  func(o *Options) { o.Port = -1 },
		"a port beyond 65535":              func(o *Options) { o.Port = 65536 },
		"a port in the host and in Port":   func(o *Options) { o.Host, o.Port = "db:1", 2 },
		"a bad port in the host":           func(o *Options) { o.Host = "db:x" },
		"a connection string as the host":  func(o *Options) { o.Host = "mongodb://db/" },
		"a password without a user":        func(o *Options) { o.Pass = "s3cret" },
		"a CA file without SSL":            func(o *Options) { o.CAFilePath = notPEM },
		"a CA file that does not exist":    func(o *Options) { o.EnableSSL, o.CAFilePath = true, filepath.Join(dir, "missing.pem") },
		"a CA file without a certificate":  func(o *Options) { o.EnableSSL, o.CAFilePath = true, notPEM },
		"a negative TTL":                   func(o *Options) { o.TTL = -time.Second },
		"a negative timeout":               func(o *Options) { o.Timeout = -time.Second },
		"version 0":                        func(o *Options) { o.Version = 0 },
		"a version beyond calc.MaxVersion": func(o *Options) { o.Version = calc.MaxVersion + 1 },
	} {
		t.Run(name, func(t *testing.T) {
			o := ok
			change(&o)
			if c, err := New(o); err == nil {
				_ = c.Close()
				t.Fatalf("New(%+v) succeeded", o)
			}
		})
	}
	t.Run("the base options are fine", func(t *testing.T) {
		c, err := New(ok)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
	})
}

func BenchmarkGetHit(b *testing.B) {
	s := ferret.ForTest(b, ferret.Options{})
	ctx := context.Background()
	c := newTestCache(b, opts(s, 1))
	const key = "bench-key-with-a-typical-length-of-some-forty-bytes"
	if err := c.Set(ctx, key, calc.Sum(1, []byte(key))); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}
