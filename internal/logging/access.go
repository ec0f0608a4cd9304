package logging

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// AccessRecord is one request as the access log records it. Method, Path and Key are
// the raw request values: the access log escapes them (EscapeKey, EscapeURI).
type AccessRecord struct {
	Time      time.Time
	Client    string
	Method    string
	Path      string // the request URI
	Key       string
	Status    int
	Bytes     int
	Duration  time.Duration
	Cache     string
	QueueWait time.Duration
}

// Access writes access lines: "msg=access" records, byte for byte what the logger New
// returns for the same format writes for
//
//	log.LogAttrs(ctx, slog.LevelInfo, "access", slog.String("client", …), …)
//
// with the fields of AccessRecord in order, but without slog's generic machinery (a
// record, its attributes and the handler's lock): on a cache hit that machinery cost
// as much as the rest of the handler. Each line reaches the writer in one Write.
type Access struct {
	w     io.Writer
	json  bool
	bufs  sync.Pool
	clock atomic.Pointer[second] // the last second formatted
}

// second is a formatted time up to its whole second, and its zone: every line of
// that second only adds its fraction, instead of formatting the date again.
type second struct {
	unix   int64
	loc    *time.Location
	prefix []byte // "2006-01-02T15:04:05"
	zone   []byte // "Z" or "-07:00"
}

// NewAccess returns an Access writing format ("logfmt" or "json", as New) to w.
func NewAccess(w io.Writer, format string) (*Access, error) {
	switch format {
	case "", "logfmt":
		return newAccess(w, false), nil
	case "json":
		return newAccess(w, true), nil
	}
	return nil, fmt.Errorf("%w %q (allowed: logfmt, json)", ErrFormat, format)
}

func newAccess(w io.Writer, json bool) *Access {
	a := &Access{w: w, json: json}
	a.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
	return a
}

// Log writes r's line.
func (a *Access) Log(r *AccessRecord) {
	bp := a.bufs.Get().(*[]byte)
	var b []byte
	if a.json {
		b = a.appendJSON((*bp)[:0], r)
	} else {
		b = a.appendText((*bp)[:0], r)
	}
	_, _ = a.w.Write(b)
	if cap(b) <= 4<<10 { // a huge line (a long key) is not kept for every request
		*bp = b
		a.bufs.Put(bp)
	}
}

func (a *Access) appendText(b []byte, r *AccessRecord) []byte {
	b = append(b, "time="...)
	b = a.appendTime(b, r.Time, false)
	b = append(b, " level=INFO msg=access client="...)
	b = appendTextString(b, r.Client)
	b = append(b, " method="...)
	b = appendEscaped(b, EscapeKey(r.Method))
	b = append(b, " path="...)
	b = appendEscaped(b, EscapeURI(r.Path))
	b = append(b, " key="...)
	b = appendEscaped(b, EscapeKey(r.Key))
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, " bytes="...)
	b = strconv.AppendInt(b, int64(r.Bytes), 10)
	b = append(b, " duration="...)
	b = appendDuration(b, r.Duration)
	b = append(b, " cache="...)
	b = appendTextString(b, r.Cache)
	b = append(b, " queue_wait="...)
	b = appendDuration(b, r.QueueWait)
	return append(b, '\n')
}

func (a *Access) appendJSON(b []byte, r *AccessRecord) []byte {
	b = append(b, `{"time":"`...)
	b = a.appendTime(b, r.Time, true)
	b = append(b, `","level":"INFO","msg":"access","client":"`...)
	b = appendJSONString(b, r.Client)
	b = append(b, `","method":"`...)
	b = appendJSONString(b, EscapeKey(r.Method))
	b = append(b, `","path":"`...)
	b = appendJSONString(b, EscapeURI(r.Path))
	b = append(b, `","key":"`...)
	b = appendJSONString(b, EscapeKey(r.Key))
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, int64(r.Bytes), 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, int64(r.Duration), 10)
	b = append(b, `,"cache":"`...)
	b = appendJSONString(b, r.Cache)
	b = append(b, `","queue_wait":`...)
	b = strconv.AppendInt(b, int64(r.QueueWait), 10)
	return append(b, "}\n"...)
}

// appendTime appends t as slog's handlers write it: RFC 3339 with the fraction
// truncated to exactly three digits (text), or time.RFC3339Nano (JSON: the fraction's
// trailing zeros dropped). The date, clock and zone are formatted once a second.
func (a *Access) appendTime(b []byte, t time.Time, nano bool) []byte {
	if y := t.Year(); y < 0 || y >= 10000 {
		// Years RFC 3339 cannot hold: as slog writes them, rarely enough to skip the cache.
		if nano {
			return t.AppendFormat(b, time.RFC3339Nano)
		}
		return appendRFC3339Millis(b, t)
	}
	sec := a.clock.Load()
	if sec == nil || sec.unix != t.Unix() || sec.loc != t.Location() {
		f := t.Truncate(time.Second).AppendFormat(nil, time.RFC3339)
		const n = len("2006-01-02T15:04:05")
		sec = &second{unix: t.Unix(), loc: t.Location(), prefix: f[:n], zone: f[n:]}
		a.clock.Store(sec)
	}
	b = append(b, sec.prefix...)
	ns := t.Nanosecond()
	if nano {
		if ns != 0 {
			b = append(b, '.')
			digits := 9
			for ns%10 == 0 {
				ns /= 10
				digits--
			}
			b = appendPadded(b, ns, digits)
		}
	} else {
		b = appendPadded(append(b, '.'), ns/int(time.Millisecond), 3)
	}
	return append(b, sec.zone...)
}

// appendPadded appends v in width digits, zero-padded.
func appendPadded(b []byte, v, width int) []byte {
	var d [9]byte
	for i := width - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, d[:width]...)
}

// appendRFC3339Millis is the text handler's time: RFC 3339 truncated to milliseconds,
// always three digits.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...) // drop the fourth digit
}

// appendDuration appends d as time.Duration.String writes it, without the string.
func appendDuration(b []byte, d time.Duration) []byte {
	u := uint64(d)
	if d < 0 {
		b = append(b, '-')
		u = -u
	}
	if u < uint64(time.Second) {
		// Under a second: one unit, ns, µs or ms, with the fraction trimmed.
		switch {
		case u == 0:
			return append(b, "0s"...)
		case u < uint64(time.Microsecond):
			return append(strconv.AppendUint(b, u, 10), "ns"...)
		case u < uint64(time.Millisecond):
			return append(appendFrac(b, u, 3), "µs"...)
		default:
			return append(appendFrac(b, u, 6), "ms"...)
		}
	}
	// A second or more: [h][m]s.fraction, as 1h2m3.5s.
	secs := u / uint64(time.Second)
	if h := secs / 3600; h > 0 {
		b = append(strconv.AppendUint(b, h, 10), 'h')
	}
	if secs >= 60 {
		b = append(strconv.AppendUint(b, secs/60%60, 10), 'm')
	}
	return append(appendFrac(b, secs%60*uint64(time.Second)+u%uint64(time.Second), 9), 's')
}

// appendFrac appends v / 10^prec with the fraction's trailing zeros (and a bare
// point) dropped.
func appendFrac(b []byte, v uint64, prec int) []byte {
	p := uint64(1)
	for range prec {
		p *= 10
	}
	b = strconv.AppendUint(b, v/p, 10)
	frac := v % p
	if frac == 0 {
		return b
	}
	for frac%10 == 0 {
		frac /= 10
		prec--
	}
	b = append(b, '.')
	var digits [20]byte
	n := len(strconv.AppendUint(digits[:0], frac, 10))
	for range prec - n {
		b = append(b, '0')
	}
	return strconv.AppendUint(b, frac, 10)
}

// appendTextString appends s as the text handler writes a string value: as it is, or
// Go-quoted when it is empty or holds a space, '=', '"', a control or an unprintable
// character.
func appendTextString(b []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

// appendEscaped is appendTextString for a value EscapeKey or EscapeURI returned:
// printable ASCII without a space, '"' or '\\'. It needs quoting only when it is
// empty or holds '=', and then Go's quoting changes nothing inside the quotes.
func appendEscaped(b []byte, s string) []byte {
	if s == "" || strings.IndexByte(s, '=') >= 0 {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	return append(b, s...)
}

func needsQuoting(s string) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c != '\\' && (c == ' ' || c == '=' || !jsonSafe(c)) {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// jsonSafe reports whether an ASCII byte stands for itself inside a JSON string.
func jsonSafe(c byte) bool { return c >= 0x20 && c != '"' && c != '\\' }

// appendJSONString appends s escaped for the inside of a JSON string, as the JSON
// handler escapes it.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe(c) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}
