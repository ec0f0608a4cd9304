// Package postgres is the PostgreSQL cache backend. It works on the table contest
// teams create by hand,
//
//	CREATE TABLE IF NOT EXISTS unicorntable (id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT)
//
// which has no unique index and no expiry column ("contest" mode), and on a table it
// creates itself with a unique index on requestid and a created_at column ("managed"
// mode), where Set replaces a key's row and CacheTTL is enforced.
//
// requestid holds the key itself when the column can store it exactly, so a team
// can read its table, else "sha256:" and the hex SHA-256 of the key. requestvalue
// holds the token body of the answer (244 characters: version, key hash and result),
// which Get re-checks before serving it. hits counts the hits served from each row.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/cache/sqltable"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/sqlname"
)

// ErrNoTable is wrapped by Init (and by every operation that calls it) when the
// configured table, or its database, does not exist and Options.CreateTable is false.
// It matches cache.ErrUnusable: the server treats it as a configuration error, not
// as an outage. The message says how to create the table.
var ErrNoTable = cache.Unusable("postgres: table does not exist")

// ErrSchema is wrapped by Init (and by every operation that calls it) when the
// table exists but cannot be used: it lacks a required column, its id has no
// default from a sequence, or requestvalue or requestid is too short or of a type
// that pads. Like ErrNoTable it matches cache.ErrUnusable; the message says what
// to change.
var ErrSchema = cache.Unusable("postgres: table cannot be used")

// DefaultTable is the table name contest teams were told to create.
const DefaultTable = "unicorntable"

// DefaultPort is PostgreSQL's port, used when Options.Port is zero.
const DefaultPort = 5432

// DefaultTimeout is used when Options.Timeout is zero; it matches CacheTimeout's
// default.
const DefaultTimeout = 100 * time.Millisecond

// SSLModes are the values Options.SSLMode accepts: libpq's sslmode settings.
var SSLModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// hitBatch bounds the rows whose hits one UPDATE of FlushHits writes.
const hitBatch = 1000

// Options configure a Cache. Host and DB are required; every other zero value works.
type Options struct {
	// Host is the server's name or address (PgsqlHost). It may carry a port
	// ("db:5433") when Port is zero.
	Host string
	// Port is the server's TCP port (PgsqlPort). If zero, 5432 is used.
	Port int
	// User, Pass and DB are the credentials and the database (PgsqlUser,
	// PgsqlPass, PgsqlDb). An empty User or Pass is filled in as libpq would: from
	// PGUSER or the operating system's user, and from PGPASSWORD or ~/.pgpass.
	User, Pass, DB string
	// Table is the table name (PgsqlTable): a letter or _, then up to 62 letters,
	// digits or _. PostgreSQL folds an unquoted name to lower case, so the name is
	// folded too, and then always quoted in SQL. If empty, DefaultTable is used.
	Table string
	// SSLMode is libpq's sslmode (PgsqlSSLMode): one of SSLModes. If empty,
	// "prefer": TLS when the server offers it, unverified. RDS accepts "require";
	// "verify-full" checks the server's certificate against the system's roots.
	SSLMode string
	// CreateTable lets Init create a missing table in managed mode
	// (PgsqlCreateTable) instead of failing with ErrNoTable.
	CreateTable bool
	// TTL is how long an entry is served (CacheTTL); 0 means forever. Only a table
	// with a created_at column can enforce it; see Warnings.
	TTL time.Duration
	// Version is the CalcVersion whose answers are stored and served. If zero, 1.
	Version int
	// Timeout bounds dialing and each cache operation (CacheTimeout), so a server
	// that stops answering fails a request within about Timeout even when the
	// caller's context has no deadline. Init, the table creation and Purge run on
	// their own connections with at least 1s to dial and no bound but their
	// context: a CREATE TABLE or a purge of a large table may legitimately take
	// longer than a cache lookup. If zero, DefaultTimeout is used.
	Timeout time.Duration
	// Logger receives the table's warnings when Init succeeds. If nil, they are
	// only returned by Warnings.
	Logger *slog.Logger
}

// Cache is the PostgreSQL backend. It is safe for concurrent use. New does no
// network I/O; the first operation (or Init, or Ping) inspects the table and
// builds the statements for what it found.
//
// Besides cache.Cache, it is a cache.Initializer (calcserver runs Init at startup
// and before purge) and a cache.CountingPurger.
type Cache struct {
	o     Options
	table string // the folded table name
	quote string // "table", for SQL
	name  string // table "t" in database "db", for messages
	addr  string

	db    *pgxpool.Pool // cache operations: Timeout to dial, at most 16 connections
	admin *pgxpool.Pool // Init and Purge: longer dial, context-bounded

	initSem chan struct{}          // held by the one Init running; waiters honour ctx
	state   atomic.Pointer[schema] // nil until Init succeeds, and again when the table goes away
	closed  atomic.Bool

	hits *sqltable.Hits // written to the hits column by FlushHits
}

// HitFlush is how often counted hits are written to the hits column.
const HitFlush = sqltable.HitFlush

var (
	_ cache.Cache          = (*Cache)(nil)
	_ cache.Deleter        = (*Cache)(nil)
	_ cache.Pinger         = (*Cache)(nil)
	_ cache.Purger         = (*Cache)(nil)
	_ cache.Initializer    = (*Cache)(nil)
	_ cache.CountingPurger = (*Cache)(nil)
)

// New checks o and builds the connection pools without connecting: a server that
// is down at startup must not stop the calc server, which starts degraded and
// retries through Ping.
func New(o Options) (*Cache, error) {
	if o.Table == "" {
		o.Table = DefaultTable
	}
	if !ValidIdentifier(o.Table) {
		return nil, fmt.Errorf("postgres: table name %q is not an identifier: a letter or _, then up to 62 letters, digits or _", o.Table)
	}
	if o.DB == "" {
		return nil, errors.New("postgres: no database name (PgsqlDb) given")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Version == 0 {
		o.Version = 1
	}
	if err := cache.CheckOptions(o.Version, o.TTL, o.Timeout); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if o.SSLMode == "" {
		o.SSLMode = "prefer"
	}
	if !slices.Contains(SSLModes, o.SSLMode) {
		return nil, fmt.Errorf("postgres: SSL mode %q is not one of %s", o.SSLMode, strings.Join(SSLModes, ", "))
	}
	host, port, err := hostPort(o.Host, o.Port)
	if err != nil {
		return nil, err
	}
	table := strings.ToLower(o.Table)
	c := &Cache{
		o:       o,
		table:   table,
		quote:   `"` + table + `"`,
		name:    fmt.Sprintf("table %s in database %s", table, o.DB),
		addr:    net.JoinHostPort(host, strconv.Itoa(port)),
		initSem: make(chan struct{}, 1),
		hits:    sqltable.NewHits(),
	}
	c.db, err = c.pool(host, port, o.Timeout, 16)
	if err != nil {
		return nil, err
	}
	// Purge reads and deletes on one connection at a time; Init uses one.
	c.admin, err = c.pool(host, port, max(o.Timeout, time.Second), 4)
	if err != nil {
		c.db.Close()
		return nil, err
	}
	c.hits.Start(c.FlushHits)
	return c, nil
}

// hostPort splits host and port, accepting a host that already carries a port.
func hostPort(host string, port int) (string, int, error) {
	if host == "" {
		return "", 0, errors.New("postgres: no host (PgsqlHost) given")
	}
	if port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("postgres: port %d is out of range", port)
	}
	if h, p, err := net.SplitHostPort(host); err == nil {
		if port != 0 && p != strconv.Itoa(port) {
			return "", 0, fmt.Errorf("postgres: host %q carries port %s but port %d is configured", host, p, port)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("postgres: host %q carries the bad port %q", host, p)
		}
		return h, n, nil
	}
	if port == 0 {
		port = DefaultPort
	}
	return strings.Trim(host, "[]"), port, nil
}

// pool builds a pool of at most conns connections that dial within dial. It does
// not connect.
func (c *Cache) pool(host string, port int, dial time.Duration, conns int32) (*pgxpool.Pool, error) {
	kv := []string{
		"host=" + quoteValue(host),
		"port=" + strconv.Itoa(port),
		"dbname=" + quoteValue(c.o.DB),
		"sslmode=" + c.o.SSLMode,
		// created_at is compared with now(); in UTC no daylight-saving change can
		// make an entry look younger or older than it is.
		"timezone=UTC",
		"application_name=unicorn",
	}
	if c.o.User != "" {
		kv = append(kv, "user="+quoteValue(c.o.User))
	}
	if c.o.Pass != "" {
		kv = append(kv, "password="+quoteValue(c.o.Pass))
	}
	cfg, err := pgxpool.ParseConfig(strings.Join(kv, " "))
	if err != nil {
		// The message may quote the connection string, password and all.
		return nil, fmt.Errorf("postgres: %s: the connection settings are invalid", c.addr)
	}
	cfg.ConnConfig.ConnectTimeout = dial
	// During an Aurora or RDS failover the old writer turns read-only; a
	// connection that finds itself on a standby is refused, so the pool dials again
	// until it reaches the new writer.
	cfg.ConnConfig.ValidateConnect = pgconn.ValidateConnectTargetSessionAttrsReadWrite
	cfg.MaxConns = conns
	cfg.MaxConnLifetime = 5 * time.Minute
	cfg.MaxConnIdleTime = time.Minute
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", c.addr, err)
	}
	return p, nil
}

// quoteValue quotes v for a keyword/value connection string.
func quoteValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// maxIdentifier is the longest name PostgreSQL keeps whole (NAMEDATALEN - 1); it
// truncates longer ones.
const maxIdentifier = 63

// ValidIdentifier reports whether s is [A-Za-z_][A-Za-z0-9_]{0,62}: a table name
// that cannot break out of its quotes (sqlname.Valid) and that PostgreSQL keeps
// whole. New refuses any other Table.
func ValidIdentifier(s string) bool {
	return sqlname.Valid(s) && len(s) <= maxIdentifier
}

// FlushHits writes the hits counted since the last flush, up to 1000 rows per
// UPDATE, rows in id order so that two hosts flushing at once lock them in the same
// order. Hits it cannot write are kept for the next flush.
func (c *Cache) FlushHits(ctx context.Context) error {
	defer c.hits.Begin()()
	ids, pending := c.hits.Take()
	if len(ids) == 0 {
		return nil
	}
	s := c.state.Load()
	var err error
	for len(ids) > 0 {
		batch := ids[:min(len(ids), hitBatch)]
		if s == nil {
			err = fmt.Errorf("postgres: count hits in %s: not initialised", c.name)
			break
		}
		counts := make([]int64, len(batch))
		for i, id := range batch {
			counts[i] = pending[id]
		}
		if _, err = c.db.Exec(ctx, s.hit, batch, counts); err != nil {
			err = c.fail(s, "count hits", err)
			break
		}
		ids = ids[len(batch):]
	}
	c.hits.Keep(ids, pending)
	return err
}

// requestID is the requestid under which key is stored: the key itself when the
// column holds it character for character, else sha256:<hex> (sqltable.RequestID).
func (s *schema) requestID(key string) string {
	return sqltable.RequestID(key, s.verbatim)
}

// verbatim reports whether requestid holds key character for character.
// PostgreSQL text cannot hold a NUL byte, and a database whose encoding is not
// UTF-8 holds only ASCII unchanged.
func (s *schema) verbatim(key string) bool {
	if strings.IndexByte(key, 0) >= 0 || len(key) > 4*s.maxKey {
		return false
	}
	return sqltable.IsASCII(key) && len(key) <= s.maxKey ||
		s.anyUTF8 && utf8.ValidString(key) && utf8.RuneCountInString(key) <= s.maxKey
}

// ready returns the table's schema, running Init first if it has not succeeded.
func (c *Cache) ready(ctx context.Context) (*schema, error) {
	if s := c.state.Load(); s != nil {
		return s, nil
	}
	return c.init(ctx)
}

// opContext bounds one cache operation by Timeout.
func (c *Cache) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.o.Timeout)
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
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	rid := s.requestID(key)
	var rows pgx.Rows
	if s.ttl {
		rows, err = c.db.Query(ctx, s.get, rid, c.o.TTL.Microseconds())
	} else {
		rows, err = c.db.Query(ctx, s.get, rid)
	}
	if err != nil {
		return calc.Result{}, c.fail(s, "get", err)
	}
	r, row, err := sqltable.Newest[[]byte](rows, c.o.Version, key)
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
		return calc.Result{}, fmt.Errorf("postgres: %s row %d: %w", c.name, row, err)
	default:
		return calc.Result{}, c.fail(s, "get", err)
	}
}

// Set stores r as key's answer. In contest mode it appends a row unless the key
// already has a row with exactly this answer (in managed mode without a unique
// index: one younger than the TTL); with a unique index on requestid it replaces
// the key's row and restarts its TTL. Two hosts that store the same new answer at
// the same moment on a contest table may both append a row; Get serves either.
func (c *Cache) Set(ctx context.Context, key string, r calc.Result) error {
	s, err := c.ready(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	rid := s.requestID(key)
	token := string(calc.AppendBody(make([]byte, 0, calc.TokenSize), calc.Token, c.o.Version, []byte(key), &r))
	if s.ttl && !s.unique {
		_, err = c.db.Exec(ctx, s.set, rid, token, c.o.TTL.Microseconds())
	} else {
		_, err = c.db.Exec(ctx, s.set, rid, token)
	}
	if err != nil {
		return c.fail(s, "set", err)
	}
	return nil
}

// Delete removes every row stored for key, whatever its version: Chain calls it to
// drop a damaged value.
func (c *Cache) Delete(ctx context.Context, key string) error {
	s, err := c.ready(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	if _, err := c.db.Exec(ctx, s.del, s.requestID(key)); err != nil {
		return c.fail(s, "delete", err)
	}
	return nil
}

// Ping checks the server answers and, until Init has succeeded, runs it, so that
// Chain's probe both recovers a backend that was down at startup and keeps one
// whose table is missing unhealthy (with ErrNoTable or ErrSchema).
//
// Once Init has succeeded, Ping is one round trip bounded by ctx and Timeout.
// Until then it runs Init, which dials and reads the catalog, detached from ctx
// under its own budget (sqltable.Ping). Ping is meant for probes and startup, off
// the request path.
func (c *Cache) Ping(ctx context.Context) error {
	return sqltable.Ping(ctx, c.o.Timeout, c.inited, func(ctx context.Context) error {
		ctx, cancel := c.opContext(ctx)
		defer cancel()
		if err := c.db.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: ping %s at %s: %w", c.name, c.addr, err)
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
// requestid is a sha256:<hex> hash (keys too long for the column, not valid UTF-8,
// or holding a NUL byte), which no pattern can match. It reads the table in pages
// of 500 rows by id and deletes each page's matches with one statement, so neither
// memory nor any one statement grows with the table, and no connection is held
// between statements.
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
	page := "SELECT id, requestid FROM " + c.quote + " WHERE id > $1 ORDER BY id LIMIT " + strconv.Itoa(sqltable.PurgeBatch)
	del := "DELETE FROM " + c.quote + " WHERE id = ANY($1::bigint[])"
	var (
		after int64
		n     int
		batch = make([]int64, 0, sqltable.PurgeBatch)
	)
	for {
		rows, err := c.admin.Query(ctx, page, after)
		if err != nil {
			return c.fail(s, "purge", err)
		}
		// A page holds at most PurgeBatch rows, so Collect reads all of them; the
		// rows are closed, and their connection freed, before the DELETE.
		batch, n, after, err = p.Collect(rows, batch[:0])
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
		if err != nil {
			return c.fail(s, "purge", err)
		}
		if len(batch) > 0 {
			tag, err := c.admin.Exec(ctx, del, batch)
			if err != nil {
				return c.fail(s, "purge", err)
			}
			p.Removed += int(tag.RowsAffected())
		}
		if n < sqltable.PurgeBatch {
			return nil
		}
	}
}

// Close writes the hits still counted and closes both pools. Operations after
// Close fail.
func (c *Cache) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	c.hits.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = c.FlushHits(ctx)
	cancel()
	c.state.Store(nil)
	c.db.Close()
	c.admin.Close()
	return nil
}

// fail names the table in err and, when the server says the table or one of its
// columns is gone, forgets the schema so that the next operation (or Ping) runs
// Init again and reports why.
func (c *Cache) fail(s *schema, op string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == codeUndefinedTable || pe.Code == codeUndefinedColumn) {
		c.state.CompareAndSwap(s, nil)
	}
	return fmt.Errorf("postgres: %s %s: %w", op, c.name, err)
}
