// Package dynamo is the shared cache tier on Amazon DynamoDB: one item per key in a
// table whose partition key is the string attribute "id".
//
// An item holds
//
//	id       S  cache.StorageKey of the key: unicorn:v<version>:<hex SHA-256 of the key>
//	input    S  the original key (B when it is not valid UTF-8), for people reading the table
//	value    S  cache.EncodeValue: the token body of the answer, a newline and the key (B when not UTF-8)
//	expires  N  when the entry expires, in epoch seconds; only with a TTL
//
// and the table's Time to Live is enabled on "expires", so DynamoDB deletes expired
// items itself. It does so lazily, up to days late, so Get treats an item past its
// expiry as a miss. A read is served only if cache.DecodeValue accepts it.
//
// The client is configured as the AWS CLI is: the default credential chain
// (environment, shared files, SSO, the EC2 instance role), the region from
// Options.Region, else AWS_REGION or the shared config, else the instance metadata;
// and the SDK's standard endpoint override, AWS_ENDPOINT_URL_DYNAMODB or
// AWS_ENDPOINT_URL (endpoint_url in the shared config), for DynamoDB Local, dynalite
// or LocalStack. Cache operations fail fast: no retries, each bounded by
// Options.Timeout, because the caller puts a circuit breaker in front of this tier
// and computing beats waiting for a slow cache.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// ErrNoTable is wrapped by Init (and by any operation that finds the table gone) when
// the table does not exist and Options.CreateTable is false. It matches
// cache.ErrUnusable: a configuration error, not an outage. Init's message gives the
// aws commands that create the table.
var ErrNoTable = cache.Unusable("dynamo: table does not exist")

// ErrSchema is wrapped by Init when the table exists but its key is not the string
// partition key "id" alone. Like ErrNoTable it matches cache.ErrUnusable.
var ErrSchema = cache.Unusable("dynamo: table cannot be used")

// DefaultTimeout bounds each cache operation when Options.Timeout is zero; it matches
// CacheTimeout's default.
const DefaultTimeout = 100 * time.Millisecond

// The item's attributes.
const (
	attrID      = "id"
	attrInput   = "input"
	attrValue   = "value"
	attrExpires = "expires"
)

// initBudget is the least time Ping gives Init when it has to run it.
const initBudget = 5 * time.Second

// imdsTimeout bounds asking the instance metadata service for the region; off EC2 it
// does not answer.
const imdsTimeout = 2 * time.Second

// maxIdleConns is how many connections to DynamoDB are kept open for reuse: a hit is
// one HTTPS request, and a new TLS connection would cost more than the request.
const maxIdleConns = 64

// Options configures a Cache. Only Table is required.
type Options struct {
	// Table is the table's name (DynamoTable): 3 to 255 letters, digits, '_', '-'
	// or '.'.
	Table string
	// CreateTable lets Init create a missing table, with on-demand billing, and
	// enable its TTL on "expires" (DynamoCreateTable), instead of failing with
	// ErrNoTable. It needs dynamodb:CreateTable, DescribeTable, DescribeTimeToLive
	// and UpdateTimeToLive; cache operations need GetItem, PutItem, DeleteItem and
	// DescribeTable (Ping), and Purge needs Scan.
	CreateTable bool
	// Region is the AWS region (AwsRegion). If empty, the SDK's default (AWS_REGION,
	// AWS_DEFAULT_REGION, the shared config) is used, else the EC2 instance's own.
	Region string
	// TTL is how long an entry is served (CacheTTL); 0 means forever. Expiry has a
	// granularity of one second: an entry lives between TTL and TTL + 1s.
	TTL time.Duration
	// Version is the CalcVersion whose answers are stored and served. If zero, 1.
	Version int
	// Timeout bounds each Get, Set, Delete and Ping, including a first connection
	// (CacheTimeout). Init and Purge are bounded by their context only, and retry
	// throttled or failed requests as the SDK does by default. If zero,
	// DefaultTimeout is used.
	Timeout time.Duration
	// Logger receives Init's warnings and what the SDK logs on its own; the errors
	// that matter are also returned. If nil, those lines are discarded.
	Logger *slog.Logger
	// AWS, when not nil, is used instead of the SDK's default configuration: tests
	// pass one with an endpoint and static credentials. Region overrides its region;
	// its retryer and HTTP client's pool are replaced as described above.
	AWS *aws.Config
}

// Cache is a shared cache tier on DynamoDB. It is safe for concurrent use. Besides
// cache.Cache it is a cache.Initializer (Init checks or creates the table; Ping runs
// it until it has succeeded), a cache.Deleter, a cache.Pinger and a cache.Purger.
type Cache struct {
	o        Options
	client   *dynamodb.Client // cache operations: no retries
	admin    *dynamodb.Client // Init and Purge: the SDK's standard retries
	region   string
	endpoint string          // the endpoint override, "" for AWS's own
	idle     *http.Transport // nil when the caller's configuration brought its own client

	initSem  chan struct{} // held by the one Init running; waiters honour ctx
	ready    atomic.Bool   // Init has succeeded and the table has not gone since
	warnings atomic.Pointer[[]string]

	scanLimit int32 // items per Scan page; 0 = DynamoDB's 1 MB pages (tests set it)
}

var (
	_ cache.Cache       = (*Cache)(nil)
	_ cache.Initializer = (*Cache)(nil)
	_ cache.Deleter     = (*Cache)(nil)
	_ cache.Pinger      = (*Cache)(nil)
	_ cache.Purger      = (*Cache)(nil)
)

// New checks o, loads the AWS configuration and builds the clients. It does no
// network I/O, so DynamoDB being unreachable at startup is handled by the caller's
// breaker like an outage later, except when nothing names a region: then it asks the
// EC2 instance metadata service, which answers within a millisecond on EC2 and is
// given up on after 2s elsewhere.
func New(o Options) (*Cache, error) {
	ctx := context.Background()
	if !ValidTableName(o.Table) {
		return nil, fmt.Errorf("dynamo: table name %q: want 3 to 255 letters, digits, '_', '-' or '.'", o.Table)
	}
	if o.Version == 0 {
		o.Version = 1
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if err := cache.CheckOptions(o.Version, o.TTL, o.Timeout); err != nil {
		return nil, fmt.Errorf("dynamo: %w", err)
	}
	logger := sdkLogger{o.Logger}
	var cfg aws.Config
	if o.AWS != nil {
		cfg = o.AWS.Copy()
	} else {
		var err error
		cfg, err = awsconfig.LoadDefaultConfig(ctx, awsconfig.WithLogger(logger))
		if err != nil {
			return nil, fmt.Errorf("dynamo: loading the AWS configuration: %w", err)
		}
	}
	if o.Region != "" {
		cfg.Region = o.Region
	}
	if cfg.Region == "" && o.AWS == nil {
		cfg.Region = imdsRegion(ctx, cfg)
	}
	if cfg.Region == "" {
		return nil, errors.New("dynamo: no AWS region: set AwsRegion (or AWS_REGION, or region in ~/.aws/config)")
	}
	cfg.Logger = logger

	c := &Cache{o: o, region: cfg.Region, initSem: make(chan struct{}, 1)}
	switch hc := cfg.HTTPClient.(type) {
	case nil:
		c.idle = pooled(awshttp.NewBuildableClient())
	case *awshttp.BuildableClient: // the SDK's default, with AWS_CA_BUNDLE applied
		c.idle = pooled(hc)
	}
	if c.idle != nil {
		cfg.HTTPClient = &http.Client{
			Transport:     c.idle,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	c.client = dynamodb.NewFromConfig(cfg, func(do *dynamodb.Options) {
		do.Retryer = aws.NopRetryer{}
	})
	c.admin = dynamodb.NewFromConfig(cfg, func(do *dynamodb.Options) {
		do.Retryer = retry.NewStandard()
	})
	if ep := c.client.Options().BaseEndpoint; ep != nil {
		c.endpoint = *ep
	}
	return c, nil
}

// pooled is b's transport keeping more idle connections per host than the SDK's 10.
func pooled(b *awshttp.BuildableClient) *http.Transport {
	tr := b.GetTransport()
	tr.MaxIdleConns = max(tr.MaxIdleConns, maxIdleConns)
	tr.MaxIdleConnsPerHost = maxIdleConns
	return tr
}

// imdsRegion is the EC2 instance's region from the metadata service (IMDSv2), or ""
// off EC2 or when AWS_EC2_METADATA_DISABLED is true.
func imdsRegion(ctx context.Context, cfg aws.Config) string {
	ctx, cancel := context.WithTimeout(ctx, imdsTimeout)
	defer cancel()
	out, err := imds.NewFromConfig(cfg).GetRegion(ctx, &imds.GetRegionInput{})
	if err != nil {
		return ""
	}
	return out.Region
}

// ValidTableName reports whether s follows DynamoDB's naming rules for tables.
func ValidTableName(s string) bool {
	if len(s) < 3 || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Region is the AWS region the Cache uses.
func (c *Cache) Region() string { return c.region }

// Endpoint is the endpoint override the Cache uses, or "" for DynamoDB's own.
func (c *Cache) Endpoint() string { return c.endpoint }

// name says where the table is, for messages.
func (c *Cache) name() string {
	if c.endpoint != "" {
		return c.o.Table + " at " + c.endpoint
	}
	return c.o.Table + " in " + c.region
}

// op bounds one cache operation by Timeout.
func (c *Cache) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.o.Timeout)
}

func (c *Cache) itemKey(sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrID: &types.AttributeValueMemberS{Value: sk}}
}

// Get returns the result stored for key, cache.ErrMiss if there is none or it has
// expired, or an error wrapping cache.ErrCorrupt if the stored item is not the answer
// for key. The read is eventually consistent (half the price of a strong one): an
// entry another host has just written may be missed for a moment, which costs one
// computation.
func (c *Cache) Get(ctx context.Context, key string) (calc.Result, error) {
	sk := cache.StorageKey(c.o.Version, key)
	ctx, cancel := c.op(ctx)
	defer cancel()
	// The id is read too, so that an item without a value is told from no item.
	out, err := c.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                aws.String(c.o.Table),
		Key:                      c.itemKey(sk),
		ProjectionExpression:     aws.String("#i, #v, #e"),
		ExpressionAttributeNames: map[string]string{"#i": attrID, "#v": attrValue, "#e": attrExpires},
	})
	if err != nil {
		return calc.Result{}, c.fail("get "+sk, err)
	}
	if len(out.Item) == 0 {
		return calc.Result{}, cache.ErrMiss
	}
	expired, err := isExpired(out.Item[attrExpires], time.Now())
	if err != nil {
		return calc.Result{}, fmt.Errorf("dynamo: get %s from %s: %w", sk, c.name(), err)
	}
	if expired {
		return calc.Result{}, cache.ErrMiss
	}
	v, ok := bytesOf(out.Item[attrValue])
	if !ok {
		return calc.Result{}, fmt.Errorf("dynamo: get %s from %s: %w (no %s attribute of type S or B)", sk, c.name(), cache.ErrCorrupt, attrValue)
	}
	r, err := cache.DecodeValue(c.o.Version, key, v)
	if err != nil {
		return calc.Result{}, fmt.Errorf("dynamo: get %s from %s: %w", sk, c.name(), err)
	}
	return r, nil
}

// isExpired reports whether an item whose expires attribute is av has expired at
// now. An item without one never expires; one that is not a number is corrupt.
func isExpired(av types.AttributeValue, now time.Time) (bool, error) {
	if av == nil {
		return false, nil
	}
	n, ok := av.(*types.AttributeValueMemberN)
	if !ok {
		return false, fmt.Errorf("%w (%s is not a number)", cache.ErrCorrupt, attrExpires)
	}
	exp, err := strconv.ParseFloat(n.Value, 64)
	if err != nil {
		return false, fmt.Errorf("%w (%s = %q)", cache.ErrCorrupt, attrExpires, n.Value)
	}
	return float64(now.Unix()) >= exp, nil
}

// bytesOf is the content of a string or binary attribute.
func bytesOf(av types.AttributeValue) ([]byte, bool) {
	switch v := av.(type) {
	case *types.AttributeValueMemberB:
		return v.Value, true
	case *types.AttributeValueMemberS:
		return []byte(v.Value), true
	}
	return nil, false
}

// text is b as a string attribute when it is valid UTF-8, which DynamoDB requires of
// strings and the console shows as written, else as a binary one.
func text(b []byte) types.AttributeValue {
	if utf8.Valid(b) {
		return &types.AttributeValueMemberS{Value: string(b)}
	}
	return &types.AttributeValueMemberB{Value: b}
}

// expiresAt is the expires attribute of an entry written at now with ttl: the next
// whole second at or after now + ttl.
func expiresAt(now time.Time, ttl time.Duration) int64 {
	t := now.Add(ttl)
	s := t.Unix()
	if t.Nanosecond() != 0 {
		s++
	}
	return s
}

// Set stores r for key, replacing what was there, with an expiry if there is a TTL.
func (c *Cache) Set(ctx context.Context, key string, r calc.Result) error {
	sk := cache.StorageKey(c.o.Version, key)
	item := map[string]types.AttributeValue{
		attrID:    &types.AttributeValueMemberS{Value: sk},
		attrInput: text([]byte(key)),
		attrValue: text(cache.EncodeValue(c.o.Version, key, r)),
	}
	if c.o.TTL > 0 {
		item[attrExpires] = &types.AttributeValueMemberN{Value: strconv.FormatInt(expiresAt(time.Now(), c.o.TTL), 10)}
	}
	ctx, cancel := c.op(ctx)
	defer cancel()
	if _, err := c.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(c.o.Table), Item: item}); err != nil {
		return c.fail("set "+sk, err)
	}
	return nil
}

// Delete removes key; removing an absent key is not an error.
func (c *Cache) Delete(ctx context.Context, key string) error {
	sk := cache.StorageKey(c.o.Version, key)
	ctx, cancel := c.op(ctx)
	defer cancel()
	if _, err := c.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(c.o.Table), Key: c.itemKey(sk)}); err != nil {
		return c.fail("delete "+sk, err)
	}
	return nil
}

// Ping reports whether the table answers and is usable. Until Init has succeeded it
// runs Init, so that the chain's probe both creates the table (with CreateTable) once
// DynamoDB can be reached and keeps a backend whose table is missing unhealthy, with
// ErrNoTable. Init waits for a new table to become active, far longer than a
// probe's CacheTimeout, so it runs detached from ctx's deadline, under a budget of
// the larger of Timeout and 5s; a table still being created is waited for again by
// the next probe.
func (c *Cache) Ping(ctx context.Context) error {
	if !c.ready.Load() {
		return c.reinit(ctx)
	}
	octx, cancel := c.op(ctx)
	defer cancel()
	out, err := c.client.DescribeTable(octx, &dynamodb.DescribeTableInput{TableName: aws.String(c.o.Table)})
	if err != nil {
		err = c.fail("ping", err)
		if errors.Is(err, ErrNoTable) {
			// The table is gone (deleted, or a DynamoDB Local that restarted): look for
			// it again, and create it where DynamoCreateTable allows, in this probe
			// rather than the next.
			return c.reinit(ctx)
		}
		return err
	}
	if s := out.Table.TableStatus; !usable(s) {
		return fmt.Errorf("dynamo: ping %s: the table is %s", c.name(), s)
	}
	return nil
}

// reinit runs Init again, with the time a table's creation needs.
func (c *Cache) reinit(ctx context.Context) error {
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(c.o.Timeout, initBudget))
	defer cancel()
	return c.Init(ictx)
}

// usable reports whether a table in status s serves reads and writes.
func usable(s types.TableStatus) bool {
	return s == types.TableStatusActive || s == types.TableStatusUpdating
}

// Purge deletes every entry, of any version, whose original key match accepts, and
// returns how many it removed. It scans the whole table a page at a time (which reads,
// and is billed for, every item) and deletes the matching items one by one, counting
// only those that were still there. Items that are not entries are left alone.
func (c *Cache) Purge(ctx context.Context, match func(key string) bool) (int, error) {
	n := 0
	in := &dynamodb.ScanInput{
		TableName:                aws.String(c.o.Table),
		ProjectionExpression:     aws.String("#i, #v"),
		ExpressionAttributeNames: map[string]string{"#i": attrID, "#v": attrValue},
	}
	if c.scanLimit > 0 {
		in.Limit = aws.Int32(c.scanLimit)
	}
	for {
		out, err := c.admin.Scan(ctx, in)
		if err != nil {
			return n, c.fail("purge", err)
		}
		for _, item := range out.Items {
			id, ok := item[attrID].(*types.AttributeValueMemberS)
			if !ok || !strings.HasPrefix(id.Value, cache.StoragePrefix) {
				continue
			}
			v, ok := bytesOf(item[attrValue])
			if !ok {
				continue
			}
			if orig, ok := cache.ValueKey(v); !ok || !match(orig) {
				continue
			}
			del, err := c.admin.DeleteItem(ctx, &dynamodb.DeleteItemInput{
				TableName:    aws.String(c.o.Table),
				Key:          c.itemKey(id.Value),
				ReturnValues: types.ReturnValueAllOld,
			})
			if err != nil {
				return n, c.fail("purge: delete "+id.Value, err)
			}
			if len(del.Attributes) > 0 {
				n++
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return n, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// Close drops the idle connections. The Cache must not be used afterwards.
func (c *Cache) Close() error {
	if c.idle != nil {
		c.idle.CloseIdleConnections()
	}
	return nil
}

// fail names the table in err and, when DynamoDB says the table is gone, wraps
// ErrNoTable and forgets that Init succeeded, so that the next Ping runs it again
// (creating the table with CreateTable) and reports why.
func (c *Cache) fail(op string, err error) error {
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		c.ready.Store(false)
		return fmt.Errorf("dynamo: %s: %w: %s: %w", op, ErrNoTable, c.name(), err)
	}
	return fmt.Errorf("dynamo: %s: %s: %w", op, c.name(), err)
}

// isAPIError reports whether DynamoDB (or whatever answers at the endpoint) answered
// err, as opposed to not answering at all.
func isAPIError(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api)
}

// sdkLogger passes the SDK's own log lines to a slog.Logger, or drops them.
type sdkLogger struct{ l *slog.Logger }

func (s sdkLogger) Logf(class logging.Classification, format string, v ...any) {
	if s.l == nil {
		return
	}
	level := slog.LevelWarn
	if class == logging.Debug {
		level = slog.LevelDebug
	}
	s.l.Log(context.Background(), level, "dynamo backend: aws sdk: "+fmt.Sprintf(format, v...), "backend", "dynamo")
}
