package calc

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// FuzzVerify holds the token and hash encoders and Verify to each other: the body
// of any key at any version verifies, has its format's length (a token matches the
// contests' ^ey[0-9A-Za-z]{230,280}$ and carries the version and key hash as JSON), and
// any change to it — one byte altered, one cut off or added, another version,
// another key, the other format — fails Verify.
func FuzzVerify(f *testing.F) {
	f.Fuzz(func(t *testing.T, version int, key []byte, at uint16, xor byte) {
		version = 1 + int(uint(version)%MaxVersion) // the versions a server accepts
		other := version%MaxVersion + 1

		for _, c := range []struct {
			f    Format
			size int
		}{{Token, TokenSize}, {Hash, HashSize}} {
			body := Body(c.f, version, key)
			if len(body) != c.size {
				t.Fatalf("%v body of %q at v%d: %d bytes, want %d", c.f, key, version, len(body), c.size)
			}
			if !Verify(c.f, version, key, body) {
				t.Fatalf("%v body of %q at v%d does not verify", c.f, key, version)
			}
			r := Sum(version, key)
			if again := AppendBody([]byte("x"), c.f, version, key, &r); !bytes.Equal(again[1:], body) || again[0] != 'x' {
				t.Fatalf("AppendBody and Body disagree")
			}
			if c.f == Token {
				checkToken(t, body, version)
			}

			mutated := bytes.Clone(body)
			mutated[int(at)%len(mutated)] ^= xor | 1
			if Verify(c.f, version, key, mutated) {
				t.Fatalf("%v body %q with one byte changed verifies", c.f, mutated)
			}
			if Verify(c.f, version, key, body[:len(body)-1]) || Verify(c.f, version, key, append(bytes.Clone(body), '=')) {
				t.Fatalf("%v body cut short or lengthened verifies", c.f)
			}
			if Verify(c.f, other, key, body) {
				t.Fatalf("%v body of v%d verifies at v%d", c.f, version, other)
			}
			if Verify(c.f, version, append(bytes.Clone(key), byte(xor)), body) {
				t.Fatalf("%v body of %q verifies for a longer key", c.f, key)
			}
			if Verify(1-c.f, version, key, body) {
				t.Fatalf("%v body verifies as %v", c.f, 1-c.f)
			}
		}
	})
}

// checkToken checks that a token body is what the contests' checkers expect.
func checkToken(t *testing.T, body []byte, version int) {
	t.Helper()
	if !tokenRE.Match(body) {
		t.Fatalf("token %q does not match %v", body, tokenRE)
	}
	doc, err := base64.StdEncoding.DecodeString(string(body))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Version int    `json:"version"`
		Key     string `json:"key"`
		Unicorn string `json:"unicorn"`
	}
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatalf("token %q: %v", doc, err)
	}
	if v.Version != version || len(v.Key) != 64 || len(v.Unicorn) != 64 {
		t.Fatalf("token %q: version %d, key %q, unicorn %q", doc, v.Version, v.Key, v.Unicorn)
	}
}
