package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dyntypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/bradfitz/gomemcache/memcache"
	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
	"github.com/unicorn-rentals/unicorn/internal/svctest/ferret"
)

// store is raw access to what a backend holds for a key at CalcVersion 1, bypassing
// calcserver: to check what it wrote and to tamper with it.
type store interface {
	read(t *testing.T, key string) ([]byte, error) // nil, nil when absent
	write(t *testing.T, key string, v []byte)
}

// service is a backend's server, which a test crashes and brings back.
type service interface {
	Kill() error    // a crash: every connection drops at once
	Restart() error // up again on the same port
}

// ferretService is a FerretDB server as a service: Stop drops every connection at
// once, as a crash does, and Restart brings it back on its port and data.
type ferretService struct{ *ferret.Server }

func (s ferretService) Kill() error { return s.Stop() }

// backendCase is one shared backend under test.
type backendCase struct {
	name  string
	ini   string
	env   []string // added to the environment of every calcserver it runs
	svc   service  // nil for the file system
	store store
	purge bool // can enumerate its keys
	// secretKey is the key of the password ini sets ("" if the store has none) and
	// secret a credential that must never be shown: its value, or one the
	// environment holds.
	secretKey, secret string
}

// want is the value calcserver stores for key.
func want(key string) []byte {
	return cache.EncodeValue(1, key, calc.Sum(1, []byte(key)))
}

type redisStore struct{ c *goredis.Client }

func (s redisStore) read(t *testing.T, key string) ([]byte, error) {
	v, err := s.c.Get(context.Background(), cache.StorageKey(1, key)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	return v, err
}

func (s redisStore) write(t *testing.T, key string, v []byte) {
	t.Helper()
	if err := s.c.Set(context.Background(), cache.StorageKey(1, key), v, 0).Err(); err != nil {
		t.Fatal(err)
	}
}

type memcacheStore struct{ c *memcache.Client }

func (s memcacheStore) read(t *testing.T, key string) ([]byte, error) {
	it, err := s.c.Get(cache.StorageKey(1, key))
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return it.Value, nil
}

func (s memcacheStore) write(t *testing.T, key string, v []byte) {
	t.Helper()
	if err := s.c.Set(&memcache.Item{Key: cache.StorageKey(1, key), Value: v}); err != nil {
		t.Fatal(err)
	}
}

type fileStore struct{ dir string }

func (s fileStore) path(key string) string {
	h := sha256.Sum256([]byte(key))
	x := hex.EncodeToString(h[:])
	return filepath.Join(s.dir, "unicorn", "v1", x[:2], x[2:4], x)
}

func (s fileStore) read(t *testing.T, key string) ([]byte, error) {
	b, err := os.ReadFile(s.path(key))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (s fileStore) write(t *testing.T, key string, v []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(s.path(key)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.path(key), v, 0o644); err != nil {
		t.Fatal(err)
	}
}

// mysqlStore reads the contest table; its value is the token alone, which want()
// begins with.
type mysqlStore struct{ db *sql.DB }

func (s mysqlStore) read(t *testing.T, key string) ([]byte, error) {
	var v string
	err := s.db.QueryRow("SELECT requestvalue FROM unicorntable WHERE BINARY requestid = BINARY ? ORDER BY id DESC LIMIT 1", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return append([]byte(v), want(key)[calc.TokenSize:]...), nil
}

func (s mysqlStore) write(t *testing.T, key string, v []byte) {
	t.Helper()
	if _, err := s.db.Exec("INSERT INTO unicorntable (requestid, requestvalue, hits) VALUES (?, ?, 0)", key, string(v[:min(len(v), calc.TokenSize)])); err != nil {
		t.Fatal(err)
	}
}

// pgsqlStore reads the contest table like mysqlStore: the newest row of a key.
type pgsqlStore struct{ db *pgxpool.Pool }

func (s pgsqlStore) read(t *testing.T, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var v string
	err := s.db.QueryRow(ctx, "SELECT requestvalue FROM unicorntable WHERE requestid = $1 ORDER BY id DESC LIMIT 1", key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return append([]byte(v), want(key)[calc.TokenSize:]...), nil
}

func (s pgsqlStore) write(t *testing.T, key string, v []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.db.Exec(ctx, "INSERT INTO unicorntable (requestid, requestvalue, hits) VALUES ($1, $2, 0)", key, string(v[:min(len(v), calc.TokenSize)])); err != nil {
		t.Fatal(err)
	}
}

// pgsqlContestTable is the table contest teams create, exactly as the issue gives it.
const pgsqlContestTable = "CREATE TABLE IF NOT EXISTS unicorntable (id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT)"

// mongoStore reads the documents of internal/cache/mongo: _id is the storage key,
// value the stored value as BinData.
type mongoStore struct{ c *mongo.Collection }

func (s mongoStore) read(t *testing.T, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	doc, err := s.c.FindOne(ctx, bson.D{{Key: "_id", Value: cache.StorageKey(1, key)}}).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v := doc.Lookup("value")
	if _, b, ok := v.BinaryOK(); ok {
		return b, nil
	}
	if str, ok := v.StringValueOK(); ok {
		return []byte(str), nil
	}
	return nil, fmt.Errorf("value is BSON %v", v.Type)
}

func (s mongoStore) write(t *testing.T, key string, v []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sk := cache.StorageKey(1, key)
	doc := bson.D{{Key: "_id", Value: sk}, {Key: "key", Value: key}, {Key: "value", Value: bson.Binary{Data: v}}}
	if _, err := s.c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: sk}}, doc, options.Replace().SetUpsert(true)); err != nil {
		t.Fatal(err)
	}
}

// dynamoStore reads the items of internal/cache/dynamo: id is the storage key, value
// the stored value.
type dynamoStore struct {
	c     *dynamodb.Client
	table string
}

func (s dynamoStore) read(t *testing.T, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := s.c.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            map[string]dyntypes.AttributeValue{"id": &dyntypes.AttributeValueMemberS{Value: cache.StorageKey(1, key)}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, err
	}
	switch v := out.Item["value"].(type) {
	case nil:
		return nil, nil
	case *dyntypes.AttributeValueMemberS:
		return []byte(v.Value), nil
	case *dyntypes.AttributeValueMemberB:
		return v.Value, nil
	default:
		return nil, fmt.Errorf("value is %T", v)
	}
}

func (s dynamoStore) write(t *testing.T, key string, v []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: map[string]dyntypes.AttributeValue{
		"id":    &dyntypes.AttributeValueMemberS{Value: cache.StorageKey(1, key)},
		"input": &dyntypes.AttributeValueMemberS{Value: key},
		"value": &dyntypes.AttributeValueMemberS{Value: string(v)},
	}}); err != nil {
		t.Fatal(err)
	}
}

const contestTable = "CREATE TABLE unicorntable(id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT)"

func openMySQL(t *testing.T, p *svctest.Proc, db string) *sql.DB {
	t.Helper()
	root, err := sql.Open("mysql", p.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := root.Exec("CREATE DATABASE IF NOT EXISTS " + db); err != nil {
		t.Fatal(err)
	}
	d, err := sql.Open("mysql", p.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// stored returns what bc holds for key; a failed read (a client's stale connection
// after a restart, say) counts as not there yet, so polls retry it.
func stored(t *testing.T, bc backendCase, key string) []byte {
	v, err := bc.store.read(t, key)
	if err != nil {
		t.Logf("%s read of %q: %v", bc.name, key, err)
		return nil
	}
	return v
}

// mustStored is stored for a read that must work.
func mustStored(t *testing.T, bc backendCase, key string) []byte {
	t.Helper()
	v, err := bc.store.read(t, key)
	if err != nil {
		t.Fatalf("%s read of %q: %v", bc.name, key, err)
	}
	return v
}

// backendSetup starts a backend for a test and returns its case.
type backendSetup struct {
	name  string
	setup func(t *testing.T) backendCase
}

func backendCases() []backendSetup {
	return []backendSetup{
		{"redis", func(t *testing.T) backendCase {
			p := svctest.Redis(t)
			c := goredis.NewClient(&goredis.Options{Addr: p.Addr})
			t.Cleanup(func() { c.Close() })
			return backendCase{name: "redis", ini: fmt.Sprintf("\"RedisHost\" = \"127.0.0.1\"\n\"RedisPort\" = \"%d\"\n", p.Port),
				svc: p, store: redisStore{c}, purge: true}
		}},
		{"memcached", func(t *testing.T) backendCase {
			p := svctest.Memcached(t)
			return backendCase{name: "memcached", ini: fmt.Sprintf("\"MemcacheHost\" = \"127.0.0.1\"\n\"MemcachePort\" = \"%d\"\n", p.Port),
				svc: p, store: memcacheStore{memcache.New(p.Addr)}}
		}},
		{"file", func(t *testing.T) backendCase {
			dir := t.TempDir()
			return backendCase{name: "file", ini: fmt.Sprintf("\"FsPath\" = %q\n", dir), store: fileStore{dir}, purge: true}
		}},
		{"mysql", func(t *testing.T) backendCase {
			p := svctest.MariaDB(t)
			db := openMySQL(t, p, "unicorn")
			if _, err := db.Exec(contestTable); err != nil {
				t.Fatal(err)
			}
			return backendCase{name: "mysql", ini: fmt.Sprintf("MysqlHost = 127.0.0.1\nMysqlPort = %d\nMysqlUser = root\nMysqlDb = unicorn\nCacheTimeout = 500ms\n", p.Port),
				svc: p, store: mysqlStore{db}, purge: true}
		}},
		{"pgsql", pgsqlCase},
		{"mongodb", mongoCase},
		{"dynamodb", dynamoCase},
	}
}

// pgsqlCase is PostgreSQL with the table a team creates by hand. The superuser logs in
// over loopback with trust authentication, so any password is accepted: the one set
// here is only there to be masked.
func pgsqlCase(t *testing.T) backendCase {
	p := svctest.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root, err := pgx.Connect(ctx, p.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = root.Exec(ctx, "CREATE DATABASE unicorn")
	root.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "pg-S3cret-9f2e"
	ini := fmt.Sprintf("PgsqlHost = 127.0.0.1\nPgsqlPort = %d\nPgsqlUser = postgres\nPgsqlPass = %s\nPgsqlDb = unicorn\nPgsqlSSLMode = disable\nCacheTimeout = 500ms\n", p.Port, secret)

	// Without the table (and without PgsqlCreateTable) the server does not start, and
	// says what to run.
	code, _, stderr := runCmd(t, nil, "-config", writeINI(t, ini+"Port = 0\n"))
	if code != 1 || !strings.Contains(stderr, pgsqlContestTable) {
		t.Fatalf("pgsql without its table: exit %d, want 1 and the statement %q\n%s", code, pgsqlContestTable, stderr)
	}
	if strings.Contains(stderr, secret) {
		t.Fatalf("the startup error shows the password:\n%s", stderr)
	}

	db, err := pgxpool.New(ctx, p.ConnString("unicorn"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Exec(ctx, pgsqlContestTable); err != nil {
		t.Fatal(err)
	}
	return backendCase{name: "pgsql", ini: ini, svc: p, store: pgsqlStore{db}, purge: true,
		secretKey: "PgsqlPass", secret: secret}
}

// mongoCase is FerretDB, a MongoDB-wire server on SQLite, in the test process. It
// does not authenticate, so the case sets no user, and -check alone shows that a
// MongoDbPass is masked (see testMasking).
func mongoCase(t *testing.T) backendCase {
	f := ferret.ForTest(t, ferret.Options{})
	client, err := mongo.Connect(options.Client().ApplyURI(f.URI()).SetTimeout(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	return backendCase{name: "mongodb",
		ini: fmt.Sprintf("MongoDbHost = 127.0.0.1\nMongoDbPort = %d\nMongoDbDatabase = unicorn\nMongoDbCollection = unicorntable\nCacheTimeout = 500ms\n", f.Port),
		svc: ferretService{f}, store: mongoStore{client.Database("unicorn").Collection("unicorntable")}, purge: true,
		secretKey: "MongoDbPass", secret: "mongo-S3cret-77ab"}
}

// dynamoCase is dynalite, which loses its tables when it restarts: the server creates
// its table again (DynamoCreateTable). The credentials are the environment's, and the
// secret key must show nowhere.
func dynamoCase(t *testing.T) backendCase {
	d := svctest.Dynalite(t)
	return backendCase{name: "dynamodb", ini: "DynamoTable = unicorntable\nDynamoCreateTable = true\nAwsRegion = " + svctest.DynamoRegion + "\nCacheTimeout = 500ms\n",
		env: d.Env(), svc: d, store: dynamoStore{dynamodb.NewFromConfig(d.Config()), "unicorntable"}, purge: true,
		secret: svctest.DynamoSecretKey}
}

// startWith is start for bc: its environment added to the test's.
func startWith(t *testing.T, bc backendCase, ini string) *proc {
	t.Helper()
	if bc.env == nil {
		return start(t, ini)
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "calcserver.log")
	cfg := filepath.Join(dir, "server.ini")
	ini = fmt.Sprintf("\"LogLocation\" = %q\nPort = 0\n%s", dir+"/", ini)
	if err := os.WriteFile(cfg, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	return launch(t, logPath, append(os.Environ(), bc.env...), "-config", cfg)
}

// testCheck runs -check on bc's configuration: it must list bc in the cache chain
// and show its password masked, and never show its secret.
func testCheck(t *testing.T, bc backendCase) {
	t.Helper()
	ini := bc.ini
	if bc.secretKey != "" && !strings.Contains(ini, bc.secretKey) {
		// A store that takes no password in this test still has it masked: -check
		// does not connect. A password needs a user.
		ini += fmt.Sprintf("%s = %s\n%s = %s\n", strings.TrimSuffix(bc.secretKey, "Pass")+"User", "team", bc.secretKey, bc.secret)
	}
	code, stdout, stderr := runCmd(t, bc.env, "-check", "-config", writeINI(t, ini))
	if code != 0 {
		t.Fatalf("-check: exit %d\n%s\n%s", code, stdout, stderr)
	}
	m := regexp.MustCompile(`cache chain: (.*)`).FindStringSubmatch(stderr)
	if m == nil || !slices.Contains(strings.Split(m[1], " -> "), bc.name) {
		t.Fatalf("-check does not list %s in the cache chain:\n%s", bc.name, stderr)
	}
	if bc.secretKey != "" && !strings.Contains(stdout, bc.secretKey+` = "****"`) {
		t.Fatalf("-check does not show %s masked:\n%s", bc.secretKey, stdout)
	}
	if bc.secret != "" && strings.Contains(stdout+stderr, bc.secret) {
		t.Fatalf("-check shows the secret %q:\n%s\n%s", bc.secret, stdout, stderr)
	}
}

// testStartupLog checks the startup line of p: bc's password masked, its secret
// nowhere in the log.
func testStartupLog(t *testing.T, bc backendCase, p *proc) {
	t.Helper()
	logs := p.logUntil(func(logs string) bool { return strings.Contains(logs, "calcserver started") })
	if !strings.Contains(logs, "calcserver started") {
		t.Fatalf("no startup line in the log:\n%s", logs)
	}
	if bc.secret != "" && strings.Contains(logs, bc.secret) {
		t.Fatalf("the log shows the secret %q:\n%s", bc.secret, logs)
	}
	if bc.secretKey != "" && strings.Contains(bc.ini, bc.secretKey) &&
		!regexp.MustCompile(regexp.QuoteMeta(bc.secretKey)+`="?\*\*\*\*`).MatchString(logs) {
		t.Fatalf("the startup line does not show %s masked:\n%s", bc.secretKey, logs)
	}
}

// eventually polls cond for up to 15 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within 15s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type healthDoc struct {
	Status string
	Cache  []struct {
		Name    string
		Healthy bool
	}
}

func health(t *testing.T, p *proc) healthDoc {
	t.Helper()
	var h healthDoc
	if err := json.Unmarshal([]byte(p.get(t, "GET", "/healthcheck").body), &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestEndToEndSharedBackends(t *testing.T) {
	for _, s := range backendCases() {
		// Each backend runs in its own subtest with its own service, all at once: most
		// of the time is spent waiting for services and processes.
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			testBackend(t, s.setup(t))
		})
	}
}

func testBackend(t *testing.T, bc backendCase) {
	// No memory tier: every lookup reaches the backend.
	ini := bc.ini + "WorkMode = sleep\nWorkTime = 10ms\nMemoryCacheSize = 0\n"
	testCheck(t, bc)
	a := startWith(t, bc, ini)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(a.logPath)
			t.Logf("log of server A:\n%s", b)
		}
	})
	testStartupLog(t, bc, a)

	// Store, then hit.
	if r := a.get(t, "GET", "/calc?input=first"); r.code != 200 || r.cache != "MISS" {
		t.Fatalf("first: %d %s", r.code, r.cache)
	}
	eventually(t, "the write of first", func() bool { return string(stored(t, bc, "first")) == string(want("first")) })
	if r := a.get(t, "GET", "/calc?input=first"); r.cache != "HIT" || r.body != string(calc.Body(calc.Token, 1, []byte("first"))) {
		t.Fatalf("repeat: %s %q", r.cache, r.body)
	}
	h := health(t, a)
	if h.Status != "ok" || len(h.Cache) != 1 || h.Cache[0].Name != bc.name || !h.Cache[0].Healthy {
		t.Fatalf("healthcheck %+v", h)
	}

	// A second server sharing the backend hits what the first stored.
	b := startWith(t, bc, ini)
	if r := b.get(t, "GET", "/calc?input=first"); r.cache != "HIT" {
		t.Fatalf("server B: X-Cache %s, want HIT from the shared backend", r.cache)
	}
	// So does B after a restart (with the memory tier on this time: it starts empty).
	if r := b.get(t, "GET", "/calc?input=second"); r.cache != "MISS" {
		t.Fatalf("second: X-Cache %s", r.cache)
	}
	b.terminate(t)
	b = startWith(t, bc, bc.ini+"WorkMode = sleep\nWorkTime = 10ms\n")
	if r := b.get(t, "GET", "/calc?input=second"); r.cache != "HIT" {
		t.Fatalf("restarted server: X-Cache %s, want HIT from the shared backend", r.cache)
	}

	// A tampered value is not served: the right answer is, and the value replaced.
	bc.store.write(t, "tampered", want("another-key"))
	if r := a.get(t, "GET", "/calc?input=tampered"); r.code != 200 || r.cache != "MISS" ||
		r.body != string(calc.Body(calc.Token, 1, []byte("tampered"))) {
		t.Fatalf("tampered: %d %s %q", r.code, r.cache, r.body)
	}
	eventually(t, "the replacement of the tampered value", func() bool { return string(stored(t, bc, "tampered")) == string(want("tampered")) })

	testPurge(t, bc, a)

	// The backend dies: every request is still answered, health says degraded.
	if bc.svc != nil {
		if err := bc.svc.Kill(); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			if r := a.get(t, "GET", fmt.Sprintf("/calc?input=while-down-%d", i)); r.code != 200 {
				t.Fatalf("request %d while the backend is down: %d", i, r.code)
			}
		}
		eventually(t, "degraded health", func() bool {
			h := health(t, a)
			return h.Status == "degraded" && !h.Cache[0].Healthy
		})
		if r := a.get(t, "GET", "/healthcheck"); r.code != 200 {
			t.Fatalf("degraded healthcheck answered %d; a balancer must keep the server", r.code)
		}
		if err := bc.svc.Restart(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "recovery", func() bool { return health(t, a).Status == "ok" })
		a.get(t, "GET", "/calc?input=after-recovery")
		eventually(t, "a write after recovery", func() bool { return stored(t, bc, "after-recovery") != nil })
	}
}

func testPurge(t *testing.T, bc backendCase, a *proc) {
	keys := []string{"aaH@XX0RR333DDDbb", base64.StdEncoding.EncodeToString([]byte("xH@XX0RR333DDDx")), "innocent"}
	for _, k := range keys {
		a.get(t, "GET", "/calc?input="+strings.ReplaceAll(strings.ReplaceAll(k, "+", "%2B"), "=", "%3D"))
		eventually(t, "the write of "+k, func() bool { return stored(t, bc, k) != nil })
	}
	cfg := writeINI(t, bc.ini)
	code, stdout, stderr := runCmd(t, bc.env, "purge", "-config", cfg, "-match", "H@XX0RR333DDD")
	if code != 0 {
		t.Fatalf("purge exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !bc.purge {
		if !strings.Contains(stdout, bc.name+": cannot enumerate") {
			t.Fatalf("purge output:\n%s", stdout)
		}
		return
	}
	if !strings.Contains(stdout, bc.name+": removed 2") {
		t.Fatalf("purge output:\n%s", stdout)
	}
	if mustStored(t, bc, keys[0]) != nil || mustStored(t, bc, keys[1]) != nil || mustStored(t, bc, "innocent") == nil {
		t.Fatal("purge removed the wrong entries")
	}
}

func TestEndToEndMySQLTable(t *testing.T) {
	p := svctest.MariaDB(t)
	db := openMySQL(t, p, "unicorn")
	base := fmt.Sprintf("MysqlHost = 127.0.0.1\nMysqlPort = %d\nMysqlUser = root\nMysqlDb = unicorn\nCacheTimeout = 500ms\n", p.Port)

	cfg := writeINI(t, base+"Port = 0\n")
	code, _, stderr := runCmd(t, nil, "-config", cfg)
	if code != 1 || !strings.Contains(stderr, "unicorntable") || !strings.Contains(stderr, "CREATE TABLE") {
		t.Fatalf("missing table: exit %d\n%s", code, stderr)
	}

	if _, err := db.Exec("CREATE TABLE short (id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(100), hits INT)"); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCmd(t, nil, "-config", writeINI(t, base+"Port = 0\nMysqlTable = short\n"))
	if code != 1 || !strings.Contains(stderr, "cannot be used") || !strings.Contains(stderr, "short") {
		t.Fatalf("unusable table: exit %d\n%s", code, stderr)
	}

	s := start(t, base+"MysqlCreateTable = true\nMemoryCacheSize = 0\nWorkMode = sleep\nWorkTime = 10ms\nCacheTTL = 1h\n")
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema='unicorn' AND table_name='unicorntable' AND column_name='requestid' AND non_unique=0").Scan(&n); err != nil || n != 1 {
		t.Fatalf("created table has no unique index on requestid: %d %v", n, err)
	}
	s.get(t, "GET", "/calc?input=counted")
	eventually(t, "the row", func() bool {
		return db.QueryRow("SELECT 1 FROM unicorntable WHERE requestid='counted'").Scan(&n) == nil
	})
	for range 3 {
		if r := s.get(t, "GET", "/calc?input=counted"); r.cache != "HIT" {
			t.Fatalf("X-Cache %s", r.cache)
		}
	}
	eventually(t, "hits = 3", func() bool {
		var hits int
		return db.QueryRow("SELECT hits FROM unicorntable WHERE requestid='counted'").Scan(&hits) == nil && hits == 3
	})
}

func TestEndToEndRedisClusterAndMemcacheFlag(t *testing.T) {
	c := svctest.RedisCluster(t, 3)
	cluster := fmt.Sprintf("RedisAddrs = %s\nMemoryCacheSize = 0\nWorkMode = sleep\nWorkTime = 10ms\n", strings.Join(c.Addrs, ","))
	a, b := start(t, cluster), start(t, cluster)
	for i := range 20 {
		if r := a.get(t, "GET", fmt.Sprintf("/calc?input=c%d", i)); r.code != 200 || r.cache != "MISS" {
			t.Fatalf("cluster miss %d: %d %s", i, r.code, r.cache)
		}
	}
	for i := range 20 {
		key := fmt.Sprintf("/calc?input=c%d", i)
		eventually(t, "a cluster hit on B", func() bool { return b.get(t, "GET", key).cache == "HIT" })
	}

	m := svctest.Memcached(t)
	ini := "MemoryCacheSize = 0\nWorkMode = sleep\nWorkTime = 10ms\n"
	a = start(t, ini, "-memcache-server", m.Addr)
	b = start(t, ini, "-memcache-server", m.Addr)
	if r := a.get(t, "GET", "/calc?input=flagged"); r.cache != "MISS" {
		t.Fatalf("memcache flag: %s", r.cache)
	}
	eventually(t, "a memcached hit on B", func() bool { return b.get(t, "GET", "/calc?input=flagged").cache == "HIT" })
	if h := health(t, b); len(h.Cache) != 1 || h.Cache[0].Name != "memcached" {
		t.Fatalf("chain of a server given -memcache-server: %+v", h)
	}
}

func TestEndToEndPurgeReportsAFailedBackend(t *testing.T) {
	p := svctest.Redis(t)
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	cfg := writeINI(t, fmt.Sprintf("RedisHost = 127.0.0.1\nRedisPort = %d\nFsPath = %q\n", p.Port, t.TempDir()))
	code, stdout, _ := runCmd(t, nil, "purge", "-config", cfg, "-match", "x")
	if code != 1 || !strings.Contains(stdout, "redis: failed") || !strings.Contains(stdout, "file: removed 0") {
		t.Fatalf("purge with redis down: exit %d\n%s", code, stdout)
	}
	code, _, stderr := runCmd(t, nil, "purge", "-config", cfg)
	if code != 2 || !strings.Contains(stderr, "-match") {
		t.Fatalf("purge without -match: exit %d\n%s", code, stderr)
	}
}

// allAnswered sends n concurrent misses (keys prefix-0 …) and fails t unless every
// one is answered 200.
func allAnswered(t *testing.T, p *proc, prefix string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := http.Get(fmt.Sprintf("%s/calc?input=%s-%d", p.base, prefix, i))
			if err != nil {
				t.Errorf("%s-%d: %v", prefix, i, err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("%s-%d answered %d, want 200", prefix, i, resp.StatusCode)
			}
		})
	}
	wg.Wait()
}

// TestEndToEndHungBackend freezes Redis: lookups then wait for CacheTimeout until
// the breaker opens, and every request is still answered.
func TestEndToEndHungBackend(t *testing.T) {
	p := svctest.Redis(t)
	s := start(t, fmt.Sprintf("RedisHost = 127.0.0.1\nRedisPort = %d\nMemoryCacheSize = 0\nCacheTimeout = 100ms\nCores = 16\nWorkMode = sleep\nWorkTime = 10ms\n", p.Port))
	s.get(t, "GET", "/calc?input=before")
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	allAnswered(t, s, "hung", 12)
	eventually(t, "degraded health", func() bool { return health(t, s).Status == "degraded" })
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "recovery", func() bool { return health(t, s).Status == "ok" })
	eventually(t, "a hit after recovery", func() bool { return s.get(t, "GET", "/calc?input=before").cache == "HIT" })
}

// TestEndToEndBackendsStartDegraded starts a server whose backends are all down.
func TestEndToEndBackendsStartDegraded(t *testing.T) {
	p := svctest.Redis(t)
	port := p.Port
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	s := start(t, fmt.Sprintf("RedisHost = 127.0.0.1\nRedisPort = %d\nWorkMode = sleep\nWorkTime = 10ms\n", port))
	if h := health(t, s); h.Status != "degraded" {
		t.Fatalf("health %+v", h)
	}
	allAnswered(t, s, "down", 5)
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "recovery", func() bool { return health(t, s).Status == "ok" })
}
