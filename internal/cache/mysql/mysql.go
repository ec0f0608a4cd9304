// Package mysql is the MySQL/MariaDB cache backend. It works on the table contest
// teams create by hand,
//
//	CREATE TABLE unicorntable(id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT)
//
// which has no unique index and no expiry column ("contest" mode), and on a table it
// creates itself with a unique index on requestid and a created_at column ("managed"
// mode), where Set replaces a key's row and CacheTTL is enforced.
//
// requestid holds the key itself when the column can store it exactly, so a team
// can read its table, else "sha256:" and the hex SHA-256 of the key. requestvalue
// holds the token body of the answer (244 characters: version, key hash and result),
// which Get re-checks before serving it. hits counts the hits served from each row.
package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/cache/sqltable"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/sqlname"
)

// ErrNoTable is wrapped by Init (and by every operation that calls it) when the
// configured table, or its database, does not exist and Options.CreateTable is false.
// It matches cache.ErrUnusable: the server treats it as a configuration error, not
// as an outage. The message says how to create the table.
var ErrNoTable = cache.Unusable("mysql: table does not exist")

// ErrSchema is wrapped by Init (and by every operation that calls it) when the
// table exists but cannot be used: it lacks a required column, its id is not
// AUTO_INCREMENT, or requestvalue or requestid is too short. Like ErrNoTable it
// matches cache.ErrUnusable; the message says what to change.
var ErrSchema = cache.Unusable("mysql: table cannot be used")

var (
	_ cache.Initializer    = (*Cache)(nil)
	_ cache.CountingPurger = (*Cache)(nil)
)

// DefaultTable is the table name contest teams were told to create.
const DefaultTable = "unicorntable"

// DefaultTimeout is used when Options.Timeout is zero; it matches CacheTimeout's
// default.
const DefaultTimeout = 100 * time.Millisecond

// Options configure a Cache. Host and DB are required; every other zero value works.
type Options struct {
	// Host is the server's name or address (MysqlHost). It may carry a port
	// ("db:3307") when Port is zero.
	Host string
	// Port is the server's TCP port (MysqlPort). If zero, 3306 is used.
	Port int
	// User, Pass and DB are the credentials and the database (MysqlUser, MysqlPass,
	// MysqlDb).
	User, Pass, DB string
	// Table is the table name (MysqlTable): a letter or _, then up to 63 letters,
	// digits or _. It is always quoted with backticks in SQL. If empty,
	// DefaultTable is used.
	Table string
	// CreateTable lets Init create a missing table in managed mode
	// (MysqlCreateTable) instead of failing with ErrNoTable.
	CreateTable bool
	// TLS is go-sql-driver/mysql's tls setting (MysqlTLS): "" or "false" (off),
	// "true" (verified), "skip-verify" or "preferred" (TLS when the server offers
	// it, unverified).
	TLS string
	// TTL is how long an entry is served (CacheTTL); 0 means forever. Only a table
	// with a created_at column can enforce it; see Warnings.
	TTL time.Duration
	// Version is the CalcVersion whose answers are stored and served. If zero, 1.
	Version int
	// Timeout bounds dialing and each network read or write of cache operations
	// (CacheTimeout), so a server that stops answering fails a request within about
	// Timeout even when the caller's context has no deadline. A server across
	// regions, or behind a slow TLS handshake, needs a larger CacheTimeout. Init,
	// the table creation and Purge run on their own connections with at least 1s to
	// dial and 30s per read, bounded by their context: a CREATE TABLE or a
	// 500-row DELETE may legitimately take longer than a cache lookup. If zero,
	// DefaultTimeout is used.
	Timeout time.Duration
	// Logger receives what the driver logs on its own, such as a pooled connection
	// found dead; the errors that matter are also returned. If nil, those lines are
	// discarded rather than written to the process's standard error.
	Logger *slog.Logger
}

// Cache is the MySQL/MariaDB backend. It is safe for concurrent use. New does no
// network I/O; the first operation (or Init, or Ping) inspects the table and
// prepares the statements for what it found.
//
// Besides cache.Cache, it is a cache.Initializer (calcserver runs Init at startup
// and before purge) and a cache.CountingPurger.
type Cache struct {
	o     Options
	name  string // `db`.`table`, for messages
	quote string // `table`, for SQL
	addr  string

	db    *sql.DB // cache operations: short timeouts, 16 connections
	admin *sql.DB // Init and Purge: long timeouts, context-bounded

	initSem chan struct{}          // held by the one Init running; waiters honour ctx
	state   atomic.Pointer[schema] // nil until Init succeeds, and again when the table goes away
	closed  atomic.Bool

	hits *sqltable.Hits // written to the hits column by FlushHits
}

// HitFlush is how often counted hits are written to the hits column.
const HitFlush = sqltable.HitFlush

var (
	_ cache.Cache   = (*Cache)(nil)
	_ cache.Deleter = (*Cache)(nil)
	_ cache.Pinger  = (*Cache)(nil)
	_ cache.Purger  = (*Cache)(nil)
)

// New checks o and opens the connection pools without connecting: a server that is
// down at startup must not stop the calc server, which starts degraded and retries
// through Ping.
func New(o Options) (*Cache, error) {
	if o.Table == "" {
		o.Table = DefaultTable
	}
	if !sqlname.Valid(o.Table) {
		return nil, fmt.Errorf("mysql: table name %q is not an identifier: %s", o.Table, sqlname.Rule)
	}
	if o.DB == "" {
		return nil, errors.New("mysql: no database name (MysqlDb) given")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Version == 0 {
		o.Version = 1
	}
	if err := cache.CheckOptions(o.Version, o.TTL, o.Timeout); err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	switch o.TLS {
	case "", "false", "true", "skip-verify", "preferred":
	default:
		return nil, fmt.Errorf(`mysql: TLS %q is not one of "", "false", "true", "skip-verify", "preferred"`, o.TLS)
	}
	addr, err := address(o.Host, o.Port)
	if err != nil {
		return nil, err
	}
	c := &Cache{
		o:       o,
		name:    "`" + o.DB + "`.`" + o.Table + "`",
		quote:   "`" + o.Table + "`",
		addr:    addr,
		initSem: make(chan struct{}, 1),
		hits:    sqltable.NewHits(),
	}
	c.db, err = open(c.config(o.Timeout, o.Timeout))
	if err != nil {
		return nil, err
	}
	c.db.SetMaxOpenConns(16)
	c.db.SetMaxIdleConns(16)
	c.db.SetConnMaxLifetime(5 * time.Minute)
	c.db.SetConnMaxIdleTime(time.Minute)

	c.admin, err = open(c.config(max(o.Timeout, time.Second), max(o.Timeout, 30*time.Second)))
	if err != nil {
		c.db.Close()
		return nil, err
	}
	// Purge holds one connection streaming ids and deletes on another, so the
	// admin pool has no open limit (concurrent purges would otherwise deadlock);
	// it is idle almost always, so it keeps little.
	c.admin.SetMaxIdleConns(2)
	c.admin.SetConnMaxLifetime(5 * time.Minute)
	c.admin.SetConnMaxIdleTime(time.Minute)
	c.hits.Start(c.FlushHits)
	return c, nil
}

// FlushHits writes the hits counted since the last flush, a row per UPDATE, rows
// in id order. Hits it cannot write are kept for the next one.
func (c *Cache) FlushHits(ctx context.Context) error {
	defer c.hits.Begin()()
	ids, counts := c.hits.Take()
	if len(ids) == 0 {
		return nil
	}
	s := c.state.Load()
	if s == nil {
		c.hits.Keep(ids, counts) // for when Init has succeeded again
		return nil
	}
	for i, id := range ids {
		if _, err := s.hit.ExecContext(ctx, counts[id], id); err != nil {
			c.hits.Keep(ids[i:], counts)
			return c.fail(s, "count hits", err)
		}
	}
	return nil
}

// address joins host and port, accepting a host that already carries a port.
func address(host string, port int) (string, error) {
	if host == "" {
		return "", errors.New("mysql: no host (MysqlHost) given")
	}
	if port < 0 || port > 65535 {
		return "", fmt.Errorf("mysql: port %d is out of range", port)
	}
	if h, p, err := net.SplitHostPort(host); err == nil {
		if port != 0 && p != strconv.Itoa(port) {
			return "", fmt.Errorf("mysql: host %q carries port %s but port %d is configured", host, p, port)
		}
		return net.JoinHostPort(h, p), nil
	}
	if port == 0 {
		port = 3306
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port)), nil
}

// config is the driver configuration with the given dial and I/O timeouts.
func (c *Cache) config(dial, io time.Duration) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User = c.o.User
	cfg.Passwd = c.o.Pass
	cfg.Net = "tcp"
	cfg.Addr = c.addr
	cfg.DBName = c.o.DB
	cfg.TLSConfig = c.o.TLS
	cfg.Timeout = dial
	cfg.ReadTimeout = io
	cfg.WriteTimeout = io
	// created_at is compared with NOW(3); in UTC no daylight-saving change can
	// make an entry look younger or older than it is.
	cfg.Params = map[string]string{"time_zone": "'+00:00'"}
	// During an Aurora or RDS failover the old writer turns read-only; dropping
	// such a connection lets the pool reconnect to the new writer.
	cfg.RejectReadOnly = true
	cfg.Logger = driverLogger{c.o.Logger}
	return cfg
}

// driverLogger passes the driver's log lines to a slog.Logger, or drops them.
type driverLogger struct{ l *slog.Logger }

func (d driverLogger) Print(v ...any) {
	if d.l != nil {
		d.l.Warn(strings.TrimSpace(fmt.Sprint(v...)), "backend", "mysql")
	}
}

// open opens a pool for cfg without connecting. It goes through a Connector, not a
// DSN string: a DSN cannot carry cfg.Logger, and the driver would then write its
// own lines to standard error.
func open(cfg *mysql.Config) (*sql.DB, error) {
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql: %s: %w", cfg.Addr, err)
	}
	return sql.OpenDB(conn), nil
}

// requestID is the requestid under which key is stored: the key itself when the
// column holds it byte for byte, else sha256:<hex> (sqltable.RequestID).
func (s *schema) requestID(key string) string {
	return sqltable.RequestID(key, s.verbatim)
}

// verbatim reports whether requestid holds key byte for byte.
func (s *schema) verbatim(key string) bool {
	return len(key) <= s.maxKey && (s.anyUTF8 && utf8.ValidString(key) || sqltable.IsASCII(key))
}

// ready returns the table's schema, running Init first if it has not succeeded.
func (c *Cache) ready(ctx context.Context) (*schema, error) {
	if s := c.state.Load(); s != nil {
		return s, nil
	}
	return c.init(ctx)
}

// Get returns the answer stored for key. It reads the key's newest rows (in managed
// mode with a TTL, only those younger than the TTL), skips answers of other
// versions, and serves the first row that is this version's exact answer; a
// damaged row met first yields cache.ErrCorrupt so the caller deletes it. A hit
// adds one to the row's hits column (within HitFlush).
func (c *Cache) Get(ctx context.Context, key string) (calc.Result, error) {
	s, err := c.ready(ctx)
	if err != nil {
		return calc.Result{}, err
	}
	rid := s.requestID(key)
	var rows *sql.Rows
	if s.ttl {
		rows, err = s.get.QueryContext(ctx, rid, rid, c.o.TTL.Microseconds())
	} else {
		rows, err = s.get.QueryContext(ctx, rid, rid)
	}
	if err != nil {
		return calc.Result{}, c.fail(s, "get", err)
	}
	r, row, err := sqltable.Newest[sql.RawBytes](rows, c.o.Version, key)
	rows.Close()
	if rerr := rows.Err(); rerr != nil {
		return calc.Result{}, c.fail(s, "get", rerr)
	}
	switch {
	case err == nil:
		c.hits.Count(row)
		return r, nil
	case errors.Is(err, cache.ErrMiss):
		return calc.Result{}, cache.ErrMiss
	case errors.Is(err, cache.ErrCorrupt):
		return calc.Result{}, fmt.Errorf("mysql: %s row %d: %w", c.name, row, err)
	default:
		return calc.Result{}, c.fail(s, "get", err)
	}
}

// Set stores r as key's answer. In contest mode it appends a row unless the key
// already has a row with exactly this answer (in managed mode without a unique
// index: one younger than the TTL); with a unique index on requestid it replaces
// the key's row and restarts its TTL.
func (c *Cache) Set(ctx context.Context, key string, r calc.Result) error {
	s, err := c.ready(ctx)
	if err != nil {
		return err
	}
	rid := s.requestID(key)
	token := string(calc.AppendBody(make([]byte, 0, calc.TokenSize), calc.Token, c.o.Version, []byte(key), &r))
	switch {
	case s.unique:
		_, err = s.set.ExecContext(ctx, rid, token)
	case s.ttl:
		err = c.insertIfAbsent(ctx, s, rid, token, rid, rid, token, c.o.TTL.Microseconds())
	default:
		err = c.insertIfAbsent(ctx, s, rid, token, rid, rid, token)
	}
	if err != nil {
		return c.fail(s, "set", err)
	}
	return nil
}

// Server errors after which insertIfAbsent tries once more.
const (
	erAutoincRead  = 1467 // ER_AUTOINC_READ_FAILED, InnoDB's answer to some lock conflicts
	erLockDeadlock = 1213 // ER_LOCK_DEADLOCK: the transaction was rolled back
)

// insertIfAbsent runs the INSERT … SELECT … WHERE NOT EXISTS of a table without a
// unique index on requestid. At REPEATABLE READ, InnoDB's default, the subquery
// takes shared next-key locks over every row it scans (all of them when requestid
// has no index), and concurrent inserts then fail with a deadlock or "Failed to
// read auto-increment value". At READ COMMITTED the subquery is a consistent read
// that locks nothing. The isolation level is set per transaction
// (sql.TxOptions), which MariaDB and MySQL 8 both accept. A statement that still
// fails with a deadlock or that error is tried once more.
func (c *Cache) insertIfAbsent(ctx context.Context, s *schema, args ...any) error {
	err := c.insertTx(ctx, s, args)
	var me *mysql.MySQLError
	if errors.As(err, &me) && (me.Number == erLockDeadlock || me.Number == erAutoincRead) {
		err = c.insertTx(ctx, s, args)
	}
	return err
}

func (c *Cache) insertTx(ctx context.Context, s *schema, args []any) error {
	tx, err := c.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	if _, err := tx.StmtContext(ctx, s.set).ExecContext(ctx, args...); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Delete removes every row stored for key, whatever its version: Chain calls it to
// drop a damaged value.
func (c *Cache) Delete(ctx context.Context, key string) error {
	s, err := c.ready(ctx)
	if err != nil {
		return err
	}
	rid := s.requestID(key)
	if _, err := s.del.ExecContext(ctx, rid, rid); err != nil {
		return c.fail(s, "delete", err)
	}
	return nil
}

// Ping checks the server answers and, until Init has succeeded, runs it, so that
// Chain's probe both recovers a backend that was down at startup and keeps one
// whose table is missing unhealthy (with ErrNoTable or ErrSchema).
//
// Once Init has succeeded, Ping is one round trip bounded by ctx. Until then it
// runs Init, which dials, queries information_schema and prepares statements,
// detached from ctx under its own budget (sqltable.Ping). Ping is meant for
// probes and startup, off the request path.
func (c *Cache) Ping(ctx context.Context) error {
	return sqltable.Ping(ctx, c.o.Timeout, c.inited, func(ctx context.Context) error {
		if err := c.db.PingContext(ctx); err != nil {
			return fmt.Errorf("mysql: ping %s at %s: %w", c.name, c.addr, err)
		}
		return nil
	}, func(ctx context.Context) error {
		_, err := c.ready(ctx)
		return err
	})
}

// inited reports whether Init has succeeded and the table is still there.
func (c *Cache) inited() bool { return c.state.Load() != nil }

// Purge deletes every row (of any version) whose requestid match accepts and
// returns how many it removed. Rows stored under a hashed requestid cannot be
// matched and are left alone; PurgeCounts reports how many there were.
func (c *Cache) Purge(ctx context.Context, match func(key string) bool) (int, error) {
	removed, _, err := c.PurgeCounts(ctx, match)
	return removed, err
}

// PurgeCounts is Purge that also returns skipped: the number of rows whose
// requestid is a sha256:<hex> hash (keys too long for the column, or not valid
// UTF-8), which no pattern can match. It streams the table's ids and requestids
// and deletes the matching rows in batches of at most 500 (so that no DELETE
// exceeds max_allowed_packet), so neither memory nor any one statement grows with
// the table.
func (c *Cache) PurgeCounts(ctx context.Context, match func(key string) bool) (removed, skipped int, err error) {
	p := sqltable.Purge{Match: match}
	err = c.purge(ctx, &p)
	return p.Removed, p.Skipped, err
}

func (c *Cache) purge(ctx context.Context, p *sqltable.Purge) error {
	s, err := c.ready(ctx)
	if err != nil {
		return err
	}
	rows, err := c.admin.QueryContext(ctx, "SELECT id, requestid FROM "+c.quote)
	if err != nil {
		return c.fail(s, "purge", err)
	}
	defer rows.Close()
	batch := make([]int64, 0, sqltable.PurgeBatch)
	args := make([]any, 0, sqltable.PurgeBatch)
	for {
		batch, _, _, err = p.Collect(rows, batch[:0])
		if err != nil {
			return c.fail(s, "purge", err)
		}
		if len(batch) == 0 {
			return nil
		}
		args = args[:0]
		for _, id := range batch {
			args = append(args, id)
		}
		q := "DELETE FROM " + c.quote + " WHERE id IN (?" + strings.Repeat(",?", len(batch)-1) + ")"
		res, err := c.admin.ExecContext(ctx, q, args...)
		if err != nil {
			return c.fail(s, "purge", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return c.fail(s, "purge", err)
		}
		p.Removed += int(n)
		if len(batch) < sqltable.PurgeBatch {
			return nil
		}
	}
}

// Close closes the prepared statements and both pools. Operations after Close fail.
func (c *Cache) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	c.hits.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = c.FlushHits(ctx)
	cancel()
	if s := c.state.Swap(nil); s != nil {
		s.close()
	}
	return errors.Join(c.db.Close(), c.admin.Close())
}

// fail names the table in err and, when the server says the table or one of its
// columns is gone, forgets the schema so that the next operation (or Ping) runs
// Init again and reports why.
func (c *Cache) fail(s *schema, op string, err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && (me.Number == erNoSuchTable || me.Number == erBadField) {
		if c.state.CompareAndSwap(s, nil) {
			s.close()
		}
	}
	return fmt.Errorf("mysql: %s %s: %w", op, c.name, err)
}
