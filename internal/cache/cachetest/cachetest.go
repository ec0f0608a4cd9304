// Package cachetest is the conformance suite every shared cache backend passes:
// the behaviour the Chain relies on, written once and run by each backend's tests
// against its real server.
package cachetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// Shared is what a shared backend implements.
type Shared interface {
	cache.Cache
	cache.Deleter
	cache.Pinger
}

// Backend describes the backend under test.
type Backend struct {
	// New returns a new client at version, as another host would open it; it is
	// closed when t ends.
	New func(t testing.TB, version int) Shared
	// Put stores v as the raw value of key at version, bypassing the client, as a
	// tampering or buggy writer would. It replaces what key had.
	Put func(t testing.TB, version int, key string, v []byte)
	// Encode is the raw value the backend stores as key's answer r at version, from
	// which the damaged values are made. If nil, cache.EncodeValue: the SQL
	// backends store the token body alone.
	Encode func(version int, key string, r calc.Result) []byte
	// OtherVersionIsMiss is set for a backend that keeps the answers of every
	// version under the same key, as the SQL tables do, where fleets of two
	// CalcVersions share rows: another version's well-formed answer is then a miss,
	// not damage.
	OtherVersionIsMiss bool
}

// WantHit fails t unless c answers key with its right result at version.
func WantHit(t testing.TB, c cache.Cache, version int, key string) {
	t.Helper()
	got, err := c.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q) at v%d: %v, want a hit", key, version, err)
	}
	if want := calc.Sum(version, []byte(key)); got != want {
		t.Fatalf("Get(%q) at v%d = %x, want %x", key, version, got, want)
	}
}

// WantMiss fails t unless c has nothing for key.
func WantMiss(t testing.TB, c cache.Cache, key string) {
	t.Helper()
	if r, err := c.Get(context.Background(), key); !errors.Is(err, cache.ErrMiss) {
		t.Fatalf("Get(%q) = %x, %v; want ErrMiss", key, r, err)
	}
}

// Set stores key's right answer at version in c.
func Set(t testing.TB, c cache.Cache, version int, key string) {
	t.Helper()
	if err := c.Set(context.Background(), key, calc.Sum(version, []byte(key))); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

// Conformance runs the suite on b.
func Conformance(t *testing.T, b Backend) {
	ctx := context.Background()

	t.Run("a stored key is a hit, whatever its bytes", func(t *testing.T) {
		c := b.New(t, 1)
		for _, key := range []string{"3615-7184-2117", "testing", "SUNhbkhhelVuaWNvcm4/LTg5OTk=", "a\x00b\nc \xff"} {
			WantMiss(t, c, key)
			Set(t, c, 1, key)
			WantHit(t, c, 1, key)
		}
	})

	t.Run("another host hits what the first wrote", func(t *testing.T) {
		a, other := b.New(t, 1), b.New(t, 1)
		Set(t, a, 1, "shared")
		WantHit(t, other, 1, "shared")
	})

	t.Run("versions do not collide", func(t *testing.T) {
		v1, v2 := b.New(t, 1), b.New(t, 2)
		Set(t, v1, 1, "versioned")
		WantMiss(t, v2, "versioned")
		Set(t, v2, 2, "versioned")
		WantHit(t, v1, 1, "versioned")
		WantHit(t, v2, 2, "versioned")
	})

	t.Run("a deleted key is a miss and deleting an absent key is fine", func(t *testing.T) {
		c := b.New(t, 1)
		Set(t, c, 1, "doomed")
		Set(t, c, 1, "kept")
		if err := c.Delete(ctx, "doomed"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		WantMiss(t, c, "doomed")
		WantHit(t, c, 1, "kept")
		if err := c.Delete(ctx, "doomed"); err != nil {
			t.Fatalf("Delete of an absent key: %v", err)
		}
		if err := c.Delete(ctx, "never stored"); err != nil {
			t.Fatalf("Delete of a key never stored: %v", err)
		}
	})

	t.Run("Ping answers", func(t *testing.T) {
		if err := b.New(t, 1).Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})

	t.Run("a value that is not the exact answer is corrupt", func(t *testing.T) {
		const key = "tampered"
		c := b.New(t, 3)
		encode := b.Encode
		if encode == nil {
			encode = cache.EncodeValue
		}
		right := encode(3, key, calc.Sum(3, []byte(key)))
		flipped := slices.Clone(right)
		flipped[10] ^= 1
		wrong := calc.Sum(3, []byte(key))
		wrong[0] ^= 1
		otherVersion := cache.ErrCorrupt
		if b.OtherVersionIsMiss {
			otherVersion = cache.ErrMiss
		}
		for name, tc := range map[string]struct {
			v    []byte
			want error
		}{
			"garbage":                       {[]byte("not a unicorn"), cache.ErrCorrupt},
			"empty":                         {[]byte{}, cache.ErrCorrupt},
			"another key's valid entry":     {encode(3, "other", calc.Sum(3, []byte("other"))), cache.ErrCorrupt},
			"one byte flipped":              {flipped, cache.ErrCorrupt},
			"a wrong result":                {encode(3, key, wrong), cache.ErrCorrupt},
			"the answer of another version": {encode(4, key, calc.Sum(4, []byte(key))), otherVersion},
			"the right value truncated":     {right[:len(right)-1], cache.ErrCorrupt},
			"the right value and more":      {append(slices.Clone(right), "\nmore"...), cache.ErrCorrupt},
		} {
			t.Run(name, func(t *testing.T) {
				b.Put(t, 3, key, tc.v)
				if r, err := c.Get(ctx, key); !errors.Is(err, tc.want) {
					t.Fatalf("Get = %x, %v; want %v", r, err, tc.want)
				}
			})
		}
		t.Run("the untampered value is a hit", func(t *testing.T) {
			b.Put(t, 3, key, right)
			WantHit(t, c, 3, key)
		})
	})
}

// WantErr fails t unless c's Get of key fails with an error that is target.
func WantErr(t testing.TB, c cache.Cache, key string, target error) {
	t.Helper()
	if r, err := c.Get(context.Background(), key); !errors.Is(err, target) {
		t.Fatalf("Get(%q) = %x, %v; want %v", key, r, err, target)
	}
}

// Token is the requestvalue the SQL backends store as key's answer at version.
func Token(version int, key string) string {
	return string(calc.Body(calc.Token, version, []byte(key)))
}

// Tamper changes one character of a token, keeping its length and alphabet.
func Tamper(tok string) string {
	b := []byte(tok)
	if b[100] == 'A' {
		b[100] = 'B'
	} else {
		b[100] = 'A'
	}
	return string(b)
}

// FailsFast checks c against a server that is down or hung (state says which, for
// the messages): Get, Set, Delete and Ping, with a context that has no deadline,
// each fail with an error other than ErrMiss within limit, the backend's Timeout
// plus a margin for a busy machine.
func FailsFast(t *testing.T, c Shared, limit time.Duration, state string) {
	t.Helper()
	ctx := context.Background()
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"Get", func() error { _, err := c.Get(ctx, "before"); return err }},
		{"Set", func() error { return c.Set(ctx, "during", calc.Sum(1, []byte("during"))) }},
		{"Delete", func() error { return c.Delete(ctx, "before") }},
		{"Ping", func() error { return c.Ping(ctx) }},
	} {
		start := time.Now()
		err := op.do()
		if took := time.Since(start); took > limit {
			t.Errorf("%s on a %s server took %v, want %v at most", op.name, state, took, limit)
		}
		if err == nil || errors.Is(err, cache.ErrMiss) {
			t.Errorf("%s on a %s server: %v, want an error other than ErrMiss", op.name, state, err)
		}
	}
}

// WaitWorking retries Set (of "after") until c's server answers again, for at
// most within, and then wants it a hit. Connections pooled before an outage fail
// once and are dropped, and some clients wait a little before dialling a server
// that failed, so there is nothing to wait on but time.
func WaitWorking(t *testing.T, c Shared, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := c.Set(context.Background(), "after", calc.Sum(1, []byte("after")))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Set still failing %v after the server came back: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	WantHit(t, c, 1, "after")
}

// DoneContext checks that a Get with a cancelled context fails, and not with a
// miss: the Chain would otherwise compute and store an answer the cache has.
func DoneContext(t *testing.T, c Shared) {
	t.Helper()
	Set(t, c, 1, "cancelled")
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Get(done, "cancelled"); err == nil || errors.Is(err, cache.ErrMiss) {
		t.Fatalf("Get with a cancelled context: %v, want an error other than ErrMiss", err)
	}
}

// Killed checks a client of p's server through a crash: with the server killed,
// Get, Set, Delete and Ping fail (not miss) within timeout plus a margin, and once
// p is restarted the same client works again, on a server that kept nothing.
func Killed(t *testing.T, c Shared, p *svctest.Proc, timeout time.Duration) {
	Set(t, c, 1, "before")
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	FailsFast(t, c, timeout+400*time.Millisecond, "dead")
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	WaitWorking(t, c, 5*time.Second)
	WantMiss(t, c, "before") // the restarted server keeps nothing
}
