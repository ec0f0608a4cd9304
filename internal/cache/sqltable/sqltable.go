// Package sqltable holds what the MySQL and PostgreSQL backends share about the
// team table
//
//	unicorntable(id SERIAL PRIMARY KEY, requestid VARCHAR(255), requestvalue VARCHAR(255), hits INT)
//
// and nothing of either's SQL: how a key maps to requestid, which of a key's rows
// Get serves, how Purge sorts and batches rows, how hits are counted, how Init
// runs one at a time and Ping runs it, and the checks and warnings about a
// table's columns. Each backend writes its own statements and reads its own
// catalog.
package sqltable

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// HashPrefix starts the requestid of a key that the column cannot hold exactly.
const HashPrefix = "sha256:"

// HashedLen is the length of a hashed requestid: the prefix and 64 hex digits. A
// requestid column narrower than this cannot be used.
const HashedLen = len(HashPrefix) + 2*sha256.Size

// MaxKey is the longest key stored verbatim in requestid, the width of the
// contest table's VARCHAR(255); a narrower column lowers it.
const MaxKey = 255

// LookupRows is how many of a key's newest rows Get reads. A contest table has no
// unique index, so two fleets running different CalcVersions leave a row each per
// key; reading a few rows lets each fleet find its own instead of only the newest
// fleet ever hitting.
const LookupRows = 8

// PurgeBatch bounds the ids one DELETE of Purge names, so that no statement holds
// many row locks or grows with the table.
const PurgeBatch = 500

// RequestID is the requestid under which key is stored: key itself when verbatim
// says the column holds it exactly, else Hash(key). A key that itself starts with
// HashPrefix is always hashed, so a stored key can never pose as another's hash.
func RequestID(key string, verbatim func(key string) bool) string {
	if !strings.HasPrefix(key, HashPrefix) && verbatim(key) {
		return key
	}
	return Hash(key)
}

// Hash is the hashed requestid of key: HashPrefix and the hex SHA-256 of key.
func Hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return HashPrefix + hex.EncodeToString(sum[:])
}

// IsASCII reports whether s holds only 7-bit characters, which every character
// set and encoding stores unchanged.
func IsASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// Rows are a key's rows of (id, requestvalue), newest first: *sql.Rows and
// pgx.Rows both are.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
}

// Newest returns the answer Get serves from rows and the id of its row. It skips
// answers of other versions and takes the first row that is version's exact
// answer; a damaged row met first yields its id and an error wrapping
// cache.ErrCorrupt, and no row of this version yields cache.ErrMiss. Any other
// error is the driver's, from scanning a row. Newest neither closes rows nor
// checks their Err: the caller does, as its driver requires. V is the type the
// value is scanned into: sql.RawBytes spares database/sql a copy.
func Newest[V ~[]byte](rows Rows, version int, key string) (r calc.Result, id int64, err error) {
	var value V
	for rows.Next() {
		if err := rows.Scan(&id, &value); err != nil {
			return calc.Result{}, 0, err
		}
		r, err = cache.CheckToken(version, key, []byte(value))
		if !errors.Is(err, cache.ErrMiss) {
			return r, id, err
		}
		// Another CalcVersion's answer: not ours, not damage.
	}
	return calc.Result{}, 0, cache.ErrMiss
}

// Purge sorts a table's rows for a purge and counts what it leaves.
type Purge struct {
	// Match reports whether the key a requestid holds is to go.
	Match func(key string) bool
	// Removed and Skipped are what PurgeCounts returns: the rows deleted, which
	// the backend adds up, and the rows under a hashed requestid, which no
	// pattern can match and Wants counts.
	Removed, Skipped int
}

// Wants reports whether the row whose requestid is rid (nil for NULL) is to be
// deleted. A row without a requestid is left alone; a hashed one is too, and
// counted in Skipped.
func (p *Purge) Wants(rid *string) bool {
	switch {
	case rid == nil:
		return false
	case strings.HasPrefix(*rid, HashPrefix):
		p.Skipped++
		return false
	default:
		return p.Match(*rid)
	}
}

// Required are the columns every team table has.
var Required = []string{"id", "requestid", "requestvalue", "hits"}

// CheckColumns returns an error wrapping errSchema unless names, the table's
// column names in lower case, hold every Required column. table names the table
// in the message; create returns the statement that makes a usable one, and is
// called only when a column is missing.
func CheckColumns(errSchema error, table string, names []string, create func() string) error {
	var missing []string
	for _, col := range Required {
		if !slices.Contains(names, col) {
			missing = append(missing, col)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s lacks the column(s) %s; it needs id, requestid, requestvalue and hits, as in: %s",
		errSchema, table, strings.Join(missing, ", "), create())
}

// The warnings both backends give, about the table named by table.

// NarrowWarning says that a requestid column of width characters hashes longer keys.
func NarrowWarning(table string, width int) string {
	return fmt.Sprintf("column requestid of %s holds %d characters: longer keys are stored as sha256:<hex>, which purge cannot match",
		table, width)
}

// NoIndexWarning says that requestid has no index, and gives the statement that
// makes one.
func NoIndexWarning(table, create string) string {
	return fmt.Sprintf("column requestid of %s has no index: every lookup scans the whole table; run: %s", table, create)
}

// NoTTLWarning says that a table without created_at cannot expire entries; setting
// names the backend's CreateTable setting.
func NoTTLWarning(table, setting string) string {
	return fmt.Sprintf("CacheTTL cannot be enforced on %s: it has no created_at column; set %s = true on a new table to get expiry",
		table, setting)
}

// PurgeRows are rows of (id, requestid) for a purge: *sql.Rows and pgx.Rows both
// are.
type PurgeRows interface {
	Rows
	Err() error
}

// Collect reads rows of (id, requestid) and appends to batch the ids of those
// Wants, until batch holds PurgeBatch ids or rows end. It returns batch, how many
// rows it read and the id of the last. An error is the driver's, from scanning a
// row or from rows.Err once they end; rows stay open when batch fills first, and
// are the caller's to close.
func (p *Purge) Collect(rows PurgeRows, batch []int64) (ids []int64, read int, last int64, err error) {
	var rid *string
	for len(batch) < PurgeBatch && rows.Next() {
		if err := rows.Scan(&last, &rid); err != nil {
			return batch, read, last, err
		}
		read++
		if p.Wants(rid) {
			batch = append(batch, last)
		}
	}
	if len(batch) < PurgeBatch {
		if err := rows.Err(); err != nil {
			return batch, read, last, err
		}
	}
	return batch, read, last, nil
}
