// Package calc is the unicorn function and the encodings of its answer.
//
// The answer for key K at version V is defined so that anyone can verify it:
//
//	r = SHA-256("unicorn/v" + decimal(V) + "\x00" + K)
//	15 times: r = SHA-256(r + K)
//
// The final 32-byte r is the result. One evaluation costs a few microseconds; the
// "computationally expensive" part of a request is simulated by internal/queue.
package calc

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// Rounds is the number of SHA-256 evaluations after the first.
const Rounds = 15

// Size is the length of a result in bytes.
const Size = sha256.Size

// TokenJSONSize is the length of the JSON document inside a token, padded with spaces.
// 183 bytes encode to 244 base64 characters without padding, which fits the
// VARCHAR(255) column of the contests and their ^ey[0-9A-Za-z]{230,280}$ check.
const TokenJSONSize = 183

// TokenSize is the length of a token body.
const TokenSize = TokenJSONSize / 3 * 4

// HashSize is the length of a hash body.
const HashSize = 44

// MaxVersion is the largest CalcVersion whose token still fits TokenJSONSize.
const MaxVersion = 1_000_000_000

// Result is the 32-byte answer for one key at one version.
type Result [Size]byte

// Sum computes the unicorn result of key at version.
func Sum(version int, key []byte) Result {
	var r Result
	var prefix [32]byte
	p := append(prefix[:0], "unicorn/v"...)
	p = strconv.AppendInt(p, int64(version), 10)
	p = append(p, 0)
	h := sha256.New()
	h.Write(p)
	h.Write(key)
	h.Sum(r[:0])
	for range Rounds {
		h.Reset()
		h.Write(r[:])
		h.Write(key)
		h.Sum(r[:0])
	}
	return r
}

// Format is the encoding of an answer body.
type Format int

const (
	// Token is base64 of {"version":V,"key":"<hex sha256 of K>","unicorn":"<hex result>"}
	// padded with spaces to 183 bytes: a 244-character body matching ^ey[0-9A-Za-z]+$.
	Token Format = iota
	// Hash is the 44-character standard base64 of the result (the GameDay style).
	Hash
)

// ErrFormat reports an unknown format name.
var ErrFormat = errors.New("calc: unknown response format")

// ParseFormat returns the format named "token" or "hash".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "token":
		return Token, nil
	case "hash":
		return Hash, nil
	}
	return 0, fmt.Errorf("%w %q (allowed: token, hash)", ErrFormat, s)
}

func (f Format) String() string {
	if f == Hash {
		return "hash"
	}
	return "token"
}

// AppendBody appends the body that answers key at version in format f, given its result.
func AppendBody(dst []byte, f Format, version int, key []byte, r *Result) []byte {
	if f == Hash {
		return base64.StdEncoding.AppendEncode(dst, r[:])
	}
	var doc [TokenJSONSize]byte
	kh := sha256.Sum256(key)
	d := append(doc[:0], `{"version":`...)
	d = strconv.AppendInt(d, int64(version), 10)
	d = append(d, `,"key":"`...)
	d = hex.AppendEncode(d, kh[:])
	d = append(d, `","unicorn":"`...)
	d = hex.AppendEncode(d, r[:])
	d = append(d, `"}`...)
	for i := len(d); i < TokenJSONSize; i++ {
		doc[i] = ' '
	}
	return base64.StdEncoding.AppendEncode(dst, doc[:])
}

// Body returns the body that answers key at version in format f.
func Body(f Format, version int, key []byte) []byte {
	r := Sum(version, key)
	n := TokenSize
	if f == Hash {
		n = HashSize
	}
	return AppendBody(make([]byte, 0, n), f, version, key, &r)
}

// Verify reports whether body is exactly the answer for key at version in format f.
func Verify(f Format, version int, key, body []byte) bool {
	want := Body(f, version, key)
	return subtle.ConstantTimeCompare(want, body) == 1
}
