// Package mongo is the shared cache tier on MongoDB or Amazon DocumentDB.
//
// Each entry is one document in the configured collection:
//
//	{_id: "unicorn:v1:<hex SHA-256 of the key>", key: <the key>, value: BinData(<stored value>), expires: ISODate(…)}
//
// The _id is cache.StorageKey, so the collection's mandatory unique _id index is the
// unique index on the key and its version: a second index on the key would only slow
// every write down. value is cache.EncodeValue and is served only if
// cache.DecodeValue accepts it; anything else is reported as cache.ErrCorrupt for the
// caller to delete. key is the original key, so an operator can read the collection;
// a key that is not valid UTF-8 cannot be a BSON string and is stored as BinData.
// expires is there only when entries have a TTL: Init then builds a TTL index on it,
// and Get treats an entry past its date as a miss, because the server's TTL monitor
// removes expired documents only about once a minute.
//
// DocumentDB wants TLS with Amazon's CA bundle (Options.EnableSSL and CAFilePath)
// and does not support retryable writes, so the client never retries: like the
// other shared tiers it fails fast, and the caller's circuit breaker decides what
// happens next.
package mongo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// DefaultPort is the port used when Options.Port is zero, MongoDB's and DocumentDB's.
const DefaultPort = 27017

// DefaultCollection is the collection used when Options.Collection is empty: the
// name contest teams give their table in every other store.
const DefaultCollection = "unicorntable"

// DefaultTimeout bounds each cache operation when Options.Timeout is zero. It is
// short because a cache answer that takes longer is not worth waiting for.
const DefaultTimeout = 100 * time.Millisecond

// adminTimeout bounds each round trip of Init and Purge, which may legitimately
// take longer than a lookup (building an index, a page of a large scan), unless
// Timeout is longer still. Their context bounds them as a whole.
const adminTimeout = 30 * time.Second

// minDialTimeout is the least time a connection gets to be established (TCP, TLS,
// hello and authentication). A request never waits that long for it, since its own
// context ends first, but the connection then joins the pool for the requests
// after it instead of being abandoned half-way through a TLS handshake.
const minDialTimeout = time.Second

// purgeBatch bounds the number of _ids in one deleteMany of Purge, and is the batch
// size of its scan: large enough that a purge of a big cache takes few round trips,
// small enough that each stays well within its timeout.
const purgeBatch = 1000

// Field names of an entry document.
const (
	fieldKey     = "key"
	fieldValue   = "value"
	fieldExpires = "expires"
)

// ttlIndex is the name of the index through which the server removes expired entries.
const ttlIndex = "unicorn_expires_ttl"

// Server error codes: NamespaceExists answers the creation of a collection that
// exists; NotImplemented is what FerretDB answers an index option it lacks with, and
// InvalidOptions what other servers answer an option they do not support with.
const (
	codeNamespaceExists = 48
	codeNotImplemented  = 238
	codeInvalidOptions  = 72
)

// Options configures a Cache. Host, Database and Version are required; every other
// zero value works.
type Options struct {
	// Host is the server's name or address (MongoDbHost), such as a DocumentDB
	// cluster endpoint. It may carry a port ("db:27018") when Port is zero.
	Host string
	// Port is the server's TCP port (MongoDbPort). If zero, DefaultPort.
	Port int
	// User and Pass are the credentials (MongoDbUser, MongoDbPass), checked against
	// the admin database, where DocumentDB keeps its users. Without User the client
	// does not authenticate.
	User, Pass string
	// Database and Collection hold the entries (MongoDbDatabase,
	// MongoDbCollection). If Collection is empty, DefaultCollection.
	Database, Collection string
	// EnableSSL encrypts connections and verifies the server's certificate
	// (MongoDbEnableSSL), as DocumentDB requires by default.
	EnableSSL bool
	// CAFilePath is a PEM bundle of the certificate authorities the server's
	// certificate is verified against (MongoDbCAFilePath), such as Amazon's
	// global-bundle.pem for DocumentDB. If empty, the system's roots are used. It
	// is read by New and needs EnableSSL.
	CAFilePath string
	// TTL is how long an entry is served (CacheTTL); zero means forever.
	TTL time.Duration
	// Version is the CalcVersion entries are stored and checked under.
	Version int
	// Timeout bounds each cache operation (CacheTimeout), including waiting for a
	// server and a connection, even when the caller's context has no deadline. If
	// zero, DefaultTimeout is used.
	Timeout time.Duration
	// Logger receives what an operator should know that no call returns, such as
	// a server that cannot expire entries by itself. If nil, it is discarded.
	Logger *slog.Logger
}

// Cache is a shared cache tier on MongoDB or DocumentDB. It is safe for concurrent
// use.
type Cache struct {
	client  *mongo.Client
	coll    *mongo.Collection
	version int
	ttl     time.Duration
	timeout time.Duration
	logger  *slog.Logger
	name    string // host:port/database.collection, for messages

	initMu   sync.Mutex // held by the one Init running
	inited   bool
	warnings []string
}

var (
	_ cache.Cache       = (*Cache)(nil)
	_ cache.Deleter     = (*Cache)(nil)
	_ cache.Pinger      = (*Cache)(nil)
	_ cache.Purger      = (*Cache)(nil)
	_ cache.Initializer = (*Cache)(nil)
)

// New checks o, reads the CA bundle and returns a Cache. It does not wait for the
// server: the client connects in the background, so a server that is down at
// start-up is handled by the caller's breaker like one that goes down later.
func New(o Options) (*Cache, error) {
	return newCache(o, nil)
}

// newCache is New with a command monitor, through which tests see what is sent.
func newCache(o Options, monitor *event.CommandMonitor) (*Cache, error) {
	co, name, err := clientOptions(o)
	if err != nil {
		return nil, err
	}
	if monitor != nil {
		co.SetMonitor(monitor)
	}
	client, err := mongo.Connect(co)
	if err != nil {
		return nil, fmt.Errorf("mongo %s: %w", name, err)
	}
	if o.Collection == "" {
		o.Collection = DefaultCollection
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	return &Cache{
		client:  client,
		coll:    client.Database(o.Database).Collection(o.Collection),
		version: o.Version,
		ttl:     o.TTL,
		timeout: timeout,
		logger:  o.Logger,
		name:    name,
	}, nil
}

// clientOptions checks o and translates it into driver options, and names the
// collection for messages.
func clientOptions(o Options) (*options.ClientOptions, string, error) {
	if err := cache.CheckOptions(o.Version, o.TTL, o.Timeout); err != nil {
		return nil, "", fmt.Errorf("mongo: %w", err)
	}
	addr, err := address(o.Host, o.Port)
	if err != nil {
		return nil, "", err
	}
	coll := o.Collection
	if coll == "" {
		coll = DefaultCollection
	}
	name := addr + "/" + o.Database + "." + coll
	if err := checkDatabase(o.Database); err != nil {
		return nil, "", fmt.Errorf("mongo %s: %w", name, err)
	}
	if err := checkCollection(coll); err != nil {
		return nil, "", fmt.Errorf("mongo %s: %w", name, err)
	}
	if o.Pass != "" && o.User == "" {
		return nil, "", fmt.Errorf("mongo %s: a password without a user", name)
	}
	if o.CAFilePath != "" && !o.EnableSSL {
		return nil, "", fmt.Errorf("mongo %s: a CA file (%s) without SSL enabled", name, o.CAFilePath)
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	dial := max(timeout, minDialTimeout)
	co := options.Client().
		SetHosts([]string{addr}).
		SetAppName("unicorn").
		// DocumentDB rejects retryable writes; and a retried read or write costs a
		// second timeout that the breaker, not the driver, should decide to spend.
		SetRetryWrites(false).
		SetRetryReads(false).
		SetConnectTimeout(dial).
		// Operations bound server selection by their own context (Timeout for cache
		// operations); this only caps Init and Purge while no server is known.
		SetServerSelectionTimeout(dial)
	if o.User != "" {
		co.SetAuth(options.Credential{Username: o.User, Password: o.Pass, AuthSource: "admin"})
	}
	if o.EnableSSL {
		tc, err := tlsConfig(o.CAFilePath)
		if err != nil {
			return nil, "", fmt.Errorf("mongo %s: %w", name, err)
		}
		co.SetTLSConfig(tc)
	}
	return co, name, nil
}

// address joins host and port, taking the port from host when port is zero.
func address(host string, port int) (string, error) {
	switch {
	case host == "":
		return "", errors.New("mongo: no host")
	case port < 0 || port > 65535:
		return "", fmt.Errorf("mongo: port %d out of range", port)
	}
	if h, p, err := net.SplitHostPort(host); err == nil {
		if port != 0 {
			return "", fmt.Errorf("mongo: host %q has a port and Port is %d", host, port)
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 || h == "" {
			return "", fmt.Errorf("mongo: host %q is not host:port", host)
		}
		return host, nil
	}
	if strings.Contains(host, "/") || strings.Contains(host, ",") {
		// A connection string or a list of seeds: neither is what MongoDbHost holds.
		return "", fmt.Errorf("mongo: host %q is not a host name or address", host)
	}
	if port == 0 {
		port = DefaultPort
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// checkDatabase applies MongoDB's rules for database names.
func checkDatabase(db string) error {
	switch {
	case db == "":
		return errors.New("no database")
	case len(db) > 63:
		return fmt.Errorf("database name %q is longer than 63 bytes", db)
	case strings.ContainsAny(db, "/\\. \"$*<>:|?\x00"):
		return fmt.Errorf("database name %q contains one of / \\ . \" $ * < > : | ? or a space", db)
	}
	return nil
}

// checkCollection applies MongoDB's rules for collection names.
func checkCollection(coll string) error {
	switch {
	case strings.ContainsAny(coll, "$\x00"):
		return fmt.Errorf("collection name %q contains $ or NUL", coll)
	case strings.HasPrefix(coll, "system."):
		return fmt.Errorf("collection name %q is reserved", coll)
	case len(coll) > 120:
		return fmt.Errorf("collection name %q is longer than 120 bytes", coll)
	}
	return nil
}

// tlsConfig verifies servers against the certificates in caFile, or the system's
// roots when it is empty. The driver sets each connection's ServerName to the host
// it dials, so the instances a DocumentDB cluster endpoint announces are verified
// under their own names.
func tlsConfig(caFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	tc.RootCAs = pool
	return tc, nil
}

// opCtx bounds a cache operation by the Timeout, whatever ctx allows.
func (c *Cache) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// adminCtx bounds one round trip of Init or Purge.
func (c *Cache) adminCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, max(c.timeout, adminTimeout))
}

// Get returns the result stored for key, cache.ErrMiss if there is none or it has
// expired, or an error wrapping cache.ErrCorrupt if the stored value is not the
// answer for key.
func (c *Cache) Get(ctx context.Context, key string) (calc.Result, error) {
	sk := cache.StorageKey(c.version, key)
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	doc, err := c.coll.FindOne(ctx, bson.D{{Key: "_id", Value: sk}},
		options.FindOne().SetProjection(bson.D{{Key: fieldValue, Value: 1}, {Key: fieldExpires, Value: 1}}),
	).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return calc.Result{}, cache.ErrMiss
	}
	if err != nil {
		return calc.Result{}, fmt.Errorf("mongo %s: get %s: %w", c.name, sk, err)
	}
	if exp, err := doc.LookupErr(fieldExpires); err == nil {
		// An entry without a date never expires, whatever this host's TTL: it was
		// written by a host without one.
		if ms, ok := exp.DateTimeOK(); ok && !time.Now().Before(time.UnixMilli(ms)) {
			return calc.Result{}, cache.ErrMiss
		}
	}
	v, ok := bytesOf(doc.Lookup(fieldValue))
	if !ok {
		return calc.Result{}, fmt.Errorf("mongo %s: get %s: %w (value is BSON %v)", c.name, sk, cache.ErrCorrupt, doc.Lookup(fieldValue).Type)
	}
	r, err := cache.DecodeValue(c.version, key, v)
	if err != nil {
		return calc.Result{}, fmt.Errorf("mongo %s: get %s: %w", c.name, sk, err)
	}
	return r, nil
}

// bytesOf returns the bytes of a BinData or string value.
func bytesOf(v bson.RawValue) ([]byte, bool) {
	if _, b, ok := v.BinaryOK(); ok {
		return b, true
	}
	if s, ok := v.StringValueOK(); ok {
		return []byte(s), true
	}
	return nil, false
}

// Set stores r for key, replacing what was there, with an expiry date if entries
// have a TTL.
func (c *Cache) Set(ctx context.Context, key string, r calc.Result) error {
	sk := cache.StorageKey(c.version, key)
	doc := c.document(sk, key, cache.EncodeValue(c.version, key, r), time.Now())
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	_, err := c.coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: sk}}, doc, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("mongo %s: set %s: %w", c.name, sk, err)
	}
	return nil
}

// document is the entry stored under sk for key with value v, written at now.
func (c *Cache) document(sk, key string, v []byte, now time.Time) bson.D {
	var k any = key
	if !utf8.ValidString(key) {
		k = bson.Binary{Data: []byte(key)}
	}
	doc := bson.D{
		{Key: "_id", Value: sk},
		{Key: fieldKey, Value: k},
		{Key: fieldValue, Value: bson.Binary{Data: v}},
	}
	if c.ttl > 0 {
		doc = append(doc, bson.E{Key: fieldExpires, Value: bson.NewDateTimeFromTime(now.Add(c.ttl))})
	}
	return doc
}

// Delete removes key; removing an absent key is not an error.
func (c *Cache) Delete(ctx context.Context, key string) error {
	sk := cache.StorageKey(c.version, key)
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	if _, err := c.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: sk}}); err != nil {
		return fmt.Errorf("mongo %s: delete %s: %w", c.name, sk, err)
	}
	return nil
}

// Ping reports whether the primary answers, with the credentials given.
func (c *Cache) Ping(ctx context.Context) error {
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	if err := c.client.Ping(ctx, readpref.Primary()); err != nil {
		return fmt.Errorf("mongo %s: ping: %w", c.name, err)
	}
	return nil
}

// Init makes sure the collection exists and, when entries have a TTL, that the
// server removes expired ones through a TTL index on their expiry date. The index
// has expireAfterSeconds 0 because each entry carries its own date, so hosts with
// different TTLs share one index. A server that cannot build a TTL index (FerretDB
// v1) is not an error: expired entries are still misses and are replaced by the
// next Set, and Warnings says so. An unreachable server yields an error, and the
// caller calls Init again later. Init is idempotent and safe for concurrent use:
// once it has succeeded it returns nil at once.
func (c *Cache) Init(ctx context.Context) error {
	c.initMu.Lock()
	defer c.initMu.Unlock()
	if c.inited {
		return nil
	}
	if err := c.createCollection(ctx); err != nil {
		return fmt.Errorf("mongo %s: init: %w", c.name, err)
	}
	var warnings []string
	if c.ttl > 0 {
		w, err := c.createTTLIndex(ctx)
		if err != nil {
			return fmt.Errorf("mongo %s: init: %w", c.name, err)
		}
		warnings = append(warnings, w...)
	}
	c.inited, c.warnings = true, warnings
	// Logged here rather than by the caller: Init may first succeed long after
	// startup, from a probe, and the operator should still see them.
	if c.logger != nil {
		for _, w := range warnings {
			c.logger.Warn("mongo backend: "+w, "backend", "mongo")
		}
	}
	return nil
}

// Warnings are the limits of the server Init found that an operator should know
// about, such as a TTL it cannot enforce by itself. They are nil until Init has
// succeeded.
func (c *Cache) Warnings() []string {
	c.initMu.Lock()
	defer c.initMu.Unlock()
	return slices.Clone(c.warnings)
}

// createCollection creates the collection unless it exists, so that an operator
// sees it, and a user without the right to write there finds out at startup.
func (c *Cache) createCollection(ctx context.Context) error {
	ctx, cancel := c.adminCtx(ctx)
	defer cancel()
	err := c.coll.Database().CreateCollection(ctx, c.coll.Name())
	if slices.Contains(mongo.ErrorCodes(err), codeNamespaceExists) {
		return nil
	}
	return err
}

// createTTLIndex builds the TTL index, or returns why it cannot be built.
func (c *Cache) createTTLIndex(ctx context.Context) ([]string, error) {
	ctx, cancel := c.adminCtx(ctx)
	defer cancel()
	_, err := c.coll.Indexes().CreateOne(ctx, ttlIndexModel())
	if err == nil {
		return nil, nil
	}
	var ce mongo.CommandError
	if errors.As(err, &ce) && (ce.HasErrorCode(codeNotImplemented) || ce.HasErrorCode(codeInvalidOptions)) {
		return []string{fmt.Sprintf("the server cannot build a TTL index on %s (%s): "+
			"expired entries are served as misses and replaced, but only deleted when computed again", c.name, ce.Message)}, nil
	}
	return nil, fmt.Errorf("create the TTL index: %w", err)
}

// ttlIndexModel is the index through which the server deletes expired entries.
func ttlIndexModel() mongo.IndexModel {
	return mongo.IndexModel{
		Keys:    bson.D{{Key: fieldExpires, Value: 1}},
		Options: options.Index().SetName(ttlIndex).SetExpireAfterSeconds(0),
	}
}

// Purge deletes every entry, of any version, whose original key match accepts, and
// returns how many it removed. It scans the entries' _id range a batch at a time
// and deletes each batch's matches with one deleteMany, counting what the server
// removed, so an entry deleted meanwhile is not counted. Documents outside that
// range, or whose value carries no original key, are left alone.
func (c *Cache) Purge(ctx context.Context, match func(key string) bool) (int, error) {
	n, err := c.purge(ctx, match)
	if err != nil {
		return n, fmt.Errorf("mongo %s: purge: %w", c.name, err)
	}
	return n, nil
}

func (c *Cache) purge(ctx context.Context, match func(string) bool) (int, error) {
	// Every storage key starts with cache.StoragePrefix; the range is that prefix
	// up to the next string, which the _id index serves without a regex.
	prefix := cache.StoragePrefix
	end := prefix[:len(prefix)-1] + string(prefix[len(prefix)-1]+1)
	filter := bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: prefix}, {Key: "$lt", Value: end}}}}
	fctx, cancel := c.adminCtx(ctx)
	cur, err := c.coll.Find(fctx, filter, options.Find().
		SetProjection(bson.D{{Key: fieldValue, Value: 1}}).
		SetBatchSize(purgeBatch))
	cancel()
	if err != nil {
		return 0, err
	}
	defer func() {
		cctx, cancel := c.adminCtx(context.WithoutCancel(ctx))
		defer cancel()
		_ = cur.Close(cctx)
	}()

	n := 0
	var doomed []string
	flush := func() error {
		if len(doomed) == 0 {
			return nil
		}
		dctx, cancel := c.adminCtx(ctx)
		defer cancel()
		res, err := c.coll.DeleteMany(dctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: doomed}}}})
		if err != nil {
			return err
		}
		n += int(res.DeletedCount)
		doomed = doomed[:0]
		return nil
	}
	for {
		more, err := c.next(ctx, cur)
		if err != nil {
			return n, err
		}
		if !more {
			break
		}
		id, ok := cur.Current.Lookup("_id").StringValueOK()
		if !ok {
			continue
		}
		v, ok := bytesOf(cur.Current.Lookup(fieldValue))
		if !ok {
			continue
		}
		if orig, ok := cache.ValueKey(v); ok && match(orig) {
			doomed = append(doomed, id)
			if len(doomed) == purgeBatch {
				if err := flush(); err != nil {
					return n, err
				}
			}
		}
	}
	return n, flush()
}

// next advances cur, bounding the round trip when it needs the next batch.
func (c *Cache) next(ctx context.Context, cur *mongo.Cursor) (bool, error) {
	if cur.RemainingBatchLength() > 0 {
		return cur.Next(ctx), nil // in memory: no round trip
	}
	nctx, cancel := c.adminCtx(ctx)
	defer cancel()
	if cur.Next(nctx) {
		return true, nil
	}
	return false, cur.Err()
}

// Close closes the connections. The Cache must not be used afterwards.
func (c *Cache) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), max(c.timeout, minDialTimeout))
	defer cancel()
	return c.client.Disconnect(ctx)
}
