package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/cache/cachetest"
	"github.com/unicorn-rentals/unicorn/internal/cache/sqltable"
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
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mysqlcache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "mysql tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	server, err = svctest.StartMariaDB(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mysql tests: cannot start mariadbd:", err)
		return 1
	}
	defer func() {
		if err := server.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "mysql tests: stop mariadbd:", err)
		}
	}()
	code := m.Run()
	// Every test shares this server, so its crash fails them all with connection
	// errors that do not say why; its own last words do.
	if err := server.Exited(); err != nil {
		fmt.Fprintln(os.Stderr, "mysql tests: the shared mariadbd died during the tests:", err)
		return 1
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "mysql tests: the shared mariadbd at %s still runs; its log ends:\n%s\n", server.Addr, server.Output())
	}
	return code
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

func TestContestTableStoresThenHits(t *testing.T) {
	t.Parallel()
	c, db, _ := contest(t, Options{})
	const key = "SUNhbkhhelVuaWNvcm4/LTg5OTk="
	cachetest.WantErr(t, c, key, cache.ErrMiss)
	cachetest.Set(t, c, 1, key)
	cachetest.WantHit(t, c, 1, key)
	if m := c.Mode(); m != "contest" {
		t.Errorf("Mode() = %q, want contest", m)
	}
	flushHits(t, c)
	var rid, val string
	var hits int
	if err := db.QueryRowContext(ctxT(t), "SELECT requestid, requestvalue, hits FROM unicorntable").Scan(&rid, &val, &hits); err != nil {
		t.Fatal(err)
	}
	if rid != key || val != cachetest.Token(1, key) || hits != 1 {
		t.Errorf("row = (%q, %q, %d), want (%q, %q, 1)", rid, val, hits, key, cachetest.Token(1, key))
	}
	// Setting the same answer again adds no row.
	cachetest.Set(t, c, 1, key)
	if n := queryInt(t, db, "SELECT COUNT(*) FROM unicorntable"); n != 1 {
		t.Errorf("%d rows after a second Set of the same answer, want 1", n)
	}
	if w := strings.Join(c.Warnings(), "\n"); strings.Contains(w, "TTL") {
		t.Errorf("Warnings() = %q, want none about a TTL without one", w)
	}
}

func TestAnotherHostHitsWhatOneStored(t *testing.T) {
	t.Parallel()
	a, _, name := contest(t, Options{})
	b := newCache(t, server, name, Options{})
	cachetest.Set(t, a, 1, "3615-7184-2117")
	cachetest.WantHit(t, b, 1, "3615-7184-2117")
}

func TestHitsColumnCountsEveryHit(t *testing.T) {
	t.Parallel()
	c, db, _ := contest(t, Options{})
	cachetest.Set(t, c, 1, "testing")
	if n := queryInt(t, db, "SELECT hits FROM unicorntable"); n != 0 {
		t.Fatalf("hits = %d after Set, want 0", n)
	}
	for range 3 {
		cachetest.WantHit(t, c, 1, "testing")
	}
	if n := queryInt(t, db, "SELECT hits FROM unicorntable"); n != 0 {
		t.Fatalf("hits = %d before a flush: hits are written every HitFlush, not per hit", n)
	}
	flushHits(t, c)
	if n := queryInt(t, db, "SELECT hits FROM unicorntable"); n != 3 {
		t.Errorf("hits = %d after 3 hits, want 3", n)
	}
}

func TestHitsCountsRowsInsertedWithNullHits(t *testing.T) {
	t.Parallel()
	c, db, _ := contest(t, Options{})
	exec(t, db, "INSERT INTO unicorntable (requestid, requestvalue) VALUES (?, ?)", "k", cachetest.Token(1, "k"))
	cachetest.WantHit(t, c, 1, "k")
	flushHits(t, c)
	if n := queryInt(t, db, "SELECT hits FROM unicorntable"); n != 1 {
		t.Errorf("hits = %d, want 1", n)
	}
}

func TestLookupsTakeTheNewestRow(t *testing.T) {
	t.Parallel()
	c, db, _ := contest(t, Options{})
	exec(t, db, "INSERT INTO unicorntable (requestid, requestvalue, hits) VALUES (?, ?, 0), (?, ?, 0)",
		"old-bad", cachetest.Tamper(cachetest.Token(1, "old-bad")), "old-bad", cachetest.Token(1, "old-bad"))
	cachetest.WantHit(t, c, 1, "old-bad")

	exec(t, db, "INSERT INTO unicorntable (requestid, requestvalue, hits) VALUES (?, ?, 0), (?, ?, 0)",
		"new-bad", cachetest.Token(1, "new-bad"), "new-bad", cachetest.Tamper(cachetest.Token(1, "new-bad")))
	cachetest.WantErr(t, c, "new-bad", cache.ErrCorrupt)
}

func TestKeysDifferingInCaseOrTrailingSpaceAreDistinct(t *testing.T) {
	t.Parallel()
	c, db, _ := contest(t, Options{})
	cachetest.Set(t, c, 1, "abc")
	cachetest.WantErr(t, c, "ABC", cache.ErrMiss)
	cachetest.WantErr(t, c, "abc ", cache.ErrMiss)
	cachetest.Set(t, c, 1, "ABC")
	cachetest.Set(t, c, 1, "abc ")
	for _, k := range []string{"abc", "ABC", "abc "} {
		cachetest.WantHit(t, c, 1, k)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM unicorntable"); n != 3 {
		t.Errorf("%d rows, want 3", n)
	}
	if err := c.Delete(ctxT(t), "ABC"); err != nil {
		t.Fatal(err)
	}
	cachetest.WantErr(t, c, "ABC", cache.ErrMiss)
	cachetest.WantHit(t, c, 1, "abc")
}

func TestKeysTheColumnCannotHoldAreHashed(t *testing.T) {
	t.Parallel()
	c, db, _ := contest(t, Options{})
	for name, key := range map[string]string{
		"a 300-byte key":               strings.Repeat("x", 300),
		"an invalid UTF-8 key":         "caf\xe9",
		"a key that looks like a hash": sqltable.Hash("other"),
	} {
		t.Run(name, func(t *testing.T) {
			cachetest.Set(t, c, 1, key)
			cachetest.WantHit(t, c, 1, key)
			if n := queryInt(t, db, "SELECT COUNT(*) FROM unicorntable WHERE requestid = ?", sqltable.Hash(key)); n != 1 {
				t.Errorf("%d rows under %s, want 1", n, sqltable.Hash(key))
			}
		})
	}
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

func TestATamperedValueIsCorrupt(t *testing.T) {
	t.Parallel()
	c, db, _ := contest(t, Options{})
	cachetest.Set(t, c, 1, "testing")
	exec(t, db, "UPDATE unicorntable SET requestvalue = ?", cachetest.Tamper(cachetest.Token(1, "testing")))
	cachetest.WantErr(t, c, "testing", cache.ErrCorrupt)
	exec(t, db, "UPDATE unicorntable SET requestvalue = NULL")
	cachetest.WantErr(t, c, "testing", cache.ErrCorrupt)
	exec(t, db, "UPDATE unicorntable SET requestvalue = ?", cachetest.Token(1, "another key"))
	cachetest.WantErr(t, c, "testing", cache.ErrCorrupt)
}

func TestAnotherVersionsAnswerIsAMiss(t *testing.T) {
	t.Parallel()
	v1, _, name := contest(t, Options{})
	v2 := newCache(t, server, name, Options{Version: 2})
	cachetest.Set(t, v2, 2, "testing")
	cachetest.WantErr(t, v1, "testing", cache.ErrMiss)
	// Both fleets keep hitting their own rows once both are stored.
	cachetest.Set(t, v1, 1, "testing")
	cachetest.WantHit(t, v1, 1, "testing")
	cachetest.WantHit(t, v2, 2, "testing")
}

func TestWarningsMentionAnUnenforceableTTL(t *testing.T) {
	t.Parallel()
	c, _, name := contest(t, Options{TTL: time.Hour})
	if err := c.Init(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings(), "\n")
	if !strings.Contains(w, "CacheTTL") || !strings.Contains(w, "`"+name+"`.`unicorntable`") {
		t.Errorf("Warnings() = %q, want CacheTTL and the table named", w)
	}
	// The TTL is not enforced, so an old row still hits.
	cachetest.Set(t, c, 1, "testing")
	cachetest.WantHit(t, c, 1, "testing")
}

func TestMissingTableWithoutCreateTable(t *testing.T) {
	t.Parallel()
	name, db := testDB(t, server)
	c := newCache(t, server, name, Options{})
	err := c.Init(ctxT(t))
	if !errors.Is(err, ErrNoTable) {
		t.Fatalf("Init() = %v, want ErrNoTable", err)
	}
	stmt := "CREATE TABLE `unicorntable` (id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT);"
	for _, want := range []string{stmt, "`" + name + "`.`unicorntable`"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Init() = %q, want it to contain %q", err, want)
		}
	}
	if _, err := c.Get(ctxT(t), "k"); !errors.Is(err, ErrNoTable) {
		t.Errorf("Get() = %v, want ErrNoTable", err)
	}
	if err := c.Ping(ctxT(t)); !errors.Is(err, ErrNoTable) {
		t.Errorf("Ping() = %v, want ErrNoTable", err)
	}
	// The statement in the message works as given; the backend then recovers.
	exec(t, db, stmt)
	if err := c.Ping(ctxT(t)); err != nil {
		t.Fatalf("Ping() after creating the table = %v", err)
	}
	cachetest.Set(t, c, 1, "k")
	cachetest.WantHit(t, c, 1, "k")
}

func TestMissingDatabaseIsNoTable(t *testing.T) {
	t.Parallel()
	c := newCache(t, server, "no_such_db", Options{})
	err := c.Init(ctxT(t))
	if !errors.Is(err, ErrNoTable) || !strings.Contains(err.Error(), "no_such_db") {
		t.Fatalf("Init() = %v, want ErrNoTable naming the database", err)
	}
}

func TestCreateTableMakesAManagedTable(t *testing.T) {
	t.Parallel()
	name, db := testDB(t, server)
	c := newCache(t, server, name, Options{CreateTable: true, TTL: time.Hour})
	if err := c.Init(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if m := c.Mode(); m != "managed" {
		t.Errorf("Mode() = %q, want managed", m)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("Warnings() = %q, want none", w)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'unicorntable' AND COLUMN_NAME = 'requestid' AND NON_UNIQUE = 0", name); n != 1 {
		t.Errorf("%d unique indexes on requestid, want 1", n)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'unicorntable' AND COLUMN_NAME = 'created_at'", name); n != 1 {
		t.Errorf("%d created_at columns, want 1", n)
	}

	t.Run("Set replaces the key's row", func(t *testing.T) {
		exec(t, db, "INSERT INTO unicorntable (requestid, requestvalue, hits) VALUES (?, ?, 0)", "k", cachetest.Tamper(cachetest.Token(1, "k")))
		cachetest.WantErr(t, c, "k", cache.ErrCorrupt)
		cachetest.Set(t, c, 1, "k")
		cachetest.Set(t, c, 1, "k")
		cachetest.WantHit(t, c, 1, "k")
		if n := queryInt(t, db, "SELECT COUNT(*) FROM unicorntable WHERE requestid = 'k'"); n != 1 {
			t.Errorf("%d rows for k, want 1", n)
		}
	})
	t.Run("keys differing in case get their own rows", func(t *testing.T) {
		cachetest.Set(t, c, 1, "abc")
		cachetest.Set(t, c, 1, "ABC")
		cachetest.WantHit(t, c, 1, "abc")
		cachetest.WantHit(t, c, 1, "ABC")
	})
	t.Run("an entry older than the TTL is a miss until set again", func(t *testing.T) {
		cachetest.Set(t, c, 1, "old")
		exec(t, db, "UPDATE unicorntable SET created_at = NOW(3) - INTERVAL 2 HOUR WHERE requestid = 'old'")
		cachetest.WantErr(t, c, "old", cache.ErrMiss)
		cachetest.Set(t, c, 1, "old")
		cachetest.WantHit(t, c, 1, "old")
	})
	t.Run("a second Init and another Cache reuse the table", func(t *testing.T) {
		if err := c.Init(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		other := newCache(t, server, name, Options{CreateTable: true})
		cachetest.WantHit(t, other, 1, "k")
	})
}

func TestTTLExpiresInRealTime(t *testing.T) {
	t.Parallel()
	name, _ := testDB(t, server)
	c := newCache(t, server, name, Options{CreateTable: true, TTL: time.Second})
	cachetest.Set(t, c, 1, "k")
	cachetest.WantHit(t, c, 1, "k")
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.Get(ctxT(t), "k")
		if errors.Is(err, cache.ErrMiss) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("entry with a 1s TTL still served after 10s")
		}
		// Time passing is the event waited for; nothing can signal it.
		time.Sleep(100 * time.Millisecond)
	}
}

func TestManagedTableWithoutUniqueIndexHonoursTTL(t *testing.T) {
	t.Parallel()
	name, db := testDB(t, server)
	exec(t, db, "CREATE TABLE unicorntable(id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT, created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))")
	c := newCache(t, server, name, Options{TTL: time.Hour})
	cachetest.Set(t, c, 1, "k")
	exec(t, db, "UPDATE unicorntable SET created_at = NOW(3) - INTERVAL 2 HOUR")
	cachetest.WantErr(t, c, "k", cache.ErrMiss)
	cachetest.Set(t, c, 1, "k") // the expired row holds the same value, yet a fresh one is added
	cachetest.WantHit(t, c, 1, "k")
	if m := c.Mode(); m != "managed" {
		t.Errorf("Mode() = %q, want managed", m)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	c, db, _ := contest(t, Options{})
	cachetest.Set(t, c, 1, "k")
	exec(t, db, "INSERT INTO unicorntable (requestid, requestvalue, hits) VALUES ('k', 'junk', 0), ('other', 'junk', 0)")
	if err := c.Delete(ctxT(t), "k"); err != nil {
		t.Fatal(err)
	}
	cachetest.WantErr(t, c, "k", cache.ErrMiss)
	if n := queryInt(t, db, "SELECT COUNT(*) FROM unicorntable"); n != 1 {
		t.Errorf("%d rows left, want only the other key's", n)
	}
	long := strings.Repeat("z", 400)
	cachetest.Set(t, c, 1, long)
	if err := c.Delete(ctxT(t), long); err != nil {
		t.Fatal(err)
	}
	cachetest.WantErr(t, c, long, cache.ErrMiss)
}

func TestPurgeDeletesOnlyMatchesAndReportsHashedRows(t *testing.T) {
	t.Parallel()
	c, db, name := contest(t, Options{})
	for _, k := range []string{"keep-1", "drop-1", "drop-2", strings.Repeat("drop", 100), "caf\xe9"} {
		cachetest.Set(t, c, 1, k)
	}
	cachetest.Set(t, newCache(t, server, name, Options{Version: 2}), 2, "drop-1") // every version is purged
	removed, skipped, err := c.PurgeCounts(ctxT(t), func(k string) bool { return strings.Contains(k, "drop") })
	if err != nil {
		t.Fatal(err)
	}
	if removed != 3 || skipped != 2 {
		t.Errorf("PurgeCounts() = %d removed, %d skipped; want 3, 2", removed, skipped)
	}
	cachetest.WantErr(t, c, "drop-1", cache.ErrMiss)
	cachetest.WantHit(t, c, 1, "keep-1")
	if n := queryInt(t, db, "SELECT COUNT(*) FROM unicorntable"); n != 3 {
		t.Errorf("%d rows left, want 3", n)
	}
}

func TestPurgeDeletesInBatches(t *testing.T) {
	t.Parallel()
	c, db, _ := contest(t, Options{})
	const n = 1234
	var b strings.Builder
	args := make([]any, 0, 2*n)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("(?, 'x', 0)")
		args = append(args, fmt.Sprintf("batch-%d", i))
	}
	exec(t, db, "INSERT INTO unicorntable (requestid, requestvalue, hits) VALUES "+b.String(), args...)
	cachetest.Set(t, c, 1, "keep")
	removed, err := c.Purge(ctxT(t), func(k string) bool { return strings.HasPrefix(k, "batch-") })
	if err != nil {
		t.Fatal(err)
	}
	if removed != n {
		t.Errorf("Purge() = %d, want %d", removed, n)
	}
	if left := queryInt(t, db, "SELECT COUNT(*) FROM unicorntable"); left != 1 {
		t.Errorf("%d rows left, want 1", left)
	}
}

func TestTablesInitRejects(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		create string
		want   []string
	}{
		"a table without hits and id names both": {
			"CREATE TABLE unicorntable(requestid VARCHAR(255), requestvalue VARCHAR(255))",
			[]string{"id, hits", "lacks"},
		},
		"a requestvalue too short for a token": {
			"CREATE TABLE unicorntable(id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(100), hits INT)",
			[]string{"requestvalue", "244"},
		},
		"an id that is not AUTO_INCREMENT": {
			"CREATE TABLE unicorntable(id INT PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT)",
			[]string{"AUTO_INCREMENT"},
		},
		"a requestid too short for a hashed key": {
			"CREATE TABLE unicorntable(id SERIAL PRIMARY KEY, requestid VARCHAR(40), requestvalue VARCHAR(255), hits INT)",
			[]string{"requestid", "71"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dbName, db := testDB(t, server)
			exec(t, db, tc.create)
			c := newCache(t, server, dbName, Options{CreateTable: true})
			err := c.Init(ctxT(t))
			if !errors.Is(err, ErrSchema) || errors.Is(err, ErrNoTable) {
				t.Fatalf("Init() = %v, want ErrSchema and not ErrNoTable", err)
			}
			if _, err := c.Get(ctxT(t), "k"); !errors.Is(err, ErrSchema) {
				t.Errorf("Get() = %v, want ErrSchema", err)
			}
			if err := c.Ping(ctxT(t)); !errors.Is(err, ErrSchema) {
				t.Errorf("Ping() = %v, want ErrSchema", err)
			}
			for _, w := range append(tc.want, "`"+dbName+"`.`unicorntable`") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Init() = %q, want it to mention %q", err, w)
				}
			}
		})
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

func TestADroppedTableIsNoticed(t *testing.T) {
	t.Parallel()
	for _, create := range []bool{false, true} {
		t.Run(fmt.Sprintf("CreateTable=%v", create), func(t *testing.T) {
			t.Parallel()
			name, db := testDB(t, server)
			c := newCache(t, server, name, Options{CreateTable: create})
			if create {
				cachetest.Set(t, c, 1, "k") // creates the table
			} else {
				exec(t, db, contestTable)
				cachetest.Set(t, c, 1, "k")
			}
			exec(t, db, "DROP TABLE unicorntable")
			if _, err := c.Get(ctxT(t), "k"); err == nil || errors.Is(err, cache.ErrMiss) {
				t.Fatalf("Get() on a dropped table = %v, want an error", err)
			}
			err := c.Ping(ctxT(t))
			if create {
				if err != nil {
					t.Fatalf("Ping() = %v, want the table re-created", err)
				}
				cachetest.WantErr(t, c, "k", cache.ErrMiss)
			} else if !errors.Is(err, ErrNoTable) {
				t.Fatalf("Ping() = %v, want ErrNoTable", err)
			}
		})
	}
}

func TestConcurrentFirstUseInitialisesOnce(t *testing.T) {
	t.Parallel()
	name, db := testDB(t, server)
	c := newCache(t, server, name, Options{CreateTable: true})
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Go(func() {
			key := fmt.Sprintf("key-%d", i%4)
			if err := c.Set(ctxT(t), key, calc.Sum(1, []byte(key))); err != nil {
				errs <- err
				return
			}
			if _, err := c.Get(ctxT(t), key); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM unicorntable"); n != 4 {
		t.Errorf("%d rows, want 4", n)
	}
}

func TestInitHonoursAContextThatEndsWhileWaiting(t *testing.T) {
	t.Parallel()
	c, _, _ := contest(t, Options{})
	c.initSem <- struct{}{} // as if another Init were running
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := c.Init(ctx)
	<-c.initSem
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Init() = %v, want DeadlineExceeded", err)
	}
	if err := c.Init(ctxT(t)); err != nil {
		t.Fatal(err)
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

// flushHits writes the counted hits now instead of within HitFlush.
func flushHits(t *testing.T, c *Cache) {
	t.Helper()
	if err := c.FlushHits(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestHitsAreFlushedInTheBackgroundAndAtClose(t *testing.T) {
	t.Parallel()
	c, db, _ := contest(t, Options{})
	cachetest.Set(t, c, 1, "bg")
	cachetest.WantHit(t, c, 1, "bg")
	deadline := time.Now().Add(10 * HitFlush)
	for queryInt(t, db, "SELECT hits FROM unicorntable") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the hit was not written within %v", 10*HitFlush)
		}
		time.Sleep(HitFlush / 5)
	}
	cachetest.WantHit(t, c, 1, "bg")
	cachetest.WantHit(t, c, 1, "bg")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, db, "SELECT hits FROM unicorntable"); n != 3 {
		t.Fatalf("hits = %d after Close, want 3: Close must flush", n)
	}
}

func TestConcurrentContestSetsAllSucceed(t *testing.T) {
	t.Parallel()
	c, db, _ := contest(t, Options{})
	const writers, each = 8, 150
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("w%d-k%d", w, i)
				if err := c.Set(ctxT(t), key, calc.Sum(1, []byte(key))); err != nil {
					errs <- fmt.Errorf("Set(%q): %w", key, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 5 {
			t.Error(err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d concurrent Sets failed", failed, writers*each)
	}
	if n := queryInt(t, db, "SELECT COUNT(DISTINCT requestid) FROM unicorntable"); n != writers*each {
		t.Errorf("%d keys stored, want %d", n, writers*each)
	}
	for w := range writers {
		for i := range each {
			cachetest.WantHit(t, c, 1, fmt.Sprintf("w%d-k%d", w, i))
		}
	}
}

func TestWarningsSuggestAnIndexOnRequestID(t *testing.T) {
	t.Parallel()
	c, db, name := contest(t, Options{})
	if err := c.Init(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	const stmt = "CREATE INDEX requestid ON `unicorntable` (requestid);"
	w := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{stmt, "scans the whole table", "`" + name + "`.`unicorntable`"} {
		if !strings.Contains(w, want) {
			t.Errorf("Warnings() = %q, want it to contain %q", w, want)
		}
	}
	// The statement works as given, and a fresh Init then sees the index and keeps
	// contest semantics: the index is not unique.
	exec(t, db, stmt)
	c = newCache(t, server, name, Options{})
	cachetest.Set(t, c, 1, "k")
	cachetest.Set(t, newCache(t, server, name, Options{Version: 2}), 2, "k")
	cachetest.WantHit(t, c, 1, "k")
	if w := strings.Join(c.Warnings(), "\n"); strings.Contains(w, "index") {
		t.Errorf("Warnings() with the index = %q, want none about an index", w)
	}
	if m := c.Mode(); m != "contest" {
		t.Errorf("Mode() = %q, want contest", m)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM unicorntable WHERE requestid = 'k'"); n != 2 {
		t.Errorf("%d rows for k, want one per version", n)
	}
}

func TestAnIndexNotLedByRequestIDStillWarns(t *testing.T) {
	t.Parallel()
	c, db, _ := contest(t, Options{})
	exec(t, db, "CREATE INDEX hits_requestid ON unicorntable (hits, requestid)")
	if err := c.Init(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "CREATE INDEX requestid") {
		t.Errorf("Warnings() = %q, want the index suggested", w)
	}
}

func TestPingInitialisesDespiteAnExpiredContext(t *testing.T) {
	t.Parallel()
	c, _, _ := contest(t, Options{Timeout: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	<-ctx.Done() // a probe's CacheTimeout, already spent: Init must not depend on it
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping() with an expired context on a fresh Cache = %v, want Init to run on its own budget", err)
	}
	if m := c.Mode(); m != "contest" {
		t.Fatalf("Mode() = %q after Ping, want contest", m)
	}
	// Once initialised, Ping is a round trip that honours its context.
	if err := c.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ping() with an expired context after Init = %v, want DeadlineExceeded", err)
	}
	if err := c.Ping(ctxT(t)); err != nil {
		t.Errorf("Ping() = %v", err)
	}
}

func TestInitLogsTheTablesWarnings(t *testing.T) {
	t.Parallel()
	var logs svctest.Buffer
	c, _, _ := contest(t, Options{TTL: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := c.Ping(ctxT(t)); err != nil { // as a probe would, long after startup
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "CacheTTL cannot be enforced") || !strings.Contains(out, "CREATE INDEX") {
		t.Fatalf("Init did not log the table's warnings:\n%s", out)
	}
}
