package gameday

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/unicorn-rentals/unicorn/internal/calc"
)

func TestWrongReasonSaysWhatTheAnswerIs(t *testing.T) {
	key := NewKey(42).Text
	other := NewKey(43).Text
	long := strings.Repeat("x", 200)
	for _, c := range []struct {
		name    string
		f       calc.Format
		version int
		body    []byte
		want    string
	}{
		{"token of another key", calc.Token, 1, calc.Body(calc.Token, 1, []byte(other)), "an answer for another key"},
		{"token of a stale version", calc.Token, 2, calc.Body(calc.Token, 1, []byte(key)), "a stale version (the answer of version 1, expected 2)"},
		{"hash of a stale version", calc.Hash, 3, calc.Body(calc.Hash, 2, []byte(key)), "a stale version (the answer of version 2, expected 3)"},
		{"hash of another key", calc.Hash, 1, calc.Body(calc.Hash, 1, []byte(other)), "a well-formed hash of another key or version"},
		{"hash for token", calc.Token, 1, calc.Body(calc.Hash, 1, []byte(key)), "the right answer in the hash format, but the servers are expected to answer token"},
		{"trailing newline", calc.Token, 1, append(calc.Body(calc.Token, 1, []byte(key)), '\n'), "the right answer with extra whitespace"},
		{"garbage", calc.Token, 1, []byte("<html>502 Bad Gateway</html>"), "not a token (not base64)"},
		{"base64 not json", calc.Token, 1, []byte("aGVsbG8gd29ybGQ="), "not a token (not the version/key/unicorn JSON)"},
		{"empty", calc.Token, 1, nil, "got an empty body"},
		{"long garbage", calc.Hash, 1, []byte(long), `got "` + strings.Repeat("x", quoteLimit) + `"…`},
	} {
		got := WrongReason(c.f, c.version, key, c.body)
		prefix := "answer did not match for key " + key + " (got "
		if !strings.HasPrefix(got, prefix) || !strings.Contains(got, ", expected \"") {
			t.Errorf("%s: %q does not start %q … expected …", c.name, got, prefix)
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("%s: %q does not say %q", c.name, got, c.want)
		}
		if len(got) > 400 {
			t.Errorf("%s: reason of %d bytes: bodies not cut", c.name, len(got))
		}
	}
	// A token with the right key and version but another unicorn.
	good := calc.Body(calc.Token, 1, []byte(key))
	doc := strings.Replace(string(mustDecode(t, good)), `"unicorn":"`, `"unicorn":"0`, 1)[:calc.TokenJSONSize]
	if got := WrongReason(calc.Token, 1, key, []byte(encode(doc))); !strings.Contains(got, "the right key and version but a wrong unicorn value") {
		t.Errorf("tampered unicorn: %q", got)
	}
}

func mustDecode(t *testing.T, b []byte) []byte {
	t.Helper()
	d, err := base64.StdEncoding.DecodeString(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func encode(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
