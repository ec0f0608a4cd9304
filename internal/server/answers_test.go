package server

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"testing"

	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// TestAnswersAreExactForEveryKeyAndResult: with four times more keys than slots
// (so slots are shared and overwritten), in both formats, every answer is the body
// and ETag of its own key and result, and a key whose result changes gets the new one.
func TestAnswersAreExactForEveryKeyAndResult(t *testing.T) {
	for _, f := range []calc.Format{calc.Token, calc.Hash} {
		a := newAnswers(f, 3)
		for round := range 2 {
			for i := range 4 * answerSlots {
				key := "key-" + strconv.Itoa(i)
				res := calc.Sum(3, []byte(key))
				if round == 1 && i%7 == 0 {
					res[0] ^= 0xff // a result that differs from the one kept
				}
				an := a.get(key, &res)
				want := calc.AppendBody(nil, f, 3, []byte(key), &res)
				if !bytes.Equal(an.body, want) {
					t.Fatalf("format %v round %d key %q: body %q, want %q", f, round, key, an.body, want)
				}
				if tag := `"` + hex.EncodeToString(res[:]) + `"`; len(an.etag) != 1 || an.etag[0] != tag {
					t.Fatalf("format %v key %q: ETag %q, want %q", f, key, an.etag, tag)
				}
				if again := a.get(key, &res); again != an {
					t.Fatalf("key %q: the answer just built was not kept", key)
				}
			}
		}
	}
}
