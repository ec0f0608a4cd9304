package gameday

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// quoteLimit is how much of a body a score event quotes: enough to tell two tokens
// apart by eye, short enough to keep the events list one line per event.
const quoteLimit = 32

// staleLookback is how many earlier versions a hash answer is compared with: a team
// that bumped CalcVersion and kept its cache serves the previous one or two.
const staleLookback = 3

// WrongReason explains a 200 whose body is not the answer for key: the score event's
// reason, "answer did not match for key K (got …, expected …)", and, when the body is
// recognisable, what it is instead (an answer for another key, a stale version, …).
func WrongReason(f calc.Format, version int, key string, body []byte) string {
	want := calc.Body(f, version, []byte(key))
	reason := fmt.Sprintf("answer did not match for key %s (got %s, expected %s)", key, quote(body), quote(want))
	if why := diagnose(f, version, key, body); why != "" {
		reason += ": " + why
	}
	return reason
}

// quote shows at most quoteLimit bytes of b, quoted, with "…" when cut.
func quote(b []byte) string {
	if len(b) == 0 {
		return "an empty body"
	}
	if len(b) <= quoteLimit {
		return strconv.Quote(string(b))
	}
	cut := quoteLimit
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut-- // never split a character
	}
	return strconv.Quote(string(b[:cut])) + "…"
}

// token is the JSON inside a token body.
type token struct {
	Version *int   `json:"version"`
	Key     string `json:"key"`
	Unicorn string `json:"unicorn"`
}

// diagnose says what body is when it is recognisable, or "".
func diagnose(f calc.Format, version int, key string, body []byte) string {
	k := []byte(key)
	if trimmed := bytes.TrimSpace(body); len(trimmed) < len(body) && calc.Verify(f, version, k, trimmed) {
		return "the right answer with extra whitespace (a proxy or template added it)"
	}
	other := calc.Hash
	if f == calc.Hash {
		other = calc.Token
	}
	if calc.Verify(other, version, k, body) {
		return fmt.Sprintf("the right answer in the %s format, but the servers are expected to answer %s", other, f)
	}
	if f == calc.Hash {
		for v := max(1, version-staleLookback); v <= version+1; v++ {
			if v != version && calc.Verify(f, v, k, body) {
				return fmt.Sprintf("a stale version (the answer of version %d, expected %d)", v, version)
			}
		}
		if raw, err := base64.StdEncoding.DecodeString(string(body)); err != nil || len(raw) != calc.Size {
			return "not a hash (44 characters of base64 of 32 bytes)"
		}
		return "a well-formed hash of another key or version"
	}
	return diagnoseToken(version, k, body)
}

func diagnoseToken(version int, key, body []byte) string {
	doc, err := base64.StdEncoding.DecodeString(string(body))
	if err != nil {
		return "not a token (not base64)"
	}
	var t token
	if err := json.Unmarshal(bytes.TrimRight(doc, " "), &t); err != nil || t.Version == nil || t.Key == "" {
		return "not a token (not the version/key/unicorn JSON)"
	}
	kh := sha256.Sum256(key)
	if t.Key != hex.EncodeToString(kh[:]) {
		return fmt.Sprintf("an answer for another key (its key hash %s, this key's %s)", short(t.Key), short(hex.EncodeToString(kh[:])))
	}
	if *t.Version != version {
		if *t.Version >= 1 && *t.Version <= calc.MaxVersion && calc.Verify(calc.Token, *t.Version, key, body) {
			return fmt.Sprintf("a stale version (the answer of version %d, expected %d)", *t.Version, version)
		}
		return fmt.Sprintf("a token of version %d (expected %d) with a wrong unicorn", *t.Version, version)
	}
	return "the right key and version but a wrong unicorn value"
}

// short cuts a hex digest to its first 12 digits.
func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}
