// Package sqltabletest holds the test cases every SQL backend's team table must
// pass, written once for the dialects: the newest row per requestid, exact key
// matches, hits counted in batches, sha256:<hex> for keys the column cannot hold,
// expiry only on a table the server created, purge counting and column checks.
// Only tests import it.
package sqltabletest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/cache/cachetest"
	"github.com/unicorn-rentals/unicorn/internal/cache/sqltable"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// Cache is what a SQL backend's Cache offers beyond the shared interface.
type Cache interface {
	cachetest.Shared
	Init(ctx context.Context) error
	Mode() string
	Warnings() []string
	FlushHits(ctx context.Context) error
	Purge(ctx context.Context, match func(key string) bool) (int, error)
	PurgeCounts(ctx context.Context, match func(key string) bool) (removed, skipped int, err error)
	Close() error
}

// Options are the backend options the cases set; the harness fills in the rest.
type Options struct {
	Version     int
	CreateTable bool
	TTL         time.Duration
	Timeout     time.Duration
	Logger      *slog.Logger
}

// DB is a fresh database on the shared server, arranged and inspected by hand.
// Statements use ? placeholders whatever the dialect.
type DB interface {
	// Name is the database's name.
	Name() string
	// Exec runs a statement, failing t if it fails.
	Exec(t testing.TB, q string, args ...any)
	// Int returns the single integer q selects; NULL is 0.
	Int(t testing.TB, q string, args ...any) int
	// Scan reads the single row q selects into dest.
	Scan(t testing.TB, q string, dest ...any)
	// Open returns a Cache on this database, closed when t ends.
	Open(t testing.TB, o Options) Cache
}

// Reject is a table Init must refuse with ErrSchema.
type Reject struct {
	Create string   // the statement that makes the table
	Want   []string // what the error must mention besides the table
}

// Harness is a backend under test: how to reach it and how its dialect differs.
type Harness struct {
	// Fresh returns a new empty database.
	Fresh func(t testing.TB) DB
	// ContestTable is the statement contest teams were given.
	ContestTable string
	// ErrNoTable and ErrSchema are the backend's sentinels.
	ErrNoTable, ErrSchema error
	// TableName is how messages name the table unicorntable in database db.
	TableName func(db string) string
	// MissingTable is what Init's error on a missing table must mention; its first
	// entry is the statement that creates the table.
	MissingTable []string
	// IndexStatement is the index the warnings suggest, verbatim.
	IndexStatement string
	// IndexesNotLedByRequestID create indexes that do not serve lookups.
	IndexesNotLedByRequestID []string
	// ManagedTable creates a table with created_at but no unique index.
	ManagedTable string
	// TwoHoursAgo is an SQL expression for the time two hours ago.
	TwoHoursAgo string
	// ManagedInsert adds the row (requestid, requestvalue) to a table the
	// backend created, as another writer of the current version would.
	ManagedInsert string
	// ManagedKeepsEveryVersion is set where a table the backend created keeps a
	// row per version of a key rather than one per key.
	ManagedKeepsEveryVersion bool
	// CheckManaged, if set, checks the dialect's own shape of a table the backend
	// created.
	CheckManaged func(t testing.TB, db DB)
	// HashedKeys are keys the contest table cannot hold beyond those every
	// dialect hashes, by case name.
	HashedKeys map[string]string
	// Rejects are the tables Init refuses, by case name.
	Rejects map[string]Reject
	// HoldInit makes c's Init wait as if another were running, until release.
	HoldInit func(c Cache) (release func())
}

// contest returns a fresh database holding the contest table and a Cache on it.
func (h *Harness) contest(t testing.TB, o Options) (Cache, DB) {
	t.Helper()
	db := h.Fresh(t)
	db.Exec(t, h.ContestTable)
	return db.Open(t, o), db
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func flushHits(t testing.TB, c Cache) {
	t.Helper()
	if err := c.FlushHits(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func initOK(t testing.TB, c Cache) {
	t.Helper()
	if err := c.Init(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// Run runs every shared case on h, each as a parallel subtest of t.
func Run(t *testing.T, h Harness) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *Harness)
	}{
		{"ContestTableStoresThenHits", contestTableStoresThenHits},
		{"AnotherHostHitsWhatOneStored", anotherHostHitsWhatOneStored},
		{"HitsColumnCountsEveryHit", hitsColumnCountsEveryHit},
		{"HitsCountsRowsInsertedWithNullHits", hitsCountsRowsInsertedWithNullHits},
		{"HitsAreFlushedInTheBackgroundAndAtClose", hitsAreFlushedInTheBackgroundAndAtClose},
		{"LookupsTakeTheNewestRow", lookupsTakeTheNewestRow},
		{"KeysDifferingInCaseOrTrailingSpaceAreDistinct", keysDifferingInCaseOrTrailingSpaceAreDistinct},
		{"KeysTheColumnCannotHoldAreHashed", keysTheColumnCannotHoldAreHashed},
		{"ATamperedValueIsCorrupt", aTamperedValueIsCorrupt},
		{"AnotherVersionsAnswerIsAMiss", anotherVersionsAnswerIsAMiss},
		{"WarningsMentionAnUnenforceableTTL", warningsMentionAnUnenforceableTTL},
		{"WarningsSuggestAnIndexOnRequestID", warningsSuggestAnIndexOnRequestID},
		{"AnIndexNotLedByRequestIDStillWarns", anIndexNotLedByRequestIDStillWarns},
		{"InitLogsTheTablesWarnings", initLogsTheTablesWarnings},
		{"MissingTableWithoutCreateTable", missingTableWithoutCreateTable},
		{"CreateTableMakesAManagedTable", createTableMakesAManagedTable},
		{"TTLExpiresInRealTime", ttlExpiresInRealTime},
		{"ManagedTableWithoutUniqueIndexHonoursTTL", managedTableWithoutUniqueIndexHonoursTTL},
		{"Delete", deleteRows},
		{"PurgeDeletesOnlyMatchesAndReportsHashedRows", purgeDeletesOnlyMatchesAndReportsHashedRows},
		{"PurgeDeletesInBatches", purgeDeletesInBatches},
		{"TablesInitRejects", tablesInitRejects},
		{"ADroppedTableIsNoticed", aDroppedTableIsNoticed},
		{"ConcurrentFirstUseInitialisesOnce", concurrentFirstUseInitialisesOnce},
		{"ConcurrentContestSetsAllSucceed", concurrentContestSetsAllSucceed},
		{"InitHonoursAContextThatEndsWhileWaiting", initHonoursAContextThatEndsWhileWaiting},
		{"PingInitialisesDespiteAnExpiredContext", pingInitialisesDespiteAnExpiredContext},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, &h)
		})
	}
}

func contestTableStoresThenHits(t *testing.T, h *Harness) {
	c, db := h.contest(t, Options{})
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
	db.Scan(t, "SELECT requestid, requestvalue, hits FROM unicorntable", &rid, &val, &hits)
	if rid != key || val != cachetest.Token(1, key) || hits != 1 {
		t.Errorf("row = (%q, %q, %d), want (%q, %q, 1)", rid, val, hits, key, cachetest.Token(1, key))
	}
	// Setting the same answer again adds no row.
	cachetest.Set(t, c, 1, key)
	if n := db.Int(t, "SELECT COUNT(*) FROM unicorntable"); n != 1 {
		t.Errorf("%d rows after a second Set of the same answer, want 1", n)
	}
	if w := strings.Join(c.Warnings(), "\n"); strings.Contains(w, "TTL") {
		t.Errorf("Warnings() = %q, want none about a TTL without one", w)
	}
}

func anotherHostHitsWhatOneStored(t *testing.T, h *Harness) {
	a, db := h.contest(t, Options{})
	b := db.Open(t, Options{})
	cachetest.Set(t, a, 1, "3615-7184-2117")
	cachetest.WantHit(t, b, 1, "3615-7184-2117")
}

func hitsColumnCountsEveryHit(t *testing.T, h *Harness) {
	c, db := h.contest(t, Options{})
	cachetest.Set(t, c, 1, "testing")
	cachetest.Set(t, c, 1, "other")
	const q = "SELECT hits FROM unicorntable WHERE requestid = 'testing'"
	if n := db.Int(t, q); n != 0 {
		t.Fatalf("hits = %d after Set, want 0", n)
	}
	for range 3 {
		cachetest.WantHit(t, c, 1, "testing")
	}
	cachetest.WantHit(t, c, 1, "other")
	if n := db.Int(t, q); n != 0 {
		t.Fatalf("hits = %d before a flush: hits are written every HitFlush, not per hit", n)
	}
	flushHits(t, c)
	if n := db.Int(t, q); n != 3 {
		t.Errorf("hits = %d after 3 hits, want 3", n)
	}
	if n := db.Int(t, "SELECT hits FROM unicorntable WHERE requestid = 'other'"); n != 1 {
		t.Errorf("hits of the other key = %d, want 1", n)
	}
}

func hitsCountsRowsInsertedWithNullHits(t *testing.T, h *Harness) {
	c, db := h.contest(t, Options{})
	db.Exec(t, "INSERT INTO unicorntable (requestid, requestvalue) VALUES (?, ?)", "k", cachetest.Token(1, "k"))
	cachetest.WantHit(t, c, 1, "k")
	flushHits(t, c)
	if n := db.Int(t, "SELECT hits FROM unicorntable"); n != 1 {
		t.Errorf("hits = %d, want 1", n)
	}
}

func hitsAreFlushedInTheBackgroundAndAtClose(t *testing.T, h *Harness) {
	c, db := h.contest(t, Options{})
	cachetest.Set(t, c, 1, "bg")
	cachetest.WantHit(t, c, 1, "bg")
	deadline := time.Now().Add(10 * sqltable.HitFlush)
	for db.Int(t, "SELECT hits FROM unicorntable") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the hit was not written within %v", 10*sqltable.HitFlush)
		}
		time.Sleep(sqltable.HitFlush / 5)
	}
	cachetest.WantHit(t, c, 1, "bg")
	cachetest.WantHit(t, c, 1, "bg")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := db.Int(t, "SELECT hits FROM unicorntable"); n != 3 {
		t.Fatalf("hits = %d after Close, want 3: Close must flush", n)
	}
	if _, err := c.Get(ctxT(t), "bg"); err == nil {
		t.Error("Get after Close succeeded")
	}
}

func lookupsTakeTheNewestRow(t *testing.T, h *Harness) {
	c, db := h.contest(t, Options{})
	const two = "INSERT INTO unicorntable (requestid, requestvalue, hits) VALUES (?, ?, 0), (?, ?, 0)"
	db.Exec(t, two, "old-bad", cachetest.Tamper(cachetest.Token(1, "old-bad")), "old-bad", cachetest.Token(1, "old-bad"))
	cachetest.WantHit(t, c, 1, "old-bad")

	db.Exec(t, two, "new-bad", cachetest.Token(1, "new-bad"), "new-bad", cachetest.Tamper(cachetest.Token(1, "new-bad")))
	cachetest.WantErr(t, c, "new-bad", cache.ErrCorrupt)
}

func keysDifferingInCaseOrTrailingSpaceAreDistinct(t *testing.T, h *Harness) {
	c, db := h.contest(t, Options{})
	cachetest.Set(t, c, 1, "abc")
	cachetest.WantErr(t, c, "ABC", cache.ErrMiss)
	cachetest.WantErr(t, c, "abc ", cache.ErrMiss)
	cachetest.Set(t, c, 1, "ABC")
	cachetest.Set(t, c, 1, "abc ")
	for _, k := range []string{"abc", "ABC", "abc "} {
		cachetest.WantHit(t, c, 1, k)
	}
	if n := db.Int(t, "SELECT COUNT(*) FROM unicorntable"); n != 3 {
		t.Errorf("%d rows, want 3", n)
	}
	if err := c.Delete(ctxT(t), "ABC"); err != nil {
		t.Fatal(err)
	}
	cachetest.WantErr(t, c, "ABC", cache.ErrMiss)
	cachetest.WantHit(t, c, 1, "abc")
}

func keysTheColumnCannotHoldAreHashed(t *testing.T, h *Harness) {
	c, db := h.contest(t, Options{})
	keys := map[string]string{
		"a 300-byte key":               strings.Repeat("x", 300),
		"an invalid UTF-8 key":         "caf\xe9",
		"a key that looks like a hash": sqltable.Hash("other"),
	}
	for name, key := range h.HashedKeys {
		keys[name] = key
	}
	for name, key := range keys {
		t.Run(name, func(t *testing.T) {
			cachetest.Set(t, c, 1, key)
			cachetest.WantHit(t, c, 1, key)
			if n := db.Int(t, "SELECT COUNT(*) FROM unicorntable WHERE requestid = ?", sqltable.Hash(key)); n != 1 {
				t.Errorf("%d rows under %s, want 1", n, sqltable.Hash(key))
			}
		})
	}
}

func aTamperedValueIsCorrupt(t *testing.T, h *Harness) {
	c, db := h.contest(t, Options{})
	cachetest.Set(t, c, 1, "testing")
	db.Exec(t, "UPDATE unicorntable SET requestvalue = ?", cachetest.Tamper(cachetest.Token(1, "testing")))
	cachetest.WantErr(t, c, "testing", cache.ErrCorrupt)
	db.Exec(t, "UPDATE unicorntable SET requestvalue = NULL")
	cachetest.WantErr(t, c, "testing", cache.ErrCorrupt)
	db.Exec(t, "UPDATE unicorntable SET requestvalue = ?", cachetest.Token(1, "another key"))
	cachetest.WantErr(t, c, "testing", cache.ErrCorrupt)
}

func anotherVersionsAnswerIsAMiss(t *testing.T, h *Harness) {
	v1, db := h.contest(t, Options{})
	v2 := db.Open(t, Options{Version: 2})
	cachetest.Set(t, v2, 2, "testing")
	cachetest.WantErr(t, v1, "testing", cache.ErrMiss)
	// Both fleets keep hitting their own rows once both are stored.
	cachetest.Set(t, v1, 1, "testing")
	cachetest.WantHit(t, v1, 1, "testing")
	cachetest.WantHit(t, v2, 2, "testing")
}

func warningsMentionAnUnenforceableTTL(t *testing.T, h *Harness) {
	c, db := h.contest(t, Options{TTL: time.Hour})
	initOK(t, c)
	w := strings.Join(c.Warnings(), "\n")
	if !strings.Contains(w, "CacheTTL") || !strings.Contains(w, h.TableName(db.Name())) {
		t.Errorf("Warnings() = %q, want CacheTTL and the table named", w)
	}
	// The TTL is not enforced, so an old row still hits.
	cachetest.Set(t, c, 1, "testing")
	cachetest.WantHit(t, c, 1, "testing")
}

func warningsSuggestAnIndexOnRequestID(t *testing.T, h *Harness) {
	c, db := h.contest(t, Options{})
	initOK(t, c)
	w := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{h.IndexStatement, "scans the whole table", h.TableName(db.Name())} {
		if !strings.Contains(w, want) {
			t.Errorf("Warnings() = %q, want it to contain %q", w, want)
		}
	}
	// The statement works as given, and a fresh Init then sees the index and keeps
	// contest semantics: the index is not unique.
	db.Exec(t, h.IndexStatement)
	c = db.Open(t, Options{})
	cachetest.Set(t, c, 1, "k")
	cachetest.Set(t, db.Open(t, Options{Version: 2}), 2, "k")
	cachetest.WantHit(t, c, 1, "k")
	if w := strings.Join(c.Warnings(), "\n"); strings.Contains(w, "index") {
		t.Errorf("Warnings() with the index = %q, want none about an index", w)
	}
	if m := c.Mode(); m != "contest" {
		t.Errorf("Mode() = %q, want contest", m)
	}
	if n := db.Int(t, "SELECT COUNT(*) FROM unicorntable WHERE requestid = 'k'"); n != 2 {
		t.Errorf("%d rows for k, want one per version", n)
	}
}

func anIndexNotLedByRequestIDStillWarns(t *testing.T, h *Harness) {
	c, db := h.contest(t, Options{})
	for _, stmt := range h.IndexesNotLedByRequestID {
		db.Exec(t, stmt)
	}
	initOK(t, c)
	want := strings.TrimSuffix(h.IndexStatement, ";")
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, want) {
		t.Errorf("Warnings() = %q, want the index suggested", w)
	}
}

func initLogsTheTablesWarnings(t *testing.T, h *Harness) {
	var logs svctest.Buffer
	c, _ := h.contest(t, Options{TTL: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := c.Ping(ctxT(t)); err != nil { // as a probe would, long after startup
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "CacheTTL cannot be enforced") || !strings.Contains(out, "CREATE INDEX") {
		t.Fatalf("Init did not log the table's warnings:\n%s", out)
	}
}

func missingTableWithoutCreateTable(t *testing.T, h *Harness) {
	db := h.Fresh(t)
	c := db.Open(t, Options{})
	err := c.Init(ctxT(t))
	if !errors.Is(err, h.ErrNoTable) {
		t.Fatalf("Init() = %v, want ErrNoTable", err)
	}
	for _, want := range append(h.MissingTable, h.TableName(db.Name())) {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Init() = %q, want it to contain %q", err, want)
		}
	}
	if _, err := c.Get(ctxT(t), "k"); !errors.Is(err, h.ErrNoTable) {
		t.Errorf("Get() = %v, want ErrNoTable", err)
	}
	if err := c.Ping(ctxT(t)); !errors.Is(err, h.ErrNoTable) {
		t.Errorf("Ping() = %v, want ErrNoTable", err)
	}
	if m := c.Mode(); m != "" {
		t.Errorf("Mode() = %q before a successful Init, want empty", m)
	}
	// The statement in the message works as given; the backend then recovers.
	db.Exec(t, h.MissingTable[0])
	if err := c.Ping(ctxT(t)); err != nil {
		t.Fatalf("Ping() after creating the table = %v", err)
	}
	cachetest.Set(t, c, 1, "k")
	cachetest.WantHit(t, c, 1, "k")
}

func createTableMakesAManagedTable(t *testing.T, h *Harness) {
	db := h.Fresh(t)
	c := db.Open(t, Options{CreateTable: true, TTL: time.Hour})
	initOK(t, c)
	if m := c.Mode(); m != "managed" {
		t.Errorf("Mode() = %q, want managed", m)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("Warnings() = %q, want none", w)
	}
	if h.CheckManaged != nil {
		h.CheckManaged(t, db)
	}

	t.Run("Set replaces the key's row", func(t *testing.T) {
		db.Exec(t, h.ManagedInsert, "k", cachetest.Tamper(cachetest.Token(1, "k")))
		cachetest.WantErr(t, c, "k", cache.ErrCorrupt)
		cachetest.Set(t, c, 1, "k")
		cachetest.Set(t, c, 1, "k")
		cachetest.WantHit(t, c, 1, "k")
		if n := db.Int(t, "SELECT COUNT(*) FROM unicorntable WHERE requestid = 'k'"); n != 1 {
			t.Errorf("%d rows for k, want 1", n)
		}
	})
	if h.ManagedKeepsEveryVersion {
		t.Run("two versions keep a row each", func(t *testing.T) {
			v2 := db.Open(t, Options{CreateTable: true, Version: 2})
			cachetest.Set(t, c, 1, "both")
			cachetest.Set(t, v2, 2, "both")
			cachetest.Set(t, c, 1, "both")
			cachetest.WantHit(t, c, 1, "both")
			cachetest.WantHit(t, v2, 2, "both")
			if n := db.Int(t, "SELECT COUNT(*) FROM unicorntable WHERE requestid = 'both'"); n != 2 {
				t.Errorf("%d rows for the key, want one per version", n)
			}
		})
	}
	t.Run("keys differing in case get their own rows", func(t *testing.T) {
		cachetest.Set(t, c, 1, "abc")
		cachetest.Set(t, c, 1, "ABC")
		cachetest.WantHit(t, c, 1, "abc")
		cachetest.WantHit(t, c, 1, "ABC")
	})
	t.Run("an entry older than the TTL is a miss until set again", func(t *testing.T) {
		cachetest.Set(t, c, 1, "old")
		db.Exec(t, "UPDATE unicorntable SET created_at = "+h.TwoHoursAgo+" WHERE requestid = 'old'")
		cachetest.WantErr(t, c, "old", cache.ErrMiss)
		cachetest.Set(t, c, 1, "old")
		cachetest.WantHit(t, c, 1, "old")
	})
	t.Run("a second Init and another Cache reuse the table", func(t *testing.T) {
		initOK(t, c)
		other := db.Open(t, Options{CreateTable: true})
		cachetest.WantHit(t, other, 1, "k")
	})
}

func ttlExpiresInRealTime(t *testing.T, h *Harness) {
	c := h.Fresh(t).Open(t, Options{CreateTable: true, TTL: time.Second})
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

func managedTableWithoutUniqueIndexHonoursTTL(t *testing.T, h *Harness) {
	db := h.Fresh(t)
	db.Exec(t, h.ManagedTable)
	c := db.Open(t, Options{TTL: time.Hour})
	cachetest.Set(t, c, 1, "k")
	db.Exec(t, "UPDATE unicorntable SET created_at = "+h.TwoHoursAgo)
	cachetest.WantErr(t, c, "k", cache.ErrMiss)
	cachetest.Set(t, c, 1, "k") // the expired row holds the same value, yet a fresh one is added
	cachetest.WantHit(t, c, 1, "k")
	if m := c.Mode(); m != "managed" {
		t.Errorf("Mode() = %q, want managed", m)
	}
}

func deleteRows(t *testing.T, h *Harness) {
	c, db := h.contest(t, Options{})
	cachetest.Set(t, c, 1, "k")
	db.Exec(t, "INSERT INTO unicorntable (requestid, requestvalue, hits) VALUES ('k', 'junk', 0), ('other', 'junk', 0)")
	if err := c.Delete(ctxT(t), "k"); err != nil {
		t.Fatal(err)
	}
	cachetest.WantErr(t, c, "k", cache.ErrMiss)
	if n := db.Int(t, "SELECT COUNT(*) FROM unicorntable"); n != 1 {
		t.Errorf("%d rows left, want only the other key's", n)
	}
	long := strings.Repeat("z", 400)
	cachetest.Set(t, c, 1, long)
	if err := c.Delete(ctxT(t), long); err != nil {
		t.Fatal(err)
	}
	cachetest.WantErr(t, c, long, cache.ErrMiss)
}

func purgeDeletesOnlyMatchesAndReportsHashedRows(t *testing.T, h *Harness) {
	c, db := h.contest(t, Options{})
	for _, k := range []string{"keep-1", "drop-1", "drop-2", strings.Repeat("drop", 100), "caf\xe9"} {
		cachetest.Set(t, c, 1, k)
	}
	cachetest.Set(t, db.Open(t, Options{Version: 2}), 2, "drop-1") // every version is purged
	db.Exec(t, "INSERT INTO unicorntable (requestid, requestvalue, hits) VALUES (NULL, 'x', 0)")
	removed, skipped, err := c.PurgeCounts(ctxT(t), func(k string) bool { return strings.Contains(k, "drop") })
	if err != nil {
		t.Fatal(err)
	}
	if removed != 3 || skipped != 2 {
		t.Errorf("PurgeCounts() = %d removed, %d skipped; want 3, 2", removed, skipped)
	}
	cachetest.WantErr(t, c, "drop-1", cache.ErrMiss)
	cachetest.WantHit(t, c, 1, "keep-1")
	if n := db.Int(t, "SELECT COUNT(*) FROM unicorntable"); n != 4 {
		t.Errorf("%d rows left, want 4", n)
	}
}

// insertRows adds n rows of value x under requestids prefix0, prefix1, ….
func insertRows(t testing.TB, db DB, prefix string, n int) {
	t.Helper()
	rows := make([]string, n)
	args := make([]any, n)
	for i := range n {
		rows[i] = "(?, 'x', 0)"
		args[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	db.Exec(t, "INSERT INTO unicorntable (requestid, requestvalue, hits) VALUES "+strings.Join(rows, ", "), args...)
}

func purgeDeletesInBatches(t *testing.T, h *Harness) {
	c, db := h.contest(t, Options{})
	const n = 1234
	insertRows(t, db, "batch-", n)
	cachetest.Set(t, c, 1, "keep")
	insertRows(t, db, "batch-late-", 10)
	removed, err := c.Purge(ctxT(t), func(k string) bool { return strings.HasPrefix(k, "batch-") })
	if err != nil {
		t.Fatal(err)
	}
	if removed != n+10 {
		t.Errorf("Purge() = %d, want %d", removed, n+10)
	}
	if left := db.Int(t, "SELECT COUNT(*) FROM unicorntable"); left != 1 {
		t.Errorf("%d rows left, want 1", left)
	}
}

func tablesInitRejects(t *testing.T, h *Harness) {
	for name, tc := range h.Rejects {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := h.Fresh(t)
			db.Exec(t, tc.Create)
			c := db.Open(t, Options{CreateTable: true})
			err := c.Init(ctxT(t))
			if !errors.Is(err, h.ErrSchema) || errors.Is(err, h.ErrNoTable) {
				t.Fatalf("Init() = %v, want ErrSchema and not ErrNoTable", err)
			}
			if _, err := c.Get(ctxT(t), "k"); !errors.Is(err, h.ErrSchema) {
				t.Errorf("Get() = %v, want ErrSchema", err)
			}
			if err := c.Ping(ctxT(t)); !errors.Is(err, h.ErrSchema) {
				t.Errorf("Ping() = %v, want ErrSchema", err)
			}
			for _, w := range append(tc.Want, h.TableName(db.Name())) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Init() = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

func aDroppedTableIsNoticed(t *testing.T, h *Harness) {
	for _, create := range []bool{false, true} {
		t.Run(fmt.Sprintf("CreateTable=%v", create), func(t *testing.T) {
			t.Parallel()
			db := h.Fresh(t)
			c := db.Open(t, Options{CreateTable: create})
			if !create {
				db.Exec(t, h.ContestTable)
			}
			cachetest.Set(t, c, 1, "k") // creates the table when allowed
			db.Exec(t, "DROP TABLE unicorntable")
			if _, err := c.Get(ctxT(t), "k"); err == nil || errors.Is(err, cache.ErrMiss) {
				t.Fatalf("Get() on a dropped table = %v, want an error", err)
			}
			err := c.Ping(ctxT(t))
			if create {
				if err != nil {
					t.Fatalf("Ping() = %v, want the table re-created", err)
				}
				cachetest.WantErr(t, c, "k", cache.ErrMiss)
				cachetest.Set(t, c, 1, "k")
				cachetest.WantHit(t, c, 1, "k")
			} else if !errors.Is(err, h.ErrNoTable) {
				t.Fatalf("Ping() = %v, want ErrNoTable", err)
			}
		})
	}
}

func concurrentFirstUseInitialisesOnce(t *testing.T, h *Harness) {
	db := h.Fresh(t)
	c := db.Open(t, Options{CreateTable: true})
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
	if n := db.Int(t, "SELECT COUNT(*) FROM unicorntable"); n != 4 {
		t.Errorf("%d rows, want 4", n)
	}
}

func concurrentContestSetsAllSucceed(t *testing.T, h *Harness) {
	c, db := h.contest(t, Options{})
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
	if n := db.Int(t, "SELECT COUNT(DISTINCT requestid) FROM unicorntable"); n != writers*each {
		t.Errorf("%d keys stored, want %d", n, writers*each)
	}
	for w := range writers {
		for i := range each {
			cachetest.WantHit(t, c, 1, fmt.Sprintf("w%d-k%d", w, i))
		}
	}
}

func initHonoursAContextThatEndsWhileWaiting(t *testing.T, h *Harness) {
	c, _ := h.contest(t, Options{})
	release := h.HoldInit(c) // as if another Init were running
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := c.Init(ctx)
	release()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Init() = %v, want DeadlineExceeded", err)
	}
	initOK(t, c)
}

func pingInitialisesDespiteAnExpiredContext(t *testing.T, h *Harness) {
	c, _ := h.contest(t, Options{Timeout: 100 * time.Millisecond})
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

// Main starts the server a package's tests share, sets *server to it, runs m and
// returns the exit code. pkg names the tests and daemon the server in messages.
func Main(m *testing.M, pkg, daemon string, start func(dir string) (*svctest.Proc, error), server **svctest.Proc) int {
	dir, err := os.MkdirTemp("", pkg+"cache-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s tests: %v\n", pkg, err)
		return 1
	}
	defer os.RemoveAll(dir)
	p, err := start(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s tests: cannot start %s: %v\n", pkg, daemon, err)
		return 1
	}
	*server = p
	defer func() {
		if err := p.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "%s tests: stop %s: %v\n", pkg, daemon, err)
		}
	}()
	code := m.Run()
	// Every test shares this server, so its crash fails them all with connection
	// errors that do not say why; its own last words do.
	if err := p.Exited(); err != nil {
		fmt.Fprintf(os.Stderr, "%s tests: the shared %s died during the tests: %v\n", pkg, daemon, err)
		return 1
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "%s tests: the shared %s at %s still runs; its log ends:\n%s\n", pkg, daemon, p.Addr, p.Output())
	}
	return code
}
