package server

import (
	"errors"
	"net/url"
	"strings"
)

// MaxKeyLen is the longest key /calc accepts, in bytes after percent-decoding.
const MaxKeyLen = 1024

var (
	errNoKey      = errors.New("missing input: use /calc?input=<key>")
	errLongKey    = errors.New("input is longer than 1024 bytes")
	errBadPercent = errors.New("input is not valid percent-encoding")
)

// inputKey returns the first input parameter of rawQuery, percent-decoded. Unlike
// url.ParseQuery it keeps '+' as '+': keys are base64, and base64 uses '+'.
func inputKey(rawQuery string) (string, error) {
	for rawQuery != "" {
		var part string
		part, rawQuery, _ = strings.Cut(rawQuery, "&")
		name, value, _ := strings.Cut(part, "=")
		if name != "input" {
			if n, err := url.PathUnescape(name); err != nil || n != "input" {
				continue
			}
		}
		if len(value) > 3*MaxKeyLen {
			return "", errLongKey
		}
		key, err := url.PathUnescape(value)
		switch {
		case err != nil:
			return "", errBadPercent
		case key == "":
			return "", errNoKey
		case len(key) > MaxKeyLen:
			return "", errLongKey
		}
		return key, nil
	}
	return "", errNoKey
}

// escape renders a key for a log line: printable ASCII stays, everything else
// (and '%', '"', '\\') is percent-encoded, so a key can never forge a line or a field
// and the original bytes can be recovered with url.PathUnescape.
func escape(key string) string { return escapeBytes(key, true) }

// escapeURI renders an already percent-encoded request URI for a log line: it only
// encodes what a client could send raw (control bytes, spaces, quotes, non-ASCII).
func escapeURI(uri string) string { return escapeBytes(uri, false) }

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
