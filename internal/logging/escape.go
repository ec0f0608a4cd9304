package logging

import "strings"

// EscapeKey renders a key for a log line: printable ASCII stays, everything else
// (and '%', '"', '\\') is percent-encoded, so a key can never forge a line or a field
// and the original bytes can be recovered with url.PathUnescape.
func EscapeKey(key string) string { return escapeBytes(key, true) }

// EscapeURI renders an already percent-encoded request URI for a log line: it only
// encodes what a client could send raw (control bytes, spaces, quotes, non-ASCII).
func EscapeURI(uri string) string { return escapeBytes(uri, false) }

func needsEscape(c byte, pct bool) bool {
	return c < 0x21 || c > 0x7e || c == '"' || c == '\\' || (c == '%' && pct)
}

func escapeBytes(s string, pct bool) string {
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i], pct) {
			return escapeSlow(s, pct)
		}
	}
	return s
}

func escapeSlow(s string, pct bool) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsEscape(c, pct) {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
