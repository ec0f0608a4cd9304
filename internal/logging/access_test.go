package logging

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// slogLine is the reference: the line the logger New returns writes for r.
func slogLine(t *testing.T, format string, r *AccessRecord) string {
	t.Helper()
	var buf bytes.Buffer
	log, err := New(&buf, format)
	if err != nil {
		t.Fatal(err)
	}
	rec := slog.NewRecord(r.Time, slog.LevelInfo, "access", 0)
	rec.AddAttrs(
		slog.String("client", r.Client),
		slog.String("method", EscapeKey(r.Method)),
		slog.String("path", EscapeURI(r.Path)),
		slog.String("key", EscapeKey(r.Key)),
		slog.Int("status", r.Status),
		slog.Int("bytes", r.Bytes),
		slog.Duration("duration", r.Duration),
		slog.String("cache", r.Cache),
		slog.Duration("queue_wait", r.QueueWait),
	)
	if err := log.Handler().Handle(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func accessOut(t *testing.T, format string, r *AccessRecord) string {
	t.Helper()
	var buf bytes.Buffer
	a, err := NewAccess(&buf, format)
	if err != nil {
		t.Fatal(err)
	}
	a.Log(r)
	return buf.String()
}

// randomString mixes what clients send: plain keys, spaces, quotes, '=', controls,
// percent signs, multi-byte and invalid UTF-8, U+2028, and the empty string.
func randomString(rng *rand.Rand) string {
	pieces := []string{"", "a", "testing", " ", "=", `"`, `\`, "%", "%41", "\n", "\r", "\t", "\x00", "\x7f",
		"\x1b[31m", "é", "µ", "日本", "\u2028", "\u2029", "\xff", "\xc3", "\u00a0", "<>&", "\U0001F984", "?input="}
	var b strings.Builder
	for range rng.IntN(6) {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return b.String()
}

func randomDuration(rng *rand.Rand) time.Duration {
	switch rng.IntN(6) {
	case 0:
		return 0
	case 1:
		return time.Duration(rng.IntN(1000)) // ns
	case 2:
		return time.Duration(rng.IntN(1_000_000)) // µs
	case 3:
		return time.Duration(rng.IntN(1_000_000_000)) // ms
	case 4:
		return time.Duration(rng.Int64N(int64(100 * time.Hour)))
	}
	return time.Duration(rng.Int64N(1000) * int64(time.Millisecond)) // round values
}

// TestAccessLineIsSlogsLine holds Access to the exact bytes slog's handlers write,
// in both formats, for thousands of records with hostile values.
func TestAccessLineIsSlogsLine(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	zones := []*time.Location{time.UTC, time.FixedZone("X", 5*3600+1800), time.FixedZone("Y", -8*3600)}
	for _, format := range []string{"logfmt", "json"} {
		for i := range 3000 {
			r := &AccessRecord{
				Time:      time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).In(zones[i%len(zones)]),
				Client:    randomString(rng),
				Method:    randomString(rng),
				Path:      randomString(rng),
				Key:       randomString(rng),
				Status:    []int{200, 304, 400, 403, 404, 405, 499, 503, 0, -1}[rng.IntN(10)],
				Bytes:     rng.IntN(100000) - 10,
				Duration:  randomDuration(rng),
				Cache:     []string{"", "HIT", "MISS", "SHARED"}[rng.IntN(4)],
				QueueWait: randomDuration(rng),
			}
			if want, got := slogLine(t, format, r), accessOut(t, format, r); got != want {
				t.Fatalf("%s record %d: %+v\nAccess wrote: %q\nslog wrote:   %q", format, i, r, got, want)
			}
		}
	}
}

// TestAccessTimeWithinOneSecond exercises the once-a-second clock: lines in the same
// second, in changing zones, and across second boundaries keep slog's times.
func TestAccessTimeWithinOneSecond(t *testing.T) {
	base := time.Date(2026, 11, 29, 16, 1, 2, 0, time.UTC)
	zone := time.FixedZone("Z1", 3600)
	offsets := []time.Duration{0, 1, 10, 999, time.Microsecond, 100 * time.Millisecond, 120 * time.Millisecond,
		999_999_999, time.Second, time.Second + 5*time.Millisecond, -1, 61 * time.Second}
	for _, format := range []string{"logfmt", "json"} {
		var buf bytes.Buffer
		a, _ := NewAccess(&buf, format)
		for i, off := range offsets {
			for _, loc := range []*time.Location{time.UTC, time.UTC, zone, time.UTC} {
				r := &AccessRecord{Time: base.Add(off).In(loc), Key: "k", Status: 200}
				buf.Reset()
				a.Log(r)
				if want := slogLine(t, format, r); buf.String() != want {
					t.Fatalf("%s offset %d (%v) in %v:\nAccess wrote: %q\nslog wrote:   %q", format, i, off, loc, buf.String(), want)
				}
			}
		}
	}
}

func TestAppendDurationIsDurationString(t *testing.T) {
	ds := []time.Duration{0, 1, -1, 999, 1000, 1001, 1500, 999_999, time.Millisecond, 1_234_567, time.Second,
		time.Second + 1, 59 * time.Second, time.Minute, time.Hour, time.Hour + time.Second, 100*time.Hour + 5,
		-time.Hour, math.MaxInt64, math.MinInt64, math.MinInt64 + 1}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		ds = append(ds, randomDuration(rng), -randomDuration(rng), time.Duration(rng.Int64()))
	}
	for _, d := range ds {
		if got, want := string(appendDuration(nil, d)), d.String(); got != want {
			t.Fatalf("appendDuration(%d) = %q, want %q", int64(d), got, want)
		}
	}
}

func TestNewAccessRefusesAnUnknownFormat(t *testing.T) {
	if _, err := NewAccess(io.Discard, "xml"); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), `"xml"`) {
		t.Fatalf("NewAccess(xml) = %v, want ErrFormat naming the format", err)
	}
}

// TestAccessWritesEachLineInOneWrite: an Async keeps each Write whole, so a line
// must arrive in one piece.
func TestAccessWritesEachLineInOneWrite(t *testing.T) {
	var w countingWriter
	a, err := NewAccess(&w, "logfmt")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		a.Log(&AccessRecord{Time: time.Now(), Key: strings.Repeat("k", 10000)})
	}
	if w.writes != 3 || w.lines != 3 {
		t.Fatalf("3 lines took %d writes holding %d newlines", w.writes, w.lines)
	}
}

type countingWriter struct{ writes, lines int }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	w.lines += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

func BenchmarkAccessLog(b *testing.B) {
	r := &AccessRecord{Time: time.Now(), Client: "127.0.0.1:54321", Method: "GET", Path: "/calc?input=testing",
		Key: "testing", Status: 200, Bytes: 244, Duration: 12345 * time.Nanosecond, Cache: "HIT"}
	b.Run("Access", func(b *testing.B) {
		a, _ := NewAccess(io.Discard, "logfmt")
		b.ReportAllocs()
		for b.Loop() {
			a.Log(r)
		}
	})
	b.Run("slog", func(b *testing.B) {
		log, _ := New(io.Discard, "logfmt")
		b.ReportAllocs()
		for b.Loop() {
			log.LogAttrs(context.Background(), slog.LevelInfo, "access",
				slog.String("client", r.Client), slog.String("method", EscapeKey(r.Method)),
				slog.String("path", EscapeURI(r.Path)), slog.String("key", EscapeKey(r.Key)),
				slog.Int("status", r.Status), slog.Int("bytes", r.Bytes), slog.Duration("duration", r.Duration),
				slog.String("cache", r.Cache), slog.Duration("queue_wait", r.QueueWait))
		}
	})
}
