package gameday

import (
	"encoding/base64"
	"math/rand/v2"
	"net/url"
	"strconv"
)

// KeyPrefix is the plain text the WorldSkills contest checker puts before a number
// before it base64-encodes a key.
const KeyPrefix = "ICanHazUnicorn4-ws-ec2?-"

// MaxKeys bounds Options.Keys so that popular key numbers (1..Keys) never meet the
// unique ones (above uniqueFloor).
const MaxKeys = 100_000_000

// uniqueFloor and uniqueSpan place a run's never-repeated keys: consecutive numbers
// from a random start in [uniqueFloor, uniqueFloor+uniqueSpan), so that two runs with
// different seeds almost never share one and a second run finds no warm cache for
// them either.
const (
	uniqueFloor = 1_000_000_000
	uniqueSpan  = 1 << 50
)

// Key is one key of the mix.
type Key struct {
	N      int64  // the number after KeyPrefix
	Unique bool   // drawn from the never-repeated part of the mix
	Text   string // standard base64 of KeyPrefix + N: the key the server hashes
	Query  string // Text URL-encoded for ?input=
}

// NewKey returns key number n as the contest checkers make it.
func NewKey(n int64) Key {
	text := base64.StdEncoding.EncodeToString(strconv.AppendInt([]byte(KeyPrefix), n, 10))
	return Key{N: n, Text: text, Query: url.QueryEscape(text)}
}

// KeyMix draws keys: with probability unique a never-repeated one, otherwise one of
// keys popular keys numbered 1..keys whose popularity follows Zipf's law with exponent
// skew (key 1 the most popular; rank r drawn with probability ∝ r^-skew). It is not
// safe for concurrent use: the pacer alone draws.
type KeyMix struct {
	rng        *rand.Rand
	zipf       *rand.Zipf
	unique     float64
	nextUnique int64
}

// NewKeyMix returns the mix; keys ≥ 1, skew > 1, 0 ≤ unique ≤ 1 (Options checks them).
func NewKeyMix(keys int, skew, unique float64, seed int64) *KeyMix {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	return &KeyMix{
		rng: rng,
		// v = 1 makes P(k) ∝ (1+k)^-s for k in 0..keys-1: Zipf over ranks 1..keys.
		zipf:       rand.NewZipf(rng, skew, 1, uint64(keys-1)),
		unique:     unique,
		nextUnique: uniqueFloor + rng.Int64N(uniqueSpan),
	}
}

// Next draws the next key.
func (m *KeyMix) Next() Key {
	if m.unique > 0 && (m.unique >= 1 || m.rng.Float64() < m.unique) {
		k := NewKey(m.nextUnique)
		k.Unique = true
		m.nextUnique++
		return k
	}
	// Encoding a key anew each time costs well under a microsecond; a table of every
	// popular key would cost gigabytes at MaxKeys.
	return NewKey(int64(m.zipf.Uint64()) + 1)
}
