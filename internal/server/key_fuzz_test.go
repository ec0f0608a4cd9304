package server

import (
	"net/url"
	"strings"
	"testing"
)

// pathEscapeQuery is url.PathEscape made safe for a query value: PathEscape leaves
// '&' alone (it separates nothing in a path), which would end the value early.
func pathEscapeQuery(key string) string {
	return strings.ReplaceAll(url.PathEscape(key), "&", "%26")
}

// FuzzKeyRoundTrip holds inputKey to its promises for any key a client can send: a
// key escaped with url.PathEscape comes back byte for byte (a '+' stays a '+'), as
// does one escaped with url.QueryEscape when it has no space, wherever the input
// parameter stands; an empty key is refused as missing and a key over MaxKeyLen
// bytes as too long. The same bytes read as a raw query never panic and never give
// an empty or too long key.
func FuzzKeyRoundTrip(f *testing.F) {
	f.Fuzz(func(t *testing.T, key string) {
		if got, err := inputKey(key); err == nil && (got == "" || len(got) > MaxKeyLen) {
			t.Fatalf("raw query %q: accepted %d-byte key %q", key, len(got), got)
		}

		want := func(raw string) {
			t.Helper()
			got, err := inputKey(raw)
			switch {
			case key == "":
				if err != errNoKey {
					t.Fatalf("inputKey(%q) = %q, %v; want %v", raw, got, err, errNoKey)
				}
			case len(key) > MaxKeyLen:
				if err != errLongKey {
					t.Fatalf("inputKey(%q) of a %d-byte key = %v; want %v", raw, len(key), err, errLongKey)
				}
			case err != nil || got != key:
				t.Fatalf("inputKey(%q) = %q, %v; want %q", raw, got, err, key)
			}
		}
		esc := pathEscapeQuery(key)
		want("input=" + esc)
		want("a=1&b&input=" + esc + "&input=other")
		want("%69nput=" + esc)
		if !strings.Contains(key, " ") {
			want("input=" + url.QueryEscape(key))
		}
	})
}
