package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/unicorn-rentals/unicorn/internal/cache/sqltable"
	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// Server error numbers Init and fail react to.
const (
	erBadDB       = 1049 // ER_BAD_DB_ERROR: unknown database
	erBadField    = 1054 // ER_BAD_FIELD_ERROR: unknown column
	erNoSuchTable = 1146 // ER_NO_SUCH_TABLE
)

// contestCreate is the statement contest teams were given, for the table name t.
func contestCreate(t string) string {
	return "CREATE TABLE " + t + " (id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT);"
}

// managedCreate creates the managed table: the contest columns plus created_at for
// the TTL and a unique index on requestid for upserts. requestid is compared
// byte for byte (utf8mb4_bin) so that keys differing only in case, which are
// different base64 keys, get different rows.
func managedCreate(t string) string {
	return "CREATE TABLE IF NOT EXISTS " + t + " (" +
		"id SERIAL PRIMARY KEY, " +
		"requestid VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, " +
		"requestvalue VARCHAR(255), " +
		"hits INT, " +
		"created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), " +
		"UNIQUE KEY requestid (requestid)" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
}

// schema is what Init learnt about the table, and the statements prepared for it.
type schema struct {
	createdAt bool // a created_at TIMESTAMP/DATETIME column: entries can expire
	unique    bool // a unique index on requestid alone: Set replaces the key's row
	ttl       bool // createdAt and a TTL: statements carry the age condition
	maxKey    int  // longest key, in bytes, stored verbatim in requestid
	anyUTF8   bool // requestid stores any UTF-8 (utf8mb4 or binary); else only ASCII verbatim

	warnings []string

	get, hit, set, del *sql.Stmt
}

// close closes the prepared statements. Statements in use finish first.
func (s *schema) close() {
	for _, st := range []*sql.Stmt{s.get, s.hit, s.set, s.del} {
		if st != nil {
			st.Close()
		}
	}
}

// Init connects, inspects the table, creates it if it is missing and
// Options.CreateTable is set, and prepares the statements for its mode. A missing
// table (or database) yields an error wrapping ErrNoTable that says how to create
// it; a table that cannot be used (a required column missing or too short, an id
// that is not AUTO_INCREMENT) yields an error wrapping ErrSchema that says what to
// change; an unreachable server yields a plain error, and the caller calls Init again later.
// Init is idempotent and safe for concurrent use: once it has succeeded it returns
// nil at once.
func (c *Cache) Init(ctx context.Context) error {
	_, err := c.init(ctx)
	return err
}

func (c *Cache) init(ctx context.Context) (*schema, error) {
	return sqltable.Init(ctx, c.initSem, &c.state, "mysql: init "+c.name, c.learn)
}

// learn inspects the table and prepares the statements for what it found.
func (c *Cache) learn(ctx context.Context) (*schema, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("mysql: init %s: %w", c.name, sql.ErrConnDone)
	}
	s, err := c.inspect(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.prepare(ctx, s); err != nil {
		s.close()
		return nil, err
	}
	sqltable.LogWarnings(c.o.Logger, "mysql", s.warnings)
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

// column is one row of information_schema.COLUMNS.
type column struct {
	dataType  string
	maxLen    sql.NullInt64
	charset   sql.NullString
	collation sql.NullString
	extra     string
}

// inspect learns the table's schema, creating the table when allowed.
func (c *Cache) inspect(ctx context.Context) (*schema, error) {
	names, err := c.probe(ctx)
	if errors.Is(err, ErrNoTable) && c.o.CreateTable {
		if _, err := c.admin.ExecContext(ctx, managedCreate(c.quote)); err != nil {
			return nil, fmt.Errorf("mysql: create table %s: %w", c.name, err)
		}
		names, err = c.probe(ctx)
	}
	if err != nil {
		return nil, err
	}
	if err := sqltable.CheckColumns(ErrSchema, c.name, names, func() string { return contestCreate(c.quote) }); err != nil {
		return nil, err
	}

	cols, err := c.columns(ctx)
	if err != nil {
		return nil, err
	}
	s := &schema{maxKey: sqltable.MaxKey}
	if id, ok := cols["id"]; ok && !strings.Contains(strings.ToLower(id.extra), "auto_increment") {
		return nil, fmt.Errorf("%w: column id of %s is not AUTO_INCREMENT; declare it as id SERIAL PRIMARY KEY", ErrSchema, c.name)
	}
	if v, ok := cols["requestvalue"]; ok {
		if !isText(v.dataType) || v.maxLen.Valid && v.maxLen.Int64 < calc.TokenSize {
			return nil, fmt.Errorf("%w: column requestvalue of %s is %s(%d); it must hold %d characters: VARCHAR(255)",
				ErrSchema, c.name, strings.ToUpper(v.dataType), v.maxLen.Int64, calc.TokenSize)
		}
	}
	if rid, ok := cols["requestid"]; ok {
		if !isText(rid.dataType) || rid.maxLen.Valid && rid.maxLen.Int64 < int64(sqltable.HashedLen) {
			return nil, fmt.Errorf("%w: column requestid of %s is %s(%d); it must hold at least %d characters: VARCHAR(255)",
				ErrSchema, c.name, strings.ToUpper(rid.dataType), rid.maxLen.Int64, sqltable.HashedLen)
		}
		if rid.maxLen.Valid && rid.maxLen.Int64 < int64(s.maxKey) {
			s.maxKey = int(rid.maxLen.Int64)
			s.warnings = append(s.warnings, sqltable.NarrowWarning("table "+c.name, s.maxKey))
		}
		// Binary columns have no character set and store any bytes.
		s.anyUTF8 = !rid.charset.Valid || strings.EqualFold(rid.charset.String, "utf8mb4")
		if !s.anyUTF8 {
			s.warnings = append(s.warnings, fmt.Sprintf(
				"column requestid of table %s uses character set %s, not utf8mb4: keys with non-ASCII characters are stored as sha256:<hex>, which purge cannot match",
				c.name, rid.charset.String))
		}
	}
	if ca, ok := cols["created_at"]; ok {
		switch strings.ToLower(ca.dataType) {
		case "timestamp", "datetime":
			s.createdAt = true
		default:
			s.warnings = append(s.warnings, fmt.Sprintf(
				"column created_at of table %s is %s, not TIMESTAMP: it is ignored", c.name, ca.dataType))
		}
	}
	s.ttl = s.createdAt && c.o.TTL > 0

	var indexed bool
	s.unique, indexed, err = c.requestIDIndexes(ctx)
	if err != nil {
		return nil, err
	}
	// Without the privilege to see the table's columns Init sees none of its
	// indexes either, and says nothing rather than something possibly false.
	if !indexed && len(cols) > 0 {
		s.warnings = append(s.warnings, sqltable.NoIndexWarning("table "+c.name, "CREATE INDEX requestid ON "+c.quote+" (requestid);"))
	}
	if s.unique {
		if coll := cols["requestid"].collation; coll.Valid && !strings.HasSuffix(strings.ToLower(coll.String), "_bin") {
			s.warnings = append(s.warnings, fmt.Sprintf(
				"the unique index on requestid of table %s uses the case-insensitive collation %s: keys differing only in case share one row and replace each other",
				c.name, coll.String))
		}
	}
	if !s.createdAt && c.o.TTL > 0 {
		s.warnings = append(s.warnings, sqltable.NoTTLWarning("table "+c.name, "MysqlCreateTable"))
	}
	return s, nil
}

// probe reads no row of the table but returns its column names, lower-cased. The
// server resolves the name exactly as every later statement will, so a missing
// table here is missing for them too; that yields ErrNoTable.
func (c *Cache) probe(ctx context.Context) ([]string, error) {
	rows, err := c.admin.QueryContext(ctx, "SELECT * FROM "+c.quote+" LIMIT 0")
	if err != nil {
		var me *mysql.MySQLError
		if errors.As(err, &me) {
			switch me.Number {
			case erNoSuchTable:
				return nil, fmt.Errorf("%w: %s; create it with: %s (or set MysqlCreateTable = true to let the server create it)",
					ErrNoTable, c.name, contestCreate(c.quote))
			case erBadDB:
				return nil, fmt.Errorf("%w: database `%s` does not exist; create it with CREATE DATABASE `%s`; then the table with: %s (or set MysqlCreateTable = true)",
					ErrNoTable, c.o.DB, c.o.DB, contestCreate(c.quote))
			}
		}
		return nil, fmt.Errorf("mysql: inspect table %s at %s: %w", c.name, c.addr, err)
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		return nil, fmt.Errorf("mysql: inspect table %s: %w", c.name, err)
	}
	for i, n := range names {
		names[i] = strings.ToLower(n)
	}
	return names, rows.Close()
}

// columns returns the table's columns from information_schema, keyed by lower-case
// name. A user without the privilege to see them gets none, and Init assumes the
// contest table's types.
func (c *Cache) columns(ctx context.Context) (map[string]column, error) {
	rows, err := c.admin.QueryContext(ctx,
		"SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, CHARACTER_SET_NAME, COLLATION_NAME, EXTRA "+
			"FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
		c.o.DB, c.o.Table)
	if err != nil {
		return nil, fmt.Errorf("mysql: inspect columns of %s: %w", c.name, err)
	}
	defer rows.Close()
	cols := make(map[string]column)
	for rows.Next() {
		var (
			name string
			col  column
		)
		if err := rows.Scan(&name, &col.dataType, &col.maxLen, &col.charset, &col.collation, &col.extra); err != nil {
			return nil, fmt.Errorf("mysql: inspect columns of %s: %w", c.name, err)
		}
		cols[strings.ToLower(name)] = col
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mysql: inspect columns of %s: %w", c.name, err)
	}
	return cols, nil
}

// requestIDIndexes reports whether a unique index covers exactly the whole of
// requestid, the condition for ON DUPLICATE KEY UPDATE to replace a key's row,
// and whether any index starts with requestid, so that lookups by key use it
// instead of scanning the table.
func (c *Cache) requestIDIndexes(ctx context.Context) (unique, indexed bool, err error) {
	rows, err := c.admin.QueryContext(ctx,
		"SELECT INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS "+
			"WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
		c.o.DB, c.o.Table)
	if err != nil {
		return false, false, fmt.Errorf("mysql: inspect indexes of %s: %w", c.name, err)
	}
	defer rows.Close()
	type index struct {
		cols  int
		whole bool // a unique index whose only column so far is the whole of requestid
	}
	indexes := make(map[string]*index)
	for rows.Next() {
		var (
			name, col string
			nonUnique int
			seq       int
			sub       sql.NullInt64
		)
		if err := rows.Scan(&name, &nonUnique, &seq, &col, &sub); err != nil {
			return false, false, fmt.Errorf("mysql: inspect indexes of %s: %w", c.name, err)
		}
		isRequestID := strings.EqualFold(col, "requestid")
		if seq == 1 && isRequestID {
			indexed = true
		}
		ix := indexes[name]
		if ix == nil {
			ix = &index{}
			indexes[name] = ix
		}
		ix.cols++
		ix.whole = ix.cols == 1 && nonUnique == 0 && isRequestID && !sub.Valid
	}
	if err := rows.Err(); err != nil {
		return false, false, fmt.Errorf("mysql: inspect indexes of %s: %w", c.name, err)
	}
	for _, ix := range indexes {
		if ix.cols == 1 && ix.whole {
			unique = true
		}
	}
	return unique, indexed, nil
}

// isText reports whether an information_schema DATA_TYPE stores strings.
func isText(t string) bool {
	switch strings.ToLower(t) {
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext", "binary", "varbinary":
		return true
	}
	return false
}

// prepare prepares the statements for s's mode. Key comparisons pair
// "requestid = ?", which can use an index, with a byte comparison: default
// collations ignore case (and trailing spaces), and base64 keys are case-sensitive.
func (c *Cache) prepare(ctx context.Context, s *schema) error {
	const sameKey = "requestid = ? AND CAST(requestid AS BINARY) = CAST(? AS BINARY)"
	const fresh = " AND created_at > NOW(3) - INTERVAL ? MICROSECOND"
	t := c.quote

	get := "SELECT id, requestvalue FROM " + t + " WHERE " + sameKey
	if s.ttl {
		get += fresh
	}
	get += fmt.Sprintf(" ORDER BY id DESC LIMIT %d", sqltable.LookupRows)

	var set string
	switch {
	case s.unique:
		// requestid is set too: under a case-insensitive unique index the row
		// then belongs to the key written last, which Get checks byte for byte.
		cols, vals, upd := "requestid, requestvalue, hits", "?, ?, 0", "requestid = VALUES(requestid), requestvalue = VALUES(requestvalue)"
		if s.createdAt {
			cols, vals, upd = cols+", created_at", vals+", NOW(3)", upd+", created_at = NOW(3)"
		}
		set = "INSERT INTO " + t + " (" + cols + ") VALUES (" + vals + ") ON DUPLICATE KEY UPDATE " + upd
	default:
		cols, vals := "requestid, requestvalue, hits", "?, ?, 0"
		if s.createdAt {
			cols, vals = cols+", created_at", vals+", NOW(3)"
		}
		set = "INSERT INTO " + t + " (" + cols + ") SELECT " + vals + " FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM " + t +
			" WHERE " + sameKey + " AND CAST(requestvalue AS BINARY) = CAST(? AS BINARY)"
		if s.ttl {
			set += fresh
		}
		set += ")"
	}

	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&s.get, get},
		{&s.hit, "UPDATE " + t + " SET hits = COALESCE(hits, 0) + ? WHERE id = ?"},
		{&s.set, set},
		{&s.del, "DELETE FROM " + t + " WHERE " + sameKey},
	} {
		st, err := c.db.PrepareContext(ctx, p.q)
		if err != nil {
			return fmt.Errorf("mysql: prepare statements for %s: %w", c.name, err)
		}
		*p.dst = st
	}
	return nil
}
