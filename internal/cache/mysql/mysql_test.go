package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/cache/cachetest"
	"github.com/unicorn-rentals/unicorn/internal/cache/sqltable/sqltabletest"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// contestTable is the statement contest teams were given, verbatim.
const contestTable = "CREATE TABLE unicorntable(id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT)"

// server is the one mariadbd the package's tests share (each in its own database);
// only tests that kill a server start their own.
var server *svctest.Proc

// dbSeq numbers the per-test databases.
var dbSeq atomic.Int64

func TestMain(m *testing.M) {
	os.Exit(sqltabletest.Main(m, "mysql", "mariadbd", svctest.StartMariaDB, &server))
}

// testDB creates a fresh database on p and returns its name and a root connection
// to it for arranging and inspecting rows by hand.
func testDB(t testing.TB, p *svctest.Proc) (string, *sql.DB) {
	t.Helper()
	name := fmt.Sprintf("t_%d", dbSeq.Add(1))
	root, err := sql.Open("mysql", p.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := root.ExecContext(ctxT(t), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", p.DSN(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return name, db
}

// ctxT is a context that bounds one test's database calls.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// exec runs a statement by hand.
func exec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(ctxT(t), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// queryInt returns the single integer q selects.
func queryInt(t testing.TB, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n sql.NullInt64
	if err := db.QueryRowContext(ctxT(t), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return int(n.Int64)
}

// newCache returns a Cache for database db on p, closed when t ends.
func newCache(t testing.TB, p *svctest.Proc, db string, o Options) *Cache {
	t.Helper()
	o.Host, o.Port, o.User, o.DB = "127.0.0.1", p.Port, "root", db
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
func contest(t testing.TB, o Options) (*Cache, *sql.DB, string) {
	t.Helper()
	name, db := testDB(t, server)
	exec(t, db, contestTable)
	return newCache(t, server, name, o), db, name
}

// TestConformance runs the shared suite on the contest table. (A table the server
// creates itself has a unique index on requestid, so it keeps one version's answer
// per key: the suite's "versions do not collide" does not hold there, by design.)
func TestConformance(t *testing.T) {
	t.Parallel()
	dbName, db := testDB(t, server)
	exec(t, db, contestTable)
	cachetest.Conformance(t, cachetest.Backend{
		New: func(t testing.TB, version int) cachetest.Shared {
			return newCache(t, server, dbName, Options{Version: version})
		},
		Put: func(t testing.TB, version int, key string, v []byte) {
			c := newCache(t, server, dbName, Options{Version: version})
			if err := c.Init(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			rid := c.state.Load().requestID(key)
			exec(t, db, "DELETE FROM unicorntable WHERE requestid = ?", rid)
			exec(t, db, "INSERT INTO unicorntable (requestid, requestvalue, hits) VALUES (?, ?, 0)", rid, string(v))
		},
		Encode: func(version int, key string, r calc.Result) []byte {
			return calc.AppendBody(nil, calc.Token, version, []byte(key), &r)
		},
		OtherVersionIsMiss: true,
	})
}

func TestKeysAUTF8MB4ColumnCanHoldAreStoredAsTheyAre(t *testing.T) {
	t.Parallel()
	name, db := testDB(t, server)
	exec(t, db, contestTable+" DEFAULT CHARSET=utf8mb4")
	exec(t, db, "CREATE INDEX requestid ON unicorntable (requestid)")
	c := newCache(t, server, name, Options{})
	for _, key := range []string{strings.Repeat("y", 255), "clé-ünicorn-🦄", "nul\x00byte"} {
		cachetest.Set(t, c, 1, key)
		cachetest.WantHit(t, c, 1, key)
		if n := queryInt(t, db, "SELECT COUNT(*) FROM unicorntable WHERE CAST(requestid AS BINARY) = CAST(? AS BINARY)", key); n != 1 {
			t.Errorf("%d rows under the key %q itself, want 1", n, key)
		}
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("Warnings() = %q, want none", w)
	}
}

func TestMissingDatabaseIsNoTable(t *testing.T) {
	t.Parallel()
	c := newCache(t, server, "no_such_db", Options{})
	err := c.Init(ctxT(t))
	if !errors.Is(err, ErrNoTable) || !strings.Contains(err.Error(), "no_such_db") {
		t.Fatalf("Init() = %v, want ErrNoTable naming the database", err)
	}
}

func TestNarrowOrLatin1RequestIDHashesWhatItCannotHold(t *testing.T) {
	t.Parallel()
	name, db := testDB(t, server)
	exec(t, db, "CREATE TABLE unicorntable(id SERIAL PRIMARY KEY, requestid VARCHAR(100) CHARACTER SET latin1, requestvalue VARCHAR(255), hits INT)")
	c := newCache(t, server, name, Options{})
	for _, key := range []string{"ascii", "clé", strings.Repeat("k", 101)} {
		cachetest.Set(t, c, 1, key)
		cachetest.WantHit(t, c, 1, key)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM unicorntable WHERE requestid LIKE 'sha256:%'"); n != 2 {
		t.Errorf("%d hashed rows, want 2", n)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "latin1") || !strings.Contains(w, "100") {
		t.Errorf("Warnings() = %q, want the character set and the width", w)
	}
}

func TestTLSPreferredFallsBackToPlaintext(t *testing.T) {
	t.Parallel()
	c, _, _ := contest(t, Options{TLS: "preferred"})
	cachetest.Set(t, c, 1, "k")
	cachetest.WantHit(t, c, 1, "k")
}

func TestKilledServerFailsFastAndRecovers(t *testing.T) {
	t.Parallel()
	p := svctest.MariaDB(t)
	name, db := testDB(t, p)
	exec(t, db, contestTable)
	const timeout = 200 * time.Millisecond
	c := newCache(t, p, name, Options{Timeout: timeout})
	cachetest.Set(t, c, 1, "k")
	cachetest.WantHit(t, c, 1, "k")

	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // stale pooled connections, then fresh dials
		start := time.Now()
		_, err := c.Get(context.Background(), "k")
		if took := time.Since(start); took > timeout+300*time.Millisecond {
			t.Errorf("Get #%d on a killed server took %v, want about %v at most", i, took, timeout)
		}
		if err == nil || errors.Is(err, cache.ErrMiss) || errors.Is(err, ErrNoTable) {
			t.Fatalf("Get #%d on a killed server = %v, want a connection error", i, err)
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
		if err := c.Ping(ctxT(t)); err != nil {
			t.Fatalf("Ping() after Restart = %v", err)
		}
		cachetest.Set(t, c, 1, "after")
		cachetest.WantHit(t, c, 1, "after")
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"a table name with a backtick":  {Host: "h", DB: "d", Table: "a`b"},
		"a table name with a dot":       {Host: "h", DB: "d", Table: "d.t"},
		"a table name that is too long": {Host: "h", DB: "d", Table: strings.Repeat("t", 65)},
		"no database":                   {Host: "h"},
		"no host":                       {DB: "d"},
		"an unknown TLS mode":           {Host: "h", DB: "d", TLS: "yes"},
		"a version out of range":        {Host: "h", DB: "d", Version: -1},
		"two different ports":           {Host: "h:3307", Port: 3306, DB: "d"},
		"a port out of range":           {Host: "h", Port: 70000, DB: "d"},
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
		"db.example":      "db.example:3306",
		"db.example:3307": "db.example:3307",
		"::1":             "[::1]:3306",
		"[::1]:3310":      "[::1]:3310",
	} {
		c, err := New(Options{Host: host, DB: "d"})
		if err != nil {
			t.Fatalf("New(Host: %q): %v", host, err)
		}
		if c.addr != want || c.o.Table != DefaultTable || c.o.Timeout != DefaultTimeout || c.o.Version != 1 {
			t.Errorf("New(Host: %q) = addr %q, table %q, timeout %v, version %d", host, c.addr, c.o.Table, c.o.Timeout, c.o.Version)
		}
		c.Close()
	}
}

func BenchmarkGetHit(b *testing.B) {
	name, db := testDB(b, server)
	exec(b, db, contestTable)
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
	db   *sql.DB
}

func (d teamDB) Name() string { return d.name }

func (d teamDB) Exec(t testing.TB, q string, args ...any) { t.Helper(); exec(t, d.db, q, args...) }

func (d teamDB) Int(t testing.TB, q string, args ...any) int {
	t.Helper()
	return queryInt(t, d.db, q, args...)
}

func (d teamDB) Scan(t testing.TB, q string, dest ...any) {
	t.Helper()
	if err := d.db.QueryRowContext(ctxT(t), q).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (d teamDB) Open(t testing.TB, o sqltabletest.Options) sqltabletest.Cache {
	t.Helper()
	return newCache(t, server, d.name, Options{Version: o.Version, CreateTable: o.CreateTable, TTL: o.TTL, Timeout: o.Timeout, Logger: o.Logger})
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
		TableName:                func(db string) string { return "`" + db + "`.`unicorntable`" },
		MissingTable:             []string{"CREATE TABLE `unicorntable` (id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT);"},
		IndexStatement:           "CREATE INDEX requestid ON `unicorntable` (requestid);",
		IndexesNotLedByRequestID: []string{"CREATE INDEX hits_requestid ON unicorntable (hits, requestid)"},
		ManagedTable:             "CREATE TABLE unicorntable(id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT, created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))",
		TwoHoursAgo:              "NOW(3) - INTERVAL 2 HOUR",
		ManagedInsert:            "INSERT INTO unicorntable (requestid, requestvalue, hits) VALUES (?, ?, 0)",
		CheckManaged: func(t testing.TB, db sqltabletest.DB) {
			if n := db.Int(t, "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'unicorntable' AND COLUMN_NAME = 'requestid' AND NON_UNIQUE = 0", db.Name()); n != 1 {
				t.Errorf("%d unique indexes on requestid, want 1", n)
			}
			if n := db.Int(t, "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'unicorntable' AND COLUMN_NAME = 'created_at'", db.Name()); n != 1 {
				t.Errorf("%d created_at columns, want 1", n)
			}
		},
		Rejects: map[string]sqltabletest.Reject{
			"a table without hits and id names both": {
				Create: "CREATE TABLE unicorntable(requestid VARCHAR(255), requestvalue VARCHAR(255))",
				Want:   []string{"id, hits", "lacks"},
			},
			"a requestvalue too short for a token": {
				Create: "CREATE TABLE unicorntable(id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(100), hits INT)",
				Want:   []string{"requestvalue", "244"},
			},
			"an id that is not AUTO_INCREMENT": {
				Create: "CREATE TABLE unicorntable(id INT PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT)",
				Want:   []string{"AUTO_INCREMENT"},
			},
			"a requestid too short for a hashed key": {
				Create: "CREATE TABLE unicorntable(id SERIAL PRIMARY KEY, requestid VARCHAR(40), requestvalue VARCHAR(255), hits INT)",
				Want:   []string{"requestid", "71"},
			},
		},
		HoldInit: func(c sqltabletest.Cache) func() {
			sem := c.(*Cache).initSem
			sem <- struct{}{}
			return func() { <-sem }
		},
	})
}
