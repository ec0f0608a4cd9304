package calc

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"testing"
)

// The vectors were computed by an independent Python implementation of the definition
// in the package comment (hashlib.sha256), not by this package.
var vectors = []struct {
	version int
	key     string
	result  string // hex
	hash    string
	token   string
}{
	{1, "testing", "670ee7b49fc5ad466ab7bb54501165d984892aa7251c2cef2343a559e3c84e10",
		"Zw7ntJ/FrUZqt7tUUBFl2YSJKqclHCzvI0OlWePIThA=",
		"eyJ2ZXJzaW9uIjoxLCJrZXkiOiJjZjgwY2Q4YWVkNDgyZDVkMTUyN2Q3ZGM3MmZjZWZmODRlNjMyNjU5Mjg0ODQ0N2QyZGMwYjBlODdkZmM5YTkwIiwidW5pY29ybiI6IjY3MGVlN2I0OWZjNWFkNDY2YWI3YmI1NDUwMTE2NWQ5ODQ4OTJhYTcyNTFjMmNlZjIzNDNhNTU5ZTNjODRlMTAifSAgICAgICAgICAgICAgICAgICAg"},
	{1, "3615-7184-2117", "6d9c44ecddbf2e7565a2ed3b944bbddcc05a94561dea70841870220d42c3852e",
		"bZxE7N2/LnVlou07lEu93MBalFYd6nCEGHAiDULDhS4=",
		"eyJ2ZXJzaW9uIjoxLCJrZXkiOiJhNzNkZDU5MTk4YzY5MjJmMTllZTFlNDA1M2UxMzM4NjhhNDU1NjU1OWM4YTMxZDk5OGJkOWFjMDdhMWNkM2U2IiwidW5pY29ybiI6IjZkOWM0NGVjZGRiZjJlNzU2NWEyZWQzYjk0NGJiZGRjYzA1YTk0NTYxZGVhNzA4NDE4NzAyMjBkNDJjMzg1MmUifSAgICAgICAgICAgICAgICAgICAg"},
	{1, "ddfdf", "3bd012428930f2705480c993cff0867b00d517d06914a3ba44ff0c19727b1ef4",
		"O9ASQokw8nBUgMmTz/CGewDVF9BpFKO6RP8MGXJ7HvQ=",
		"eyJ2ZXJzaW9uIjoxLCJrZXkiOiJkNmJlZjZlMWI1YmE4YWRlNjVhNWIwMTNhNDIyNTVjMjU4ODkwZmNlOWQxMDU5YmVkZDdkOGQ4MzM2MzVhYmM5IiwidW5pY29ybiI6IjNiZDAxMjQyODkzMGYyNzA1NDgwYzk5M2NmZjA4NjdiMDBkNTE3ZDA2OTE0YTNiYTQ0ZmYwYzE5NzI3YjFlZjQifSAgICAgICAgICAgICAgICAgICAg"},
	{1, "SUNhbkhhelVuaWNvcm4/LTg5OTk=", "d765ee9d661d2c1b4d1e5f6e500c3443399133bdb50e8ee8e0cffa8989f0dee7",
		"12XunWYdLBtNHl9uUAw0QzmRM721Do7o4M/6iYnw3uc=",
		"eyJ2ZXJzaW9uIjoxLCJrZXkiOiI4ZGNkYjM2NGEwY2M5NTgyZDVkYWNkOGNlZWMwOGVmMmIxZGJkYjgyZTA5ZDA0Y2I5Y2YyN2JiNmExZjdlNzcxIiwidW5pY29ybiI6ImQ3NjVlZTlkNjYxZDJjMWI0ZDFlNWY2ZTUwMGMzNDQzMzk5MTMzYmRiNTBlOGVlOGUwY2ZmYTg5ODlmMGRlZTcifSAgICAgICAgICAgICAgICAgICAg"},
	{1, "a+b", "2ee8c884136608b31036b200d02716b5b0b0699ddac6ee2c73c77676bb6420cc",
		"LujIhBNmCLMQNrIA0CcWtbCwaZ3axu4sc8d2drtkIMw=",
		"eyJ2ZXJzaW9uIjoxLCJrZXkiOiIzMDAyNzNkYWYwYmI1N2MyMzlmODM1ODVkNzFjZWQ1NGNlNmIzYjVmYjgxNjE1YWJiZWViM2Y5Y2Y1ZmFlOTJmIiwidW5pY29ybiI6IjJlZThjODg0MTM2NjA4YjMxMDM2YjIwMGQwMjcxNmI1YjBiMDY5OWRkYWM2ZWUyYzczYzc3Njc2YmI2NDIwY2MifSAgICAgICAgICAgICAgICAgICAg"},
	{2, "testing", "d7187350e115eba0cbbc6a04711f1335f444e9cb03f9e157c3056c12c15bf7c4", "", ""},
}

func TestSumMatchesTheIndependentVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(fmt.Sprintf("v%d/%s", v.version, v.key), func(t *testing.T) {
			r := Sum(v.version, []byte(v.key))
			if got := hex.EncodeToString(r[:]); got != v.result {
				t.Fatalf("Sum = %s, want %s", got, v.result)
			}
			if v.hash != "" {
				if got := string(Body(Hash, v.version, []byte(v.key))); got != v.hash {
					t.Errorf("hash body = %q, want %q", got, v.hash)
				}
			}
			if v.token != "" {
				if got := string(Body(Token, v.version, []byte(v.key))); got != v.token {
					t.Errorf("token body = %q, want %q", got, v.token)
				}
			}
		})
	}
}

var tokenRE = regexp.MustCompile(`^ey[0-9A-Za-z]{230,280}$`)

func TestEveryTokenMatchesTheContestCheck(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	versions := []int{1, 2, 99, MaxVersion}
	for i := range 5000 {
		key := make([]byte, 1+rng.IntN(1024))
		for j := range key {
			key[j] = byte(rng.IntN(256))
		}
		v := versions[i%len(versions)]
		body := Body(Token, v, key)
		if len(body) != TokenSize || !tokenRE.Match(body) {
			t.Fatalf("version %d key %q: token %q does not match %s", v, key, body, tokenRE)
		}
		if !Verify(Token, v, key, body) {
			t.Fatalf("Verify refused its own token for %q", key)
		}
		if h := Body(Hash, v, key); len(h) != HashSize {
			t.Fatalf("hash body %q has %d bytes, want %d", h, len(h), HashSize)
		}
	}
}

func TestVerifyRefusesWrongAnswers(t *testing.T) {
	key := []byte("testing")
	good := Body(Token, 1, key)
	cases := map[string]struct {
		f       Format
		version int
		key     string
		body    []byte
	}{
		"another key's answer":       {Token, 1, "testing2", good},
		"another version":            {Token, 2, "testing", good},
		"the hash format":            {Hash, 1, "testing", good},
		"a truncated token":          {Token, 1, "testing", good[:len(good)-1]},
		"a token with a flipped bit": {Token, 1, "testing", append(append([]byte{}, good[:10]...), append([]byte{good[10] ^ 1}, good[11:]...)...)},
		"an empty body":              {Token, 1, "testing", nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if Verify(c.f, c.version, []byte(c.key), c.body) {
				t.Fatalf("Verify accepted %q", c.body)
			}
		})
	}
	if !Verify(Token, 1, key, good) {
		t.Fatal("Verify refused the right answer")
	}
}

func TestParseFormat(t *testing.T) {
	for s, want := range map[string]Format{"token": Token, "hash": Hash} {
		got, err := ParseFormat(s)
		if err != nil || got != want || got.String() != s {
			t.Errorf("ParseFormat(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseFormat("Token"); err == nil {
		t.Error("ParseFormat accepted Token")
	}
}

func BenchmarkSum(b *testing.B) {
	key := []byte("SUNhbkhhelVuaWNvcm4/LTg5OTk=")
	b.ReportAllocs()
	for b.Loop() {
		Sum(1, key)
	}
}

func BenchmarkTokenEncoding(b *testing.B) {
	key := []byte("SUNhbkhhelVuaWNvcm4/LTg5OTk=")
	r := Sum(1, key)
	buf := make([]byte, 0, TokenSize)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendBody(buf[:0], Token, 1, key, &r)
	}
}

// naiveSum is the definition written the obvious way, allocating a buffer per round.
// It checks Sum on random keys and is the baseline of BenchmarkSum.
func naiveSum(version int, key []byte) Result {
	r := sha256.Sum256(append([]byte("unicorn/v"+strconv.Itoa(version)+"\x00"), key...))
	for range Rounds {
		r = sha256.Sum256(append(r[:], key...))
	}
	return r
}

func TestSumEqualsTheNaiveDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		key := make([]byte, rng.IntN(1025))
		for j := range key {
			key[j] = byte(rng.IntN(256))
		}
		v := 1 + rng.IntN(MaxVersion)
		if Sum(v, key) != naiveSum(v, key) {
			t.Fatalf("Sum(%d, %q) differs from the definition", v, key)
		}
	}
}

func BenchmarkSumNaive(b *testing.B) {
	key := []byte("SUNhbkhhelVuaWNvcm4/LTg5OTk=")
	b.ReportAllocs()
	for b.Loop() {
		naiveSum(1, key)
	}
}
