package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/unicorn-rentals/unicorn/internal/cache/sqltable"
	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// SQLSTATE codes Init and fail react to.
const (
	codeUndefinedTable  = "42P01" // undefined_table
	codeUndefinedColumn = "42703" // undefined_column
	codeNoDatabase      = "3D000" // invalid_catalog_name: unknown database
)

// contestCreate is the statement contest teams were given, for the table name t as
// it is to be written in SQL.
func contestCreate(t string) string {
	return "CREATE TABLE IF NOT EXISTS " + t + " (id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT);"
}

// managedCreate creates the managed table: the contest columns plus created_at for
// the TTL, and version with a unique index on (requestid, version) for upserts
// that replace a key's row of one CalcVersion only, so that two fleets running
// different versions (a rolling upgrade) do not overwrite each other's answers.
// requestid is compared byte for byte (COLLATE "C"), the cheapest comparison.
func managedCreate(t string) string {
	return "CREATE TABLE IF NOT EXISTS " + t + " (" +
		"id SERIAL PRIMARY KEY, " +
		`requestid VARCHAR(255) COLLATE "C", ` +
		"requestvalue VARCHAR(255), " +
		"hits INT, " +
		"created_at TIMESTAMPTZ NOT NULL DEFAULT now(), " +
		"version INT NOT NULL DEFAULT 0, " +
		"UNIQUE (requestid, version)" +
		")"
}

// schema is what Init learnt about the table, and the statements built for it. pgx
// prepares and caches each statement on every connection that runs it.
type schema struct {
	createdAt bool   // a created_at timestamp column: entries can expire
	unique    bool   // a unique index on requestid (and version): Set replaces the key's row
	version   bool   // an integer version column: Set fills it in
	conflict  string // the unique index's columns, as ON CONFLICT names them
	ttl       bool   // createdAt and a TTL: statements carry the age condition
	maxKey    int    // longest key, in characters, stored verbatim in requestid
	anyUTF8   bool   // the database stores any UTF-8 text; else only ASCII verbatim

	warnings []string

	get, hit, set, del string
}

// Init connects, inspects the table, creates it if it is missing and
// Options.CreateTable is set, and builds the statements for its mode. A missing
// table (or database) yields an error wrapping ErrNoTable that says how to create
// it; a table that cannot be used (a required column missing, too short or of a
// padding type, an id without a sequence) yields an error wrapping ErrSchema that
// says what to change; an unreachable server yields a plain error, and the caller
// calls Init again later. Init is idempotent and safe for concurrent use: once it
// has succeeded it returns nil at once.
func (c *Cache) Init(ctx context.Context) error {
	_, err := c.init(ctx)
	return err
}

func (c *Cache) init(ctx context.Context) (*schema, error) {
	return sqltable.Init(ctx, c.initSem, &c.state, "postgres: init "+c.name, c.learn)
}

// learn inspects the table and builds the statements for what it found.
func (c *Cache) learn(ctx context.Context) (*schema, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("postgres: init %s: the cache is closed", c.name)
	}
	s, err := c.inspect(ctx)
	if err != nil {
		return nil, err
	}
	c.build(s)
	sqltable.LogWarnings(c.o.Logger, "postgres", s.warnings)
	return s, nil
}

// Mode is "managed" when the table has a created_at column, so entries can expire,
// else "contest". It is "" until Init has succeeded.
func (c *Cache) Mode() string {
	s := c.state.Load()
	switch {
	case s == nil:
		return ""
	case s.createdAt:
		return "managed"
	default:
		return "contest"
	}
}

// Warnings are the limits of the table Init found that an operator should know
// about, such as a CacheTTL it cannot enforce. They are nil until Init has
// succeeded.
func (c *Cache) Warnings() []string {
	if s := c.state.Load(); s != nil {
		return slices.Clone(s.warnings)
	}
	return nil
}

// column is one column of the table, from pg_attribute.
type column struct {
	num      int16  // attnum: the column's position, as indexes name it
	typ      string // pg_type.typname: varchar, text, bpchar, int4, timestamptz, …
	maxLen   int    // declared length of a varchar or char; 0 for none
	identity bool   // GENERATED … AS IDENTITY
	def      string // the default expression, "" for none
}

// inspect learns the table's schema, creating the table when allowed.
func (c *Cache) inspect(ctx context.Context) (*schema, error) {
	conn, err := c.admin.Acquire(ctx)
	if err != nil {
		return nil, c.connectError(err)
	}
	defer conn.Release()

	names, err := c.probe(ctx, conn.Conn())
	if errors.Is(err, ErrNoTable) && c.o.CreateTable {
		if _, err := conn.Exec(ctx, managedCreate(c.quote)); err != nil {
			return nil, fmt.Errorf("postgres: create %s: %w", c.name, err)
		}
		names, err = c.probe(ctx, conn.Conn())
	}
	if err != nil {
		return nil, err
	}
	if err := sqltable.CheckColumns(ErrSchema, c.name, names, func() string { return contestCreate(c.sqlName(ctx, conn.Conn())) }); err != nil {
		return nil, err
	}

	cols, err := c.columns(ctx, conn.Conn())
	if err != nil {
		return nil, err
	}
	s := &schema{maxKey: sqltable.MaxKey}
	if id := cols["id"]; !id.identity && !strings.HasPrefix(id.def, "nextval(") {
		return nil, fmt.Errorf("%w: column id of %s has no default from a sequence; declare it as id SERIAL PRIMARY KEY", ErrSchema, c.name)
	}
	if v := cols["requestvalue"]; !isText(v.typ) || v.maxLen > 0 && v.maxLen < calc.TokenSize {
		return nil, fmt.Errorf("%w: column requestvalue of %s is %s; it must hold %d characters without padding them: VARCHAR(255)",
			ErrSchema, c.name, typeName(v), calc.TokenSize)
	}
	rid := cols["requestid"]
	if !isText(rid.typ) || rid.maxLen > 0 && rid.maxLen < sqltable.HashedLen {
		return nil, fmt.Errorf("%w: column requestid of %s is %s; it must hold at least %d characters without padding them: VARCHAR(255)",
			ErrSchema, c.name, typeName(rid), sqltable.HashedLen)
	}
	if rid.maxLen > 0 && rid.maxLen < s.maxKey {
		s.maxKey = rid.maxLen
		s.warnings = append(s.warnings, sqltable.NarrowWarning(c.name, s.maxKey))
	}
	var encoding string
	if err := conn.QueryRow(ctx, "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()").Scan(&encoding); err != nil {
		return nil, fmt.Errorf("postgres: inspect the encoding of %s: %w", c.name, err)
	}
	// SQL_ASCII stores bytes as they come, so UTF-8 too.
	s.anyUTF8 = encoding == "UTF8" || encoding == "SQL_ASCII"
	if !s.anyUTF8 {
		s.warnings = append(s.warnings, fmt.Sprintf(
			"database %s uses the encoding %s, not UTF8: keys with non-ASCII characters are stored as sha256:<hex>, which purge cannot match",
			c.o.DB, encoding))
	}
	if ca, ok := cols["created_at"]; ok {
		switch ca.typ {
		case "timestamptz", "timestamp":
			s.createdAt = true
		default:
			s.warnings = append(s.warnings, fmt.Sprintf(
				"column created_at of %s is %s, not TIMESTAMPTZ: it is ignored", c.name, typeName(ca)))
		}
	}
	s.ttl = s.createdAt && c.o.TTL > 0
	if v, ok := cols["version"]; ok {
		switch v.typ {
		case "int2", "int4", "int8":
			s.version = true
		default:
			s.warnings = append(s.warnings, fmt.Sprintf(
				"column version of %s is %s, not INT: it is ignored", c.name, typeName(v)))
		}
	}

	var indexed bool
	s.conflict, indexed, err = c.requestIDIndexes(ctx, conn.Conn(), cols, s.version)
	if err != nil {
		return nil, err
	}
	s.unique = s.conflict != ""
	if !indexed {
		s.warnings = append(s.warnings, sqltable.NoIndexWarning(c.name, "CREATE INDEX ON "+c.sqlName(ctx, conn.Conn())+" (requestid);"))
	}
	if !s.createdAt && c.o.TTL > 0 {
		s.warnings = append(s.warnings, sqltable.NoTTLWarning(c.name, "PgsqlCreateTable"))
	}
	return s, nil
}

// connectError explains a failure to connect, turning an unknown database into
// ErrNoTable with the statements to run.
func (c *Cache) connectError(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == codeNoDatabase {
		return fmt.Errorf("%w: database %s does not exist; create it with CREATE DATABASE %s; then the table with: %s (or set PgsqlCreateTable = true)",
			ErrNoTable, c.o.DB, quoteIdent(c.o.DB), contestCreate(c.quote))
	}
	return fmt.Errorf("postgres: connect to %s at %s: %w", c.name, c.addr, err)
}

// probe reads no row of the table but returns its column names, lower-cased. The
// server resolves the name exactly as every later statement will (through the
// search_path), so a missing table here is missing for them too; that yields
// ErrNoTable.
func (c *Cache) probe(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, "SELECT * FROM "+c.quote+" LIMIT 0")
	if err == nil {
		rows.Close()
		err = rows.Err()
	}
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == codeUndefinedTable {
			return nil, fmt.Errorf("%w: %s; create it with: %s (or set PgsqlCreateTable = true to let the server create it)",
				ErrNoTable, c.name, contestCreate(c.sqlName(ctx, conn)))
		}
		return nil, fmt.Errorf("postgres: inspect %s at %s: %w", c.name, c.addr, err)
	}
	var names []string
	for _, f := range rows.FieldDescriptions() {
		names = append(names, strings.ToLower(f.Name))
	}
	return names, nil
}

// sqlName is the table's name as a person would type it: bare, unless it is a
// word PostgreSQL reserves, as the server's quote_ident decides.
func (c *Cache) sqlName(ctx context.Context, conn *pgx.Conn) string {
	var q string
	if err := conn.QueryRow(ctx, "SELECT quote_ident($1::text)", c.table).Scan(&q); err != nil {
		return c.quote
	}
	return q
}

// quoteIdent quotes a name for SQL when it is not a plain lower-case identifier.
func quoteIdent(s string) string {
	if ValidIdentifier(s) && s == strings.ToLower(s) {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// columns returns the table's columns from the catalog, keyed by lower-case name.
func (c *Cache) columns(ctx context.Context, conn *pgx.Conn) (map[string]column, error) {
	rows, err := conn.Query(ctx,
		`SELECT a.attname, a.attnum, t.typname, a.atttypmod, a.attidentity <> '', COALESCE(pg_get_expr(d.adbin, d.adrelid), '')
		FROM pg_attribute a
		JOIN pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`, c.quote)
	if err != nil {
		return nil, fmt.Errorf("postgres: inspect the columns of %s: %w", c.name, err)
	}
	cols := make(map[string]column)
	var (
		name   string
		col    column
		typmod int32
	)
	_, err = pgx.ForEachRow(rows, []any{&name, &col.num, &col.typ, &typmod, &col.identity, &col.def}, func() error {
		col.maxLen = 0
		if (col.typ == "varchar" || col.typ == "bpchar") && typmod >= 4 {
			col.maxLen = int(typmod - 4) // the typmod of a character type is its length plus 4
		}
		cols[strings.ToLower(name)] = col
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: inspect the columns of %s: %w", c.name, err)
	}
	return cols, nil
}

// requestIDIndexes returns the columns of a valid, whole-table unique index that
// ON CONFLICT can replace a key's row by: requestid alone, or requestid and
// version when the table has a version column ("" for none). It also reports
// whether any valid whole-table index starts with requestid, so that lookups by
// key use it instead of scanning the table.
func (c *Cache) requestIDIndexes(ctx context.Context, conn *pgx.Conn, cols map[string]column, version bool) (conflict string, indexed bool, err error) {
	rows, err := conn.Query(ctx,
		`SELECT indisunique, indnkeyatts, indkey::int2[] FROM pg_index
		WHERE indrelid = $1::regclass AND indisvalid AND indpred IS NULL`, c.quote)
	if err != nil {
		return "", false, fmt.Errorf("postgres: inspect the indexes of %s: %w", c.name, err)
	}
	var (
		unique bool
		nkeys  int16
		keys   []int16
	)
	rid, ver := cols["requestid"].num, cols["version"].num
	_, err = pgx.ForEachRow(rows, []any{&unique, &nkeys, &keys}, func() error {
		keys = keys[:min(int(nkeys), len(keys))] // the rest are INCLUDE columns
		if len(keys) == 0 || keys[0] != rid {
			return nil // an expression index has 0 here
		}
		indexed = true
		switch {
		case !unique:
		case len(keys) == 1:
			conflict = "requestid"
		case version && len(keys) == 2 && keys[1] == ver && conflict == "":
			conflict = "requestid, version"
		}
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("postgres: inspect the indexes of %s: %w", c.name, err)
	}
	return conflict, indexed, nil
}

// isText reports whether a column of type typ stores strings as they are given.
// CHAR(n) is refused: it pads values with spaces and ignores them in comparisons.
func isText(typ string) bool {
	return typ == "varchar" || typ == "text"
}

// typeName names a column's type in messages.
func typeName(col column) string {
	name := map[string]string{"varchar": "VARCHAR", "bpchar": "CHAR", "text": "TEXT"}[col.typ]
	switch {
	case name == "":
		return strings.ToUpper(col.typ)
	case col.maxLen > 0:
		return fmt.Sprintf("%s(%d)", name, col.maxLen)
	default:
		return name
	}
}

// build writes the statements for s's mode. PostgreSQL compares text exactly (case
// and trailing spaces count), so "requestid = $1" is an exact key match that can
// use an index.
func (c *Cache) build(s *schema) {
	const fresh = " AND created_at > now() - $%d::bigint * interval '1 microsecond'"
	t := c.quote

	s.get = "SELECT id, requestvalue FROM " + t + " WHERE requestid = $1::text"
	if s.ttl {
		s.get += fmt.Sprintf(fresh, 2)
	}
	s.get += fmt.Sprintf(" ORDER BY id DESC LIMIT %d", sqltable.LookupRows)

	cols, vals := "requestid, requestvalue, hits", "$1::text, $2::text, 0"
	if s.createdAt {
		cols, vals = cols+", created_at", vals+", now()"
	}
	if s.version {
		cols, vals = cols+", version", vals+", "+strconv.Itoa(c.o.Version)
	}
	if s.unique {
		upd := "requestvalue = EXCLUDED.requestvalue"
		if s.createdAt {
			upd += ", created_at = now()"
		}
		if s.version {
			upd += ", version = EXCLUDED.version"
		}
		s.set = "INSERT INTO " + t + " (" + cols + ") VALUES (" + vals + ") ON CONFLICT (" + s.conflict + ") DO UPDATE SET " + upd
	} else {
		s.set = "INSERT INTO " + t + " (" + cols + ") SELECT " + vals + " WHERE NOT EXISTS (SELECT 1 FROM " + t +
			" WHERE requestid = $1::text AND requestvalue = $2::text"
		if s.ttl {
			s.set += fmt.Sprintf(fresh, 3)
		}
		s.set += ")"
	}
	s.hit = "UPDATE " + t + " AS t SET hits = COALESCE(t.hits, 0) + u.n " +
		"FROM unnest($1::bigint[], $2::bigint[]) AS u(id, n) WHERE t.id = u.id"
	s.del = "DELETE FROM " + t + " WHERE requestid = $1::text"
}
