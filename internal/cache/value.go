package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// CheckOptions checks the options every shared backend has: the CalcVersion its keys
// are stored under, the entries' TTL (0 = never expire) and the per-operation timeout
// (0 = the backend's default). A backend wraps the error with its name.
func CheckOptions(version int, ttl, timeout time.Duration) error {
	switch {
	case version < 1 || version > calc.MaxVersion:
		return fmt.Errorf("version %d out of range 1..%d", version, calc.MaxVersion)
	case ttl < 0:
		return fmt.Errorf("negative TTL %v", ttl)
	case timeout < 0:
		return fmt.Errorf("negative timeout %v", timeout)
	}
	return nil
}

// ErrCorrupt is returned by a shared backend's Get when the stored value is not
// exactly the answer for the key and version asked for. Chain deletes such a value,
// counts and logs it, and computes the answer instead.
var ErrCorrupt = errors.New("cache: stored value is not the answer for this key")

// Deleter is a backend that can remove one key; Chain uses it to drop corrupt values.
type Deleter interface {
	Delete(ctx context.Context, key string) error
}

// Pinger is a backend that can tell whether it is reachable without touching a key;
// Chain probes a bypassed backend with it.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Purger is a backend that can enumerate what it stores. Purge deletes every entry
// (of any CalcVersion) whose original key match accepts and returns how many it
// removed.
type Purger interface {
	Purge(ctx context.Context, match func(key string) bool) (int, error)
}

// CountingPurger is a Purger that also counts the entries it had to leave alone
// because their original key was not stored (a hashed key): no match can see them.
type CountingPurger interface {
	PurgeCounts(ctx context.Context, match func(key string) bool) (removed, skipped int, err error)
}

// Initializer is a backend that prepares something before its first use, such as
// checking (or creating) a table. Init is idempotent. An error matching
// ErrUnusable means the backend cannot work as configured until someone acts (its
// table is missing): the server refuses to start. Any other error is an outage:
// the server starts without the backend and the chain keeps probing it.
type Initializer interface {
	Init(ctx context.Context) error
}

// ErrUnusable is matched (errors.Is) by the errors Unusable returns.
var ErrUnusable = errors.New("cache: backend unusable as configured")

// Unusable returns a sentinel error with the given text that matches ErrUnusable,
// for a backend's own conditions of that kind (a missing table).
func Unusable(text string) error { return &unusable{text} }

type unusable struct{ text string }

func (e *unusable) Error() string        { return e.text }
func (e *unusable) Is(target error) bool { return target == ErrUnusable }

// StorageKey is the name a shared backend stores key under:
// unicorn:v<version>:<hex SHA-256 of key>. It fits memcached's 250-byte limit, and
// versions never collide.
func StorageKey(version int, key string) string {
	sum := sha256.Sum256([]byte(key))
	b := make([]byte, 0, 11+10+64)
	b = append(b, "unicorn:v"...)
	b = strconv.AppendInt(b, int64(version), 10)
	b = append(b, ':')
	b = hex.AppendEncode(b, sum[:])
	return string(b)
}

// StoragePrefix is what every StorageKey starts with, for backends that scan.
const StoragePrefix = "unicorn:v"

// EncodeValue is the value a shared backend stores for key: the token body of the
// answer (which carries the version, the key's hash and the result), a newline, and
// the original key, so that purge can match it.
func EncodeValue(version int, key string, r calc.Result) []byte {
	b := make([]byte, 0, calc.TokenSize+1+len(key))
	b = calc.AppendBody(b, calc.Token, version, []byte(key), &r)
	b = append(b, '\n')
	return append(b, key...)
}

// DecodeValue returns the result stored in v if v is exactly EncodeValue of the right
// answer for key at version (re-computed: a few microseconds), else ErrCorrupt.
func DecodeValue(version int, key string, v []byte) (calc.Result, error) {
	r := calc.Sum(version, []byte(key))
	if !bytes.Equal(v, EncodeValue(version, key, r)) {
		return calc.Result{}, fmt.Errorf("%w (%d bytes)", ErrCorrupt, len(v))
	}
	return r, nil
}

// ValueKey returns the original key kept in a stored value, for purge.
func ValueKey(v []byte) (string, bool) {
	i := bytes.IndexByte(v, '\n')
	if i < 0 {
		return "", false
	}
	return string(v[i+1:]), true
}

// CheckToken verifies a token body stored on its own (the MySQL backend's
// requestvalue column): it returns the result if token is the answer for key at
// version, ErrMiss if it is a well-formed token of another version (another fleet's
// entry, not damage), and ErrCorrupt otherwise.
func CheckToken(version int, key string, token []byte) (calc.Result, error) {
	r := calc.Sum(version, []byte(key))
	if calc.Verify(calc.Token, version, []byte(key), token) {
		return r, nil
	}
	if v, ok := tokenVersion(token); ok && v != version && calc.Verify(calc.Token, v, []byte(key), token) {
		return calc.Result{}, ErrMiss
	}
	return calc.Result{}, fmt.Errorf("%w (%d bytes)", ErrCorrupt, len(token))
}

// tokenVersion reads the version a token claims.
func tokenVersion(token []byte) (int, bool) {
	doc, err := base64.StdEncoding.DecodeString(string(token))
	if err != nil {
		return 0, false
	}
	rest, ok := strings.CutPrefix(string(doc), `{"version":`)
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, ",")
	if !ok {
		return 0, false
	}
	v, err := strconv.Atoi(num)
	if err != nil || v < 1 || v > calc.MaxVersion {
		return 0, false
	}
	return v, true
}
