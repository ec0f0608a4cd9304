package cache

import (
	"bytes"
	"errors"
	"testing"

	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// FuzzStoredValue holds the decoders of what shared backends store to never
// trusting a value they did not write for this key and version: DecodeValue never
// panics and accepts exactly EncodeValue of the right answer; CheckToken accepts
// exactly the token of the right answer, calls ErrMiss only a real token of the same
// key at another version, and ErrCorrupt anything else; ValueKey gives back the key
// EncodeValue stored. The right answer, altered by one byte, is refused.
func FuzzStoredValue(f *testing.F) {
	f.Fuzz(func(t *testing.T, version int, key string, v []byte) {
		version = 1 + int(uint(version)%calc.MaxVersion)
		right := EncodeValue(version, key, calc.Sum(version, []byte(key)))
		token := right[:calc.TokenSize]

		r, err := DecodeValue(version, key, v)
		switch {
		case bytes.Equal(v, right):
			if err != nil || r != calc.Sum(version, []byte(key)) {
				t.Fatalf("DecodeValue of the right value: %x, %v", r, err)
			}
		case !errors.Is(err, ErrCorrupt) || r != (calc.Result{}):
			t.Fatalf("DecodeValue(%d, %q, %q) = %x, %v; want ErrCorrupt", version, key, v, r, err)
		}

		r, err = CheckToken(version, key, v)
		switch {
		case bytes.Equal(v, token):
			if err != nil || r != calc.Sum(version, []byte(key)) {
				t.Fatalf("CheckToken of the right token: %x, %v", r, err)
			}
		case errors.Is(err, ErrMiss):
			tv, ok := tokenVersion(v)
			if !ok || tv == version || !calc.Verify(calc.Token, tv, []byte(key), v) || r != (calc.Result{}) {
				t.Fatalf("CheckToken(%d, %q, %q): ErrMiss for what is no token of the key at another version", version, key, v)
			}
		case !errors.Is(err, ErrCorrupt) || r != (calc.Result{}):
			t.Fatalf("CheckToken(%d, %q, %q) = %x, %v; want ErrCorrupt", version, key, v, r, err)
		}

		if k, ok := ValueKey(v); ok != bytes.Contains(v, []byte("\n")) || (ok && len(k) >= len(v)) {
			t.Fatalf("ValueKey(%q) = %q, %v", v, k, ok)
		}
		if k, ok := ValueKey(right); !ok || k != key {
			t.Fatalf("ValueKey of EncodeValue(%q) = %q, %v", key, k, ok)
		}
		if _, err := DecodeValue(version, key, right); err != nil {
			t.Fatalf("DecodeValue of EncodeValue(%d, %q): %v", version, key, err)
		}

		// The right value and token with one byte changed, and another version's.
		if len(v) > 0 {
			at := int(v[0]) % len(right)
			bad := bytes.Clone(right)
			bad[at] ^= v[len(v)-1] | 1
			if _, err := DecodeValue(version, key, bad); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("DecodeValue of %q, one byte changed: %v", bad, err)
			}
			if at < calc.TokenSize {
				if _, err := CheckToken(version, key, bad[:calc.TokenSize]); err == nil {
					t.Fatalf("CheckToken accepted %q, one byte changed", bad[:calc.TokenSize])
				}
			}
		}
		other := version%calc.MaxVersion + 1
		otherValue := EncodeValue(other, key, calc.Sum(other, []byte(key)))
		if _, err := DecodeValue(version, key, otherValue); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("DecodeValue at v%d of v%d's value: %v", version, other, err)
		}
		if _, err := CheckToken(version, key, otherValue[:calc.TokenSize]); !errors.Is(err, ErrMiss) {
			t.Fatalf("CheckToken at v%d of v%d's token: %v, want ErrMiss", version, other, err)
		}
	})
}
