package dynamo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/cache/cachetest"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

const table = "unicorn"

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newCache returns a Cache on d for o (Table defaults to table) that is closed when t
// ends.
func newCache(t testing.TB, d *svctest.Dynamo, o Options) *Cache {
	t.Helper()
	if o.Table == "" {
		o.Table = table
	}
	cfg := d.Config()
	o.AWS = &cfg
	c, err := New(o)
	if err != nil {
		t.Fatalf("New(%+v): %v", o, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// withTable starts dynalite for t and creates table there through a Cache.
func withTable(t testing.TB) *svctest.Dynamo {
	t.Helper()
	d := svctest.Dynalite(t)
	if err := newCache(t, d, Options{CreateTable: true}).Init(ctxT(t)); err != nil {
		t.Fatalf("Init with CreateTable: %v", err)
	}
	return d
}

// raw is a plain DynamoDB client on d, to write and inspect what a Cache cannot.
func raw(d *svctest.Dynamo) *dynamodb.Client { return dynamodb.NewFromConfig(d.Config()) }

// item reads the item stored under key at version, or nil.
func item(t testing.TB, db *dynamodb.Client, version int, key string) map[string]types.AttributeValue {
	t.Helper()
	out, err := db.GetItem(ctxT(t), &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: cache.StorageKey(version, key)}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	return out.Item
}

func put(t testing.TB, db *dynamodb.Client, it map[string]types.AttributeValue) {
	t.Helper()
	if _, err := db.PutItem(ctxT(t), &dynamodb.PutItemInput{TableName: aws.String(table), Item: it}); err != nil {
		t.Fatalf("PutItem: %v", err)
	}
}

// entry is the item a Cache writes for key at version, with the given expires (none
// when empty).
func entry(version int, key, expires string) map[string]types.AttributeValue {
	it := map[string]types.AttributeValue{
		"id":    &types.AttributeValueMemberS{Value: cache.StorageKey(version, key)},
		"input": &types.AttributeValueMemberS{Value: key},
		"value": &types.AttributeValueMemberB{Value: cache.EncodeValue(version, key, calc.Sum(version, []byte(key)))},
	}
	if expires != "" {
		it["expires"] = &types.AttributeValueMemberN{Value: expires}
	}
	return it
}

func TestConformance(t *testing.T) {
	d := withTable(t)
	db := raw(d)
	cachetest.Conformance(t, cachetest.Backend{
		New: func(t testing.TB, version int) cachetest.Shared {
			return newCache(t, d, Options{Version: version})
		},
		Put: func(t testing.TB, version int, key string, v []byte) {
			it := entry(version, key, "")
			it["value"] = &types.AttributeValueMemberB{Value: v}
			put(t, db, it)
		},
	})
}

func TestTheItemIsReadableInTheConsole(t *testing.T) {
	d := withTable(t)
	db := raw(d)
	c := newCache(t, d, Options{})
	cachetest.Set(t, c, 1, "testing")
	it := item(t, db, 1, "testing")
	if in, ok := it["input"].(*types.AttributeValueMemberS); !ok || in.Value != "testing" {
		t.Errorf("input = %#v, want the string testing", it["input"])
	}
	want := string(cache.EncodeValue(1, "testing", calc.Sum(1, []byte("testing"))))
	if v, ok := it["value"].(*types.AttributeValueMemberS); !ok || v.Value != want {
		t.Errorf("value = %#v, want the string %q", it["value"], want)
	}
	if _, ok := it["expires"]; ok {
		t.Errorf("an entry without TTL has expires = %#v", it["expires"])
	}

	t.Run("a key that is not UTF-8 is stored as binary", func(t *testing.T) {
		const key = "a\xffb"
		cachetest.Set(t, c, 1, key)
		it := item(t, db, 1, key)
		if in, ok := it["input"].(*types.AttributeValueMemberB); !ok || string(in.Value) != key {
			t.Errorf("input = %#v, want binary %q", it["input"], key)
		}
		if _, ok := it["value"].(*types.AttributeValueMemberB); !ok {
			t.Errorf("value = %#v, want binary", it["value"])
		}
		cachetest.WantHit(t, c, 1, key)
	})
}

func TestADoneContextFailsWithoutAMiss(t *testing.T) {
	d := withTable(t)
	cachetest.DoneContext(t, newCache(t, d, Options{}))
}

func TestCreateTableCreatesAnOnDemandTableWithTTL(t *testing.T) {
	d := svctest.Dynalite(t)
	ctx := ctxT(t)
	db := raw(d)
	var logs svctest.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	// Two hosts start at once on a fresh table: one creates it, both use it.
	a := newCache(t, d, Options{CreateTable: true, TTL: time.Hour, Logger: logger})
	b := newCache(t, d, Options{CreateTable: true, TTL: time.Hour, Logger: logger})
	errs := make(chan error, 2)
	for _, c := range []*Cache{a, b} {
		go func() { errs <- c.Init(ctx) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("Init: %v", err)
		}
	}

	out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatalf("DescribeTable: %v", err)
	}
	tb := out.Table
	if tb.TableStatus != types.TableStatusActive {
		t.Errorf("status %s, want ACTIVE", tb.TableStatus)
	}
	if tb.BillingModeSummary == nil || tb.BillingModeSummary.BillingMode != types.BillingModePayPerRequest {
		t.Errorf("billing %+v, want PAY_PER_REQUEST", tb.BillingModeSummary)
	}
	if len(tb.KeySchema) != 1 || aws.ToString(tb.KeySchema[0].AttributeName) != "id" || tb.KeySchema[0].KeyType != types.KeyTypeHash {
		t.Errorf("key schema %+v, want id HASH", tb.KeySchema)
	}
	ttl, err := db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatalf("DescribeTimeToLive: %v", err)
	}
	if d := ttl.TimeToLiveDescription; d.TimeToLiveStatus != types.TimeToLiveStatusEnabled || aws.ToString(d.AttributeName) != "expires" {
		t.Errorf("TTL %s on %q, want ENABLED on expires", d.TimeToLiveStatus, aws.ToString(d.AttributeName))
	}
	for _, c := range []*Cache{a, b} {
		if w := c.Warnings(); len(w) != 0 {
			t.Errorf("Warnings = %q", w)
		}
	}
	got := logs.String()
	if strings.Count(got, "created table") != 1 || strings.Count(got, "enabled TTL") != 1 {
		t.Errorf("the log should say once that the table was created and its TTL enabled:\n%s", got)
	}

	t.Run("entries expire after the TTL, in whole seconds", func(t *testing.T) {
		before := time.Now()
		cachetest.Set(t, a, 1, "expiring")
		it := item(t, db, 1, "expiring")
		n, ok := it["expires"].(*types.AttributeValueMemberN)
		if !ok {
			t.Fatalf("expires = %#v, want a number", it["expires"])
		}
		exp, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil {
			t.Fatalf("expires = %q: %v", n.Value, err)
		}
		if lo, hi := before.Add(time.Hour).Unix(), time.Now().Add(time.Hour).Unix()+1; exp < lo || exp > hi {
			t.Errorf("expires = %d, want in [%d, %d]", exp, lo, hi)
		}
	})

	t.Run("Init again does nothing", func(t *testing.T) {
		if err := a.Init(ctx); err != nil {
			t.Fatal(err)
		}
		c := newCache(t, d, Options{CreateTable: true})
		if err := c.Init(ctx); err != nil {
			t.Fatalf("Init on the existing table: %v", err)
		}
	})
}

// TestMissingTableGivesTheCommandsThatCreateIt runs what the error says with the AWS
// CLI, as a user would, and checks the table then works.
func TestMissingTableGivesTheCommandsThatCreateIt(t *testing.T) {
	t.Parallel() // the AWS CLI takes seconds to start, three times
	d := svctest.Dynalite(t)
	ctx := ctxT(t)
	c := newCache(t, d, Options{TTL: time.Hour})

	err := c.Init(ctx)
	if !errors.Is(err, ErrNoTable) {
		t.Fatalf("Init = %v, want ErrNoTable", err)
	}
	msg := err.Error()
	want := []string{
		"aws dynamodb create-table --region us-east-1 --endpoint-url " + d.URL + " --table-name unicorn" +
			" --attribute-definitions AttributeName=id,AttributeType=S --key-schema AttributeName=id,KeyType=HASH --billing-mode PAY_PER_REQUEST",
		"aws dynamodb wait table-exists --region us-east-1 --endpoint-url " + d.URL + " --table-name unicorn",
		"aws dynamodb update-time-to-live --region us-east-1 --endpoint-url " + d.URL + " --table-name unicorn" +
			" --time-to-live-specification Enabled=true,AttributeName=expires",
	}
	if !strings.Contains(msg, strings.Join(want, " && ")) || !strings.Contains(msg, "DynamoCreateTable = true") {
		t.Fatalf("Init's error does not give the commands and DynamoCreateTable:\n%s\nwant:\n%s", msg, strings.Join(want, " && "))
	}
	if _, err := c.Get(ctx, "k"); !errors.Is(err, ErrNoTable) {
		t.Errorf("Get = %v, want ErrNoTable", err)
	}
	if err := c.Set(ctx, "k", calc.Sum(1, []byte("k"))); !errors.Is(err, ErrNoTable) {
		t.Errorf("Set = %v, want ErrNoTable", err)
	}
	if err := c.Ping(ctx); !errors.Is(err, ErrNoTable) {
		t.Errorf("Ping = %v, want ErrNoTable", err)
	}

	for _, line := range want {
		args := strings.Fields(line)
		cmd := exec.CommandContext(ctx, "/usr/bin/aws", args[1:]...)
		cmd.Env = append(os.Environ(), d.Env()...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping once the table exists: %v", err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("Warnings = %q", w)
	}
	cachetest.Set(t, c, 1, "k")
	cachetest.WantHit(t, c, 1, "k")
}

func TestATableWithAnotherKeyCannotBeUsed(t *testing.T) {
	d := svctest.Dynalite(t)
	ctx := ctxT(t)
	_, err := raw(d).CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("requestid"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("requestid"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, create := range []bool{false, true} {
		err := newCache(t, d, Options{CreateTable: create}).Init(ctx)
		if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "requestid (HASH, type S)") {
			t.Errorf("Init with CreateTable %v = %v, want ErrSchema naming the key", create, err)
		}
	}
}

func TestATableWithoutTTLIsAWarningWhenEntriesExpire(t *testing.T) {
	d := svctest.Dynalite(t)
	ctx := ctxT(t)
	if _, err := raw(d).CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	}); err != nil {
		t.Fatal(err)
	}

	forever := newCache(t, d, Options{})
	if err := forever.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if w := forever.Warnings(); len(w) != 0 {
		t.Errorf("without CacheTTL: Warnings = %q", w)
	}

	var logs svctest.Buffer
	c := newCache(t, d, Options{TTL: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	w := c.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "has no TTL") || !strings.Contains(w[0], c.ttlCommand()) {
		t.Fatalf("Warnings = %q, want one that gives %s", w, c.ttlCommand())
	}
	if !strings.Contains(logs.String(), "has no TTL") {
		t.Errorf("the warning was not logged:\n%s", logs.String())
	}
}

func TestExpiry(t *testing.T) {
	d := withTable(t)
	db := raw(d)
	c := newCache(t, d, Options{TTL: time.Hour})
	now := time.Now().Unix()

	for name, tc := range map[string]struct {
		expires string
		want    error // nil: a hit
	}{
		"an item past its expiry, not yet deleted, is a miss": {strconv.FormatInt(now-1, 10), cache.ErrMiss},
		"an item expiring later is a hit":                     {strconv.FormatInt(now+60, 10), nil},
		"an item without expiry is a hit":                     {"", nil},
		"a fractional expiry is understood":                   {strconv.FormatInt(now-1, 10) + ".5", cache.ErrMiss},
	} {
		t.Run(name, func(t *testing.T) {
			put(t, db, entry(1, "expiry", tc.expires))
			if tc.want == nil {
				cachetest.WantHit(t, c, 1, "expiry")
			} else {
				cachetest.WantMiss(t, c, "expiry")
			}
		})
	}

	t.Run("an expiry that is not a number is corrupt", func(t *testing.T) {
		it := entry(1, "expiry", "")
		it["expires"] = &types.AttributeValueMemberS{Value: "tomorrow"}
		put(t, db, it)
		if _, err := c.Get(ctxT(t), "expiry"); !errors.Is(err, cache.ErrCorrupt) {
			t.Fatalf("Get = %v, want ErrCorrupt", err)
		}
	})

	t.Run("an item without a value is corrupt", func(t *testing.T) {
		it := entry(1, "expiry", "")
		delete(it, "value")
		put(t, db, it)
		if _, err := c.Get(ctxT(t), "expiry"); !errors.Is(err, cache.ErrCorrupt) {
			t.Fatalf("Get = %v, want ErrCorrupt", err)
		}
	})

	t.Run("a short TTL expires in real time", func(t *testing.T) {
		c := newCache(t, d, Options{TTL: time.Millisecond})
		cachetest.Set(t, c, 1, "short-lived")
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := c.Get(ctxT(t), "short-lived")
			if errors.Is(err, cache.ErrMiss) {
				break
			}
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if time.Now().After(deadline) {
				t.Fatal("entry with TTL 1ms still served after 5s")
			}
			time.Sleep(50 * time.Millisecond) // expiry cannot be waited for otherwise
		}
	})
}

func TestExpiresAtRoundsUpToAWholeSecond(t *testing.T) {
	at := time.Unix(1000, 0)
	for _, tc := range []struct {
		now  time.Time
		ttl  time.Duration
		want int64
	}{
		{at, time.Second, 1001},
		{at, time.Millisecond, 1001},
		{at.Add(999 * time.Millisecond), time.Second, 1002},
		{at, time.Hour, 4600},
	} {
		if got := expiresAt(tc.now, tc.ttl); got != tc.want {
			t.Errorf("expiresAt(%v, %v) = %d, want %d", tc.now.UnixNano(), tc.ttl, got, tc.want)
		}
	}
}

// purgeText is what Purge's match looks for in the tests.
const purgeText = "H@XX0RR333DDD"

func TestPurge(t *testing.T) {
	d := withTable(t)
	ctx := ctxT(t)
	db := raw(d)
	v1 := newCache(t, d, Options{Version: 1})
	v2 := newCache(t, d, Options{Version: 2})
	v1.scanLimit = 7 // many Scan pages

	var doomed, kept []string
	for i := range 60 {
		if i%5 == 0 {
			doomed = append(doomed, fmt.Sprintf("x=%d&name=%s", i, purgeText))
		} else {
			kept = append(kept, fmt.Sprintf("x=%d&name=ok", i))
		}
	}
	for _, k := range doomed {
		cachetest.Set(t, v1, 1, k)
		cachetest.Set(t, v2, 2, k)
	}
	for _, k := range kept {
		cachetest.Set(t, v1, 1, k)
	}
	// Items that are not entries, or entries without an original key, are left alone.
	foreign := map[string]string{
		"someone:else:" + purgeText: purgeText + "\n" + purgeText,
		"unicorn:v1:not-an-entry":   "no newline " + purgeText,
	}
	for id, v := range foreign {
		put(t, db, map[string]types.AttributeValue{
			"id":    &types.AttributeValueMemberS{Value: id},
			"value": &types.AttributeValueMemberS{Value: v},
		})
	}

	match := func(key string) bool { return strings.Contains(key, purgeText) }
	n, err := v1.Purge(ctx, match)
	if err != nil {
		t.Fatalf("Purge: %v", err)
	}
	if want := 2 * len(doomed); n != want {
		t.Errorf("Purge removed %d, want %d", n, want)
	}
	for _, k := range doomed {
		cachetest.WantMiss(t, v1, k)
		cachetest.WantMiss(t, v2, k)
	}
	for _, k := range kept {
		cachetest.WantHit(t, v1, 1, k)
	}
	for id := range foreign {
		out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}}})
		if err != nil || len(out.Item) == 0 {
			t.Errorf("foreign item %q: %v, %v", id, out, err)
		}
	}

	n, err = v1.Purge(ctx, match)
	if err != nil || n != 0 {
		t.Errorf("second Purge = %d, %v; want 0, nil", n, err)
	}
}

// TestKilledServer checks a client through a crash and a hang: operations fail (not
// miss) within Timeout plus a margin, and after a restart, which loses dynalite's
// tables, the next probes create the table again and the same client works.
func TestKilledServer(t *testing.T) {
	d := withTable(t)
	const timeout = 200 * time.Millisecond
	c := newCache(t, d, Options{CreateTable: true, Timeout: timeout})
	if err := c.Init(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	cachetest.Set(t, c, 1, "before")

	t.Run("hung", func(t *testing.T) {
		if err := d.Pause(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = d.Resume() }()
		cachetest.FailsFast(t, c, timeout+400*time.Millisecond, "hung")
	})
	// Connections are pooled; a hung server's are dropped by its timeouts, and
	// resuming lets it answer what it was sent.
	if err := d.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	cachetest.FailsFast(t, c, timeout+400*time.Millisecond, "killed")

	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.Ping(context.Background())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ping still failing 10s after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the chain probes at intervals too
	}
	cachetest.Set(t, c, 1, "after")
	cachetest.WantHit(t, c, 1, "after")
	cachetest.WantMiss(t, c, "before") // the restarted server kept nothing
}

// TestTheSDKsEndpointOverride uses the SDK's default configuration, as the server
// does, with dynalite named only by the environment.
func TestTheSDKsEndpointOverride(t *testing.T) {
	d := svctest.Dynalite(t)
	ctx := ctxT(t)
	for _, kv := range d.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	for name, env := range map[string][2]string{
		"AWS_ENDPOINT_URL_DYNAMODB": {"AWS_ENDPOINT_URL", ""},
		"AWS_ENDPOINT_URL":          {"AWS_ENDPOINT_URL_DYNAMODB", ""},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, d.URL)
			t.Setenv(env[0], env[1])
			c, err := New(Options{Table: "t-" + strings.ToLower(name), CreateTable: true, Region: "eu-west-3"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Endpoint() != d.URL || c.Region() != "eu-west-3" {
				t.Errorf("endpoint %q in %q, want %q in eu-west-3", c.Endpoint(), c.Region(), d.URL)
			}
			if err := c.Init(ctx); err != nil {
				t.Fatalf("Init: %v", err)
			}
			cachetest.Set(t, c, 1, "env")
			cachetest.WantHit(t, c, 1, "env")
		})
	}

	t.Run("no region anywhere is an error that names AwsRegion", func(t *testing.T) {
		t.Setenv("AWS_REGION", "")
		t.Setenv("AWS_DEFAULT_REGION", "")
		_, err := New(Options{Table: table})
		if err == nil || !strings.Contains(err.Error(), "AwsRegion") {
			t.Fatalf("New = %v, want an error naming AwsRegion", err)
		}
	})
}

func TestNewRejectsBadOptions(t *testing.T) {
	cfg := aws.Config{Region: "us-east-1"}
	for name, o := range map[string]Options{
		"no table":                         {},
		"a table name too short":           {Table: "ab"},
		"a table name with a space":        {Table: "unicorn table"},
		"a table name too long":            {Table: strings.Repeat("t", 256)},
		"a negative TTL":                   {Table: table, TTL: -time.Second},
		"a negative timeout":               {Table: table, Timeout: -time.Second},
		"a version beyond calc.MaxVersion": {Table: table, Version: calc.MaxVersion + 1},
	} {
		t.Run(name, func(t *testing.T) {
			o.AWS = &cfg
			if c, err := New(o); err == nil {
				_ = c.Close()
				t.Fatalf("New(%+v) succeeded", o)
			}
		})
	}
}

func BenchmarkGetHit(b *testing.B) {
	d := withTable(b)
	ctx := context.Background()
	c := newCache(b, d, Options{Timeout: time.Second})
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

// TestAPingThatFindsTheTableGoneCreatesItAgain: when the table disappears (deleted,
// or a DynamoDB Local that restarted empty), the first probe that finds it missing
// creates it again where CreateTable allows, instead of leaving that to the next
// probe a back-off later; without CreateTable the probe fails, naming the table.
func TestAPingThatFindsTheTableGoneCreatesItAgain(t *testing.T) {
	d := withTable(t)
	c := newCache(t, d, Options{CreateTable: true, Timeout: time.Second})
	if err := c.Init(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	strict := newCache(t, d, Options{Timeout: time.Second})
	if err := strict.Init(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	db := raw(d)
	if _, err := db.DeleteTable(ctxT(t), &dynamodb.DeleteTableInput{TableName: aws.String(table)}); err != nil {
		t.Fatal(err)
	}
	// A deletion takes a moment (the table is DELETING meanwhile).
	waiter := dynamodb.NewTableNotExistsWaiter(db, func(o *dynamodb.TableNotExistsWaiterOptions) { o.MinDelay = 50 * time.Millisecond })
	if err := waiter.Wait(ctxT(t), &dynamodb.DescribeTableInput{TableName: aws.String(table)}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := strict.Ping(ctxT(t)); !errors.Is(err, ErrNoTable) {
		t.Fatalf("Ping without CreateTable after the table went: %v, want ErrNoTable", err)
	}
	if err := c.Ping(ctxT(t)); err != nil {
		t.Fatalf("the first Ping after the table went: %v, want the table created again", err)
	}
	cachetest.Set(t, c, 1, "after")
	cachetest.WantHit(t, c, 1, "after")
}
