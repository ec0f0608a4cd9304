package gameday

import (
	"encoding/base64"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var base64RE = regexp.MustCompile(`^[A-Za-z0-9+/]+={0,2}$`)

func TestKeyIsTheCheckersBase64URLEncoded(t *testing.T) {
	for _, n := range []int64{1, 42, 8999, 10000, uniqueFloor + 123456789} {
		k := NewKey(n)
		plain := KeyPrefix + strconv.FormatInt(n, 10)
		if want := base64.StdEncoding.EncodeToString([]byte(plain)); k.Text != want {
			t.Errorf("NewKey(%d).Text = %q, want base64(%q) = %q", n, k.Text, plain, want)
		}
		if !base64RE.MatchString(k.Text) || len(k.Text)%4 != 0 {
			t.Errorf("NewKey(%d).Text = %q: not padded standard base64", n, k.Text)
		}
		if k.Query != url.QueryEscape(k.Text) || strings.ContainsAny(k.Query, "+/=") {
			t.Errorf("NewKey(%d).Query = %q: want %q, with no raw + / =", n, k.Query, url.QueryEscape(k.Text))
		}
		if back, err := url.QueryUnescape(k.Query); err != nil || back != k.Text {
			t.Errorf("NewKey(%d).Query decodes to %q, %v", n, back, err)
		}
	}
	// The one the README shows for the checker's style decodes back to its text.
	if got, _ := base64.StdEncoding.DecodeString(NewKey(7).Text); string(got) != "ICanHazUnicorn4-ws-ec2?-7" {
		t.Errorf("decoded %q", got)
	}
}

// draw returns how often each popular key number came up, the unique keys drawn and
// the number of draws.
func draw(m *KeyMix, n int) (popular map[int64]int, unique []int64) {
	popular = map[int64]int{}
	for range n {
		k := m.Next()
		if k.Unique {
			unique = append(unique, k.N)
		} else {
			popular[k.N]++
		}
	}
	return popular, unique
}

func TestKeyMixFollowsZipf(t *testing.T) {
	const keys, s, n = 100, 1.5, 200_000
	popular, unique := draw(NewKeyMix(keys, s, 0, 1), n)
	if len(unique) != 0 {
		t.Fatalf("unique 0 drew %d unique keys", len(unique))
	}
	var h float64 // generalized harmonic number: the normalisation of rank^-s
	for r := 1; r <= keys; r++ {
		h += math.Pow(float64(r), -s)
	}
	for _, r := range []int64{1, 2, 3, 10} {
		want := math.Pow(float64(r), -s) / h * n
		got := float64(popular[r])
		if math.Abs(got-want) > 0.05*want+30 {
			t.Errorf("key %d drawn %v times, want ≈ %.0f (rank^-%g)", r, got, want, s)
		}
	}
	for k := range popular {
		if k < 1 || k > keys {
			t.Fatalf("popular key number %d outside 1..%d", k, keys)
		}
	}
	// A steeper skew concentrates the traffic on the hottest key.
	steep, _ := draw(NewKeyMix(keys, 3, 0, 1), n)
	if steep[1] <= popular[1] {
		t.Errorf("skew 3 gave key 1 %d draws, skew 1.5 %d: want more", steep[1], popular[1])
	}
}

func TestKeyMixUniqueFractionNeverRepeats(t *testing.T) {
	const n = 100_000
	for _, frac := range []float64{0.1, 0.5, 1} {
		popular, unique := draw(NewKeyMix(50, 1.1, frac, 7), n)
		got := float64(len(unique)) / n
		if math.Abs(got-frac) > 0.01 {
			t.Errorf("unique %g: drew %.3f unique", frac, got)
		}
		seen := map[int64]bool{}
		for _, k := range unique {
			if seen[k] {
				t.Fatalf("unique %g: key %d drawn twice", frac, k)
			}
			if k < uniqueFloor {
				t.Fatalf("unique key %d below %d: could meet a popular key", k, uniqueFloor)
			}
			seen[k] = true
		}
		if frac == 1 && len(popular) != 0 {
			t.Errorf("unique 1 drew %d popular keys", len(popular))
		}
	}
}

func TestKeyMixSeedDecidesTheKeys(t *testing.T) {
	a, b, c := NewKeyMix(1000, 1.1, 0.2, 5), NewKeyMix(1000, 1.1, 0.2, 5), NewKeyMix(1000, 1.1, 0.2, 6)
	same, differ := true, false
	for range 1000 {
		ka, kb, kc := a.Next(), b.Next(), c.Next()
		same = same && ka == kb
		differ = differ || ka != kc
	}
	if !same {
		t.Error("equal seeds drew different keys")
	}
	if !differ {
		t.Error("different seeds drew the same keys")
	}
}
