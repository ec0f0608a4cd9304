package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/cache/cachetest"
	"github.com/unicorn-rentals/unicorn/internal/cache/sqltable"
	"github.com/unicorn-rentals/unicorn/internal/cache/sqltable/sqltabletest"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// contestTable is the statement contest teams were given, verbatim.
const contestTable = "CREATE TABLE IF NOT EXISTS unicorntable (id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT)"

// server is the one PostgreSQL the package's tests share (each in its own
// database); only tests that kill or pause a server start their own.
var server *svctest.Proc

// dbSeq numbers the per-test databases.
var dbSeq atomic.Int64

func TestMain(m *testing.M) {
	os.Exit(sqltabletest.Main(m, "postgres", "postgres", svctest.StartPostgres, &server))
}

// testDB creates a fresh database on p and returns its name and a superuser pool
// on it for arranging and inspecting rows by hand.
func testDB(t testing.TB, p *svctest.Proc) (string, *pgxpool.Pool) {
	t.Helper()
	return testDBWith(t, p, "")
}

// testDBWith is testDB with clauses, such as an encoding, added to CREATE DATABASE.
func testDBWith(t testing.TB, p *svctest.Proc, clauses string) (string, *pgxpool.Pool) {
	t.Helper()
	name := fmt.Sprintf("t_%d", dbSeq.Add(1))
	root, err := pgxpool.New(ctxT(t), p.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	exec(t, root, "CREATE DATABASE "+name+clauses)
	db, err := pgxpool.New(ctxT(t), p.ConnString(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return name, db
}

// ctxT is a context that bounds one test's database calls.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// exec runs a statement by hand.
func exec(t testing.TB, db *pgxpool.Pool, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(ctxT(t), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// queryInt returns the single integer q selects; NULL is 0.
func queryInt(t testing.TB, db *pgxpool.Pool, q string, args ...any) int {
	t.Helper()
	var n *int64
	if err := db.QueryRow(ctxT(t), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if n == nil {
		return 0
	}
	return int(*n)
}

// newCache returns a Cache for database db on p, closed when t ends.
func newCache(t testing.TB, p *svctest.Proc, db string, o Options) *Cache {
	t.Helper()
	o.Host, o.Port, o.User, o.DB = "127.0.0.1", p.Port, "postgres", db
	if o.SSLMode == "" {
		o.SSLMode = "disable"
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second // generous: tests run in parallel under -race
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// contest returns a fresh database holding the contest table and a Cache on it.
func contest(t testing.TB, o Options) (*Cache, *pgxpool.Pool, string) {
	t.Helper()
	name, db := testDB(t, server)
	exec(t, db, contestTable)
	return newCache(t, server, name, o), db, name
}

// flushHits writes the counted hits now instead of within HitFlush.
func flushHits(t *testing.T, c *Cache) {
	t.Helper()
	if err := c.FlushHits(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	for name, create := range map[string]bool{"on the contest table": false, "on a managed table": true} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dbName, db := testDB(t, server)
			if !create {
				exec(t, db, contestTable)
			}
			cachetest.Conformance(t, cachetest.Backend{
				New: func(t testing.TB, version int) cachetest.Shared {
					return newCache(t, server, dbName, Options{Version: version, CreateTable: create})
				},
				Put: func(t testing.TB, version int, key string, v []byte) {
					c := newCache(t, server, dbName, Options{Version: version, CreateTable: create})
					if err := c.Init(ctxT(t)); err != nil {
						t.Fatal(err)
					}
					rid := c.state.Load().requestID(key)
					exec(t, db, "DELETE FROM unicorntable WHERE requestid = $1", rid)
					exec(t, db, "INSERT INTO unicorntable (requestid, requestvalue, hits) VALUES ($1, $2, 0)", rid, string(v))
				},
				Encode: func(version int, key string, r calc.Result) []byte {
					return calc.AppendBody(nil, calc.Token, version, []byte(key), &r)
				},
				OtherVersionIsMiss: true,
			})
		})
	}
}

func TestHitsOfManyRowsAreWrittenInBatches(t *testing.T) {
	t.Parallel()
	c, db, _ := contest(t, Options{})
	const n = hitBatch + 234
	exec(t, db, "INSERT INTO unicorntable (requestid, requestvalue, hits) SELECT 'k' || i, 'x', 0 FROM generate_series(1, $1::int) i", n)
	for id := int64(1); id <= n; id++ {
		c.hits.Count(id)
	}
	c.hits.Count(1)
	if err := c.Init(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	flushHits(t, c)
	if got := queryInt(t, db, "SELECT SUM(hits) FROM unicorntable"); got != n+1 {
		t.Errorf("%d hits written, want %d", got, n+1)
	}
	if got := queryInt(t, db, "SELECT hits FROM unicorntable WHERE id = 1"); got != 2 {
		t.Errorf("row 1 has %d hits, want 2", got)
	}
}

func TestKeysTheColumnCanHoldAreStoredAsTheyAre(t *testing.T) {
	t.Parallel()
	c, db, _ := contest(t, Options{})
	for _, key := range []string{strings.Repeat("y", 255), strings.Repeat("é", 255), "clé-ünicorn-🦄", "tab\tand\nnewline"} {
		cachetest.Set(t, c, 1, key)
		cachetest.WantHit(t, c, 1, key)
		if n := queryInt(t, db, "SELECT COUNT(*) FROM unicorntable WHERE requestid = $1", key); n != 1 {
			t.Errorf("%d rows under the key %q itself, want 1", n, key)
		}
	}
}

func TestAReservedTableNameIsQuotedInTheStatement(t *testing.T) {
	t.Parallel()
	name, db := testDB(t, server)
	c := newCache(t, server, name, Options{Table: "User"})
	err := c.Init(ctxT(t))
	const stmt = `CREATE TABLE IF NOT EXISTS "user" (id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT)`
	if !errors.Is(err, ErrNoTable) || !strings.Contains(err.Error(), stmt) {
		t.Fatalf("Init() = %v, want ErrNoTable with %s", err, stmt)
	}
	exec(t, db, stmt)
	cachetest.Set(t, c, 1, "k")
	if n := queryInt(t, db, `SELECT COUNT(*) FROM "user"`); n != 1 {
		t.Errorf("%d rows, want 1", n)
	}
}

func TestAMixedCaseTableNameIsFoldedAsUnquotedSQLIs(t *testing.T) {
	t.Parallel()
	name, db := testDB(t, server)
	exec(t, db, strings.Replace(contestTable, "unicorntable", "UnicornTable", 1)) // unquoted: folded
	c := newCache(t, server, name, Options{Table: "UnicornTable"})
	cachetest.Set(t, c, 1, "k")
	cachetest.WantHit(t, c, 1, "k")
	if n := queryInt(t, db, "SELECT COUNT(*) FROM unicorntable"); n != 1 {
		t.Errorf("%d rows, want 1", n)
	}
}

func TestMissingDatabaseIsNoTable(t *testing.T) {
	t.Parallel()
	c := newCache(t, server, "no_such_db", Options{})
	err := c.Init(ctxT(t))
	if !errors.Is(err, ErrNoTable) || !strings.Contains(err.Error(), "CREATE DATABASE no_such_db") {
		t.Fatalf("Init() = %v, want ErrNoTable naming the database", err)
	}
}

func TestATeamsUniqueIndexOnRequestIDMakesSetReplace(t *testing.T) {
	t.Parallel()
	c, db, _ := contest(t, Options{})
	exec(t, db, "CREATE UNIQUE INDEX ON unicorntable (requestid)")
	exec(t, db, "INSERT INTO unicorntable (requestid, requestvalue, hits) VALUES ('k', 'junk', 7)")
	cachetest.Set(t, c, 1, "k")
	cachetest.WantHit(t, c, 1, "k")
	if n := queryInt(t, db, "SELECT COUNT(*) FROM unicorntable"); n != 1 {
		t.Errorf("%d rows, want the one replaced", n)
	}
	if w := strings.Join(c.Warnings(), "\n"); strings.Contains(w, "index") {
		t.Errorf("Warnings() = %q, want none about an index", w)
	}
}

func TestIdentityAndTextColumnsAreAccepted(t *testing.T) {
	t.Parallel()
	name, db := testDB(t, server)
	exec(t, db, "CREATE TABLE unicorntable (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, requestid TEXT, requestvalue TEXT, hits BIGINT)")
	c := newCache(t, server, name, Options{})
	key := strings.Repeat("t", 600)
	cachetest.Set(t, c, 1, key)
	cachetest.WantHit(t, c, 1, key)
	if n := queryInt(t, db, "SELECT COUNT(*) FROM unicorntable WHERE requestid = $1", sqltable.Hash(key)); n != 1 {
		t.Errorf("%d rows under the hashed key, want 1: keys are kept to 255 characters", n)
	}
}

func TestSSLModePreferFallsBackToPlaintext(t *testing.T) {
	t.Parallel()
	c, _, _ := contest(t, Options{SSLMode: "prefer"})
	cachetest.Set(t, c, 1, "k")
	cachetest.WantHit(t, c, 1, "k")
}

func TestSSLModeRequireFailsOnAServerWithoutTLS(t *testing.T) {
	t.Parallel()
	c, _, _ := contest(t, Options{SSLMode: "require"})
	if err := c.Init(ctxT(t)); err == nil || errors.Is(err, ErrNoTable) {
		t.Fatalf("Init() = %v, want a connection error: the server offers no TLS", err)
	}
}

func TestAFailedLoginIsAnErrorThatDoesNotShowThePassword(t *testing.T) {
	t.Parallel()
	name, db := testDB(t, server)
	exec(t, db, contestTable)
	c, err := New(Options{Host: "127.0.0.1", Port: server.Port, User: "no_such_user", Pass: "s3cr3t-p@ss", DB: name, SSLMode: "disable", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Init(ctxT(t))
	if err == nil || errors.Is(err, ErrNoTable) {
		t.Fatalf("Init() as an unknown role = %v, want a connection error", err)
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("Init() = %q, which shows the password", err)
	}
}

// timeout bounds each call of a Cache on a server that was killed or paused.
const timeout = 200 * time.Millisecond

// ownServer starts a PostgreSQL for t alone, for a test that kills or pauses it,
// and returns it with a Cache that has stored k, and the database's name.
func ownServer(t *testing.T) (*svctest.Proc, *Cache, string) {
	t.Helper()
	p := svctest.Postgres(t)
	name, db := testDB(t, p)
	exec(t, db, contestTable)
	c := newCache(t, p, name, Options{Timeout: timeout})
	cachetest.Set(t, c, 1, "k")
	return p, c, name
}

func TestKilledServerFailsFastAndRecovers(t *testing.T) {
	t.Parallel()
	p, c, name := ownServer(t)
	cachetest.WantHit(t, c, 1, "k")

	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // stale pooled connections, then fresh dials
		for _, op := range []struct {
			name string
			do   func() error
		}{
			{"Get", func() error { _, err := c.Get(context.Background(), "k"); return err }},
			{"Set", func() error { return c.Set(context.Background(), "during", calc.Sum(1, []byte("during"))) }},
			{"Ping", func() error { return c.Ping(context.Background()) }},
		} {
			start := time.Now()
			err := op.do()
			if took := time.Since(start); took > timeout+300*time.Millisecond {
				t.Errorf("%s #%d on a killed server took %v, want about %v at most", op.name, i, took, timeout)
			}
			if err == nil || errors.Is(err, cache.ErrMiss) || errors.Is(err, ErrNoTable) {
				t.Fatalf("%s #%d on a killed server = %v, want a connection error", op.name, i, err)
			}
		}
	}
	// A Cache made while the server is down starts uninitialised, with a plain error.
	down := newCache(t, p, name, Options{Timeout: timeout})
	if err := down.Ping(context.Background()); err == nil || errors.Is(err, ErrNoTable) {
		t.Fatalf("Ping() on a killed server = %v, want a connection error", err)
	}

	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Cache{c, down} {
		deadline := time.Now().Add(5 * time.Second)
		for c.Ping(ctxT(t)) != nil {
			if time.Now().After(deadline) {
				t.Fatalf("Ping() still failing 5s after Restart: %v", c.Ping(ctxT(t)))
			}
			time.Sleep(50 * time.Millisecond)
		}
		cachetest.WantHit(t, c, 1, "k") // the server kept its data
		cachetest.Set(t, c, 1, "after")
		cachetest.WantHit(t, c, 1, "after")
	}
}

func TestPausedServerFailsWithinTimeout(t *testing.T) {
	t.Parallel()
	p, c, _ := ownServer(t)
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		start := time.Now()
		_, err := c.Get(context.Background(), "k")
		if took := time.Since(start); took > timeout+300*time.Millisecond {
			t.Errorf("Get #%d on a paused server took %v, want about %v at most", i, took, timeout)
		}
		if err == nil || errors.Is(err, cache.ErrMiss) {
			t.Fatalf("Get #%d on a paused server = %v, want an error", i, err)
		}
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Get(ctxT(t), "k")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get still failing 5s after Resume: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"a table name with a quote":     {Host: "h", DB: "d", Table: `a"b`},
		"a table name with a dot":       {Host: "h", DB: "d", Table: "s.t"},
		"a table name that is too long": {Host: "h", DB: "d", Table: strings.Repeat("t", 64)},
		"no database":                   {Host: "h"},
		"no host":                       {DB: "d"},
		"an unknown SSL mode":           {Host: "h", DB: "d", SSLMode: "yes"},
		"a version out of range":        {Host: "h", DB: "d", Version: -1},
		"a negative TTL":                {Host: "h", DB: "d", TTL: -time.Second},
		"two different ports":           {Host: "h:5433", Port: 5432, DB: "d"},
		"a port out of range":           {Host: "h", Port: 70000, DB: "d"},
		"a bad port in the host":        {Host: "h:x", DB: "d"},
	} {
		t.Run(name, func(t *testing.T) {
			if c, err := New(o); err == nil {
				c.Close()
				t.Fatalf("New(%+v) succeeded, want an error", o)
			}
		})
	}
}

func TestNewDefaultsAndAddresses(t *testing.T) {
	for host, want := range map[string]string{
		"db.example":      "db.example:5432",
		"db.example:5433": "db.example:5433",
		"::1":             "[::1]:5432",
		"[::1]:5440":      "[::1]:5440",
	} {
		c, err := New(Options{Host: host, DB: "d", User: "u", Pass: `it's \ odd`})
		if err != nil {
			t.Fatalf("New(Host: %q): %v", host, err)
		}
		if c.addr != want || c.table != DefaultTable || c.o.Timeout != DefaultTimeout || c.o.Version != 1 || c.o.SSLMode != "prefer" {
			t.Errorf("New(Host: %q) = addr %q, table %q, timeout %v, version %d, sslmode %q", host, c.addr, c.table, c.o.Timeout, c.o.Version, c.o.SSLMode)
		}
		if cfg := c.db.Config().ConnConfig; cfg.Password != `it's \ odd` || cfg.User != "u" || cfg.Database != "d" {
			t.Errorf("New(Host: %q) connects as %q/%q to %q", host, cfg.User, cfg.Password, cfg.Database)
		}
		c.Close()
	}
}

func TestValidIdentifier(t *testing.T) {
	for s, want := range map[string]bool{
		"unicorntable": true, "_t": true, "T2": true, strings.Repeat("t", 63): true,
		"": false, "2t": false, `a"b`: false, "s.t": false, "a b": false, "tä": false, strings.Repeat("t", 64): false,
	} {
		if got := ValidIdentifier(s); got != want {
			t.Errorf("ValidIdentifier(%q) = %v, want %v", s, got, want)
		}
	}
}

func BenchmarkGetHit(b *testing.B) {
	name, db := testDB(b, server)
	exec(b, db, contestTable)
	exec(b, db, "CREATE INDEX ON unicorntable (requestid)")
	c := newCache(b, server, name, Options{})
	const key = "SUNhbkhhelVuaWNvcm4/LTg5OTk="
	cachetest.Set(b, c, 1, key)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}

// teamDB is a test database as the shared team-table cases use it.
type teamDB struct {
	name string
	db   *pgxpool.Pool
}

func (d teamDB) Name() string { return d.name }

func (d teamDB) Exec(t testing.TB, q string, args ...any) {
	t.Helper()
	exec(t, d.db, rebind(q), args...)
}

func (d teamDB) Int(t testing.TB, q string, args ...any) int {
	t.Helper()
	return queryInt(t, d.db, rebind(q), args...)
}

func (d teamDB) Scan(t testing.TB, q string, dest ...any) {
	t.Helper()
	if err := d.db.QueryRow(ctxT(t), q).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (d teamDB) Open(t testing.TB, o sqltabletest.Options) sqltabletest.Cache {
	t.Helper()
	return newCache(t, server, d.name, Options{Version: o.Version, CreateTable: o.CreateTable, TTL: o.TTL, Timeout: o.Timeout, Logger: o.Logger})
}

// rebind numbers the ? placeholders of q as $1, $2, ….
func rebind(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r != '?' {
			b.WriteRune(r)
			continue
		}
		n++
		fmt.Fprintf(&b, "$%d", n)
	}
	return b.String()
}

func TestTeamTable(t *testing.T) {
	t.Parallel()
	sqltabletest.Run(t, sqltabletest.Harness{
		Fresh: func(t testing.TB) sqltabletest.DB {
			name, db := testDB(t, server)
			return teamDB{name, db}
		},
		ContestTable:             contestTable,
		ErrNoTable:               ErrNoTable,
		ErrSchema:                ErrSchema,
		TableName:                func(db string) string { return "table unicorntable in database " + db },
		MissingTable:             []string{contestTable, "PgsqlCreateTable"},
		IndexStatement:           "CREATE INDEX ON unicorntable (requestid);",
		IndexesNotLedByRequestID: []string{"CREATE INDEX ON unicorntable (hits, requestid)", "CREATE INDEX ON unicorntable (requestid) WHERE hits > 0"},
		ManagedTable:             "CREATE TABLE unicorntable (id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT, created_at TIMESTAMP NOT NULL DEFAULT now())",
		TwoHoursAgo:              "now() - interval '2 hours'",
		ManagedInsert:            "INSERT INTO unicorntable (requestid, requestvalue, hits, version) VALUES (?, ?, 0, 1)",
		ManagedKeepsEveryVersion: true,
		HashedKeys: map[string]string{
			"256 characters":                  strings.Repeat("é", 256),
			"a key with a NUL byte":           "nul\x00byte",
			"a key that starts like a hash":   "sha256:",
			"a 1024-byte key of 4-byte runes": strings.Repeat("🦄", 256),
		},
		Rejects: map[string]sqltabletest.Reject{
			"a table without hits and id names both": {
				Create: "CREATE TABLE unicorntable (requestid VARCHAR(255), requestvalue VARCHAR(255))",
				Want:   []string{"id, hits", "lacks", contestTable},
			},
			"a requestvalue too short for a token": {
				Create: "CREATE TABLE unicorntable (id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(100), hits INT)",
				Want:   []string{"requestvalue", "VARCHAR(100)", "244"},
			},
			"a requestvalue that pads": {
				Create: "CREATE TABLE unicorntable (id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue CHAR(255), hits INT)",
				Want:   []string{"requestvalue", "CHAR(255)"},
			},
			"an id without a sequence": {
				Create: "CREATE TABLE unicorntable (id INT PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT)",
				Want:   []string{"sequence", "SERIAL"},
			},
			"a requestid too short for a hashed key": {
				Create: "CREATE TABLE unicorntable (id SERIAL PRIMARY KEY, requestid VARCHAR(40), requestvalue VARCHAR(255), hits INT)",
				Want:   []string{"requestid", "71"},
			},
			"a requestid that is a number": {
				Create: "CREATE TABLE unicorntable (id SERIAL PRIMARY KEY, requestid INT, requestvalue VARCHAR(255), hits INT)",
				Want:   []string{"requestid", "INT4"},
			},
		},
		HoldInit: func(c sqltabletest.Cache) func() {
			sem := c.(*Cache).initSem
			sem <- struct{}{}
			return func() { <-sem }
		},
	})
}

func TestRequestIDsThatCannotHoldEveryKeyHashThem(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		create     string // the database's encoding clauses, if not the default
		table      string
		keys       []string
		wantHashed int
		warning    string
	}{
		"a narrow requestid": {
			table:      "CREATE TABLE unicorntable (id SERIAL PRIMARY KEY, requestid VARCHAR(100), requestvalue VARCHAR(255), hits INT)",
			keys:       []string{"ascii", strings.Repeat("é", 100), strings.Repeat("k", 101)},
			wantHashed: 1,
			warning:    "100",
		},
		"a database that is not UTF-8": {
			create:     " ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
			table:      contestTable,
			keys:       []string{"ascii", "clé", "🦄"},
			wantHashed: 2,
			warning:    "LATIN1",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dbName, db := testDBWith(t, server, tc.create)
			exec(t, db, tc.table)
			c := newCache(t, server, dbName, Options{})
			for _, key := range tc.keys {
				cachetest.Set(t, c, 1, key)
				cachetest.WantHit(t, c, 1, key)
			}
			if n := queryInt(t, db, "SELECT COUNT(*) FROM unicorntable WHERE requestid LIKE 'sha256:%'"); n != tc.wantHashed {
				t.Errorf("%d hashed rows, want %d", n, tc.wantHashed)
			}
			if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, tc.warning) {
				t.Errorf("Warnings() = %q, want it to contain %q", w, tc.warning)
			}
		})
	}
}
