package config

import (
	"bytes"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file is the line index. gopkg.in/ini.v1 reports no line numbers, keeps
// the last of two duplicate keys silently, and accepts constructs that make no
// sense in a flat server.ini (sections, values running over several lines,
// text after a closing quote). So every line is first read here, with the same
// rules ini.v1 applies, to learn its number, its key and its value, and to
// refuse anything ambiguous; only the lines accepted here reach ini.v1, and
// Parse checks that both readings agree.

// utf8BOM is the byte order mark some Windows editors put at the start of a
// UTF-8 file.
const utf8BOM = "\xef\xbb\xbf"

// pair is one "Key = value" line accepted by the scanner.
type pair struct {
	line  int    // 1-based line number
	key   string // the key as ini.v1 names it: quotes removed, spaces trimmed
	value string // the value as the scanner reads it
}

// stripBOM removes leading UTF-8 byte order marks, as ini.v1 does (an editor
// may have added more than one), and reports a UTF-16 file, which ini.v1 would
// otherwise read as garbage.
func stripBOM(data []byte) ([]byte, string) {
	for bytes.HasPrefix(data, []byte(utf8BOM)) {
		data = data[len(utf8BOM):]
	}
	if bytes.HasPrefix(data, []byte{0xfe, 0xff}) || bytes.HasPrefix(data, []byte{0xff, 0xfe}) {
		return nil, "the file is UTF-16 encoded: save it as UTF-8"
	}
	return data, ""
}

// scanLine reads one line (without its "\n"; a trailing "\r" is tolerated).
// It returns ok=false for a blank or comment line, and msg != "" for a line
// that cannot be accepted.
func scanLine(raw string) (key, value string, ok bool, msg string) {
	t := strings.TrimLeftFunc(raw, unicode.IsSpace)
	if t == "" || t[0] == '#' || t[0] == ';' {
		return "", "", false, ""
	}
	if !utf8.ValidString(raw) {
		return "", "", false, "the line is not valid UTF-8: save the file as UTF-8"
	}
	if t[0] == '[' {
		return "", "", false, "section header " + strconv.Quote(strings.TrimSpace(t)) +
			" is not supported: server.ini is a flat list of Key = value lines"
	}
	key, rest, msg := scanKey(t)
	if msg != "" {
		return "", "", false, msg
	}
	value, msg = scanValue(rest)
	if msg != "" {
		// The message names the key itself, so Error() does not print a
		// "Key = value" part with a value that could not be read.
		return key, "", false, "the value of " + strconv.Quote(key) + " " + msg
	}
	return key, value, true, ""
}

// scanKey splits a left-trimmed line into the key name and the text after "=".
// Keys may be bare or enclosed in double quotes or backquotes, as ini.v1 allows.
func scanKey(t string) (key, rest, msg string) {
	if t[0] == '"' || t[0] == '`' {
		q := t[0]
		end := strings.IndexByte(t[1:], q)
		if end < 0 {
			return "", "", "the key has an opening quote but no closing quote"
		}
		end++
		name := strings.TrimSpace(t[1:end])
		after := t[end+1:]
		eq := strings.IndexByte(after, '=')
		if eq < 0 {
			return "", "", "expected Key = value, found no \"=\" after the key"
		}
		// ini.v1 would skip any text between the closing quote and "=", and
		// reads a key starting with three quotes differently; both are refused.
		if strings.TrimSpace(after[:eq]) != "" {
			return "", "", "unexpected text between the quoted key and \"=\""
		}
		if name == "" {
			return "", "", "empty key name"
		}
		return name, after[eq+1:], ""
	}
	eq := strings.IndexByte(t, '=')
	if eq < 0 {
		return "", "", "expected Key = value, found no \"=\""
	}
	name := strings.TrimSpace(t[:eq])
	if name == "" {
		return "", "", "missing key name before \"=\""
	}
	return name, t[eq+1:], ""
}

// scanValue reads the text after "=". Its messages complete the phrase "the
// value of Key ...". A value is bare, or enclosed in double
// quotes, single quotes or backquotes; a quoted value may hold "#" and ";" and
// keeps its inner spaces. A comment may follow a value after a space.
func scanValue(rest string) (string, string) {
	v := strings.TrimFunc(rest, unicode.IsSpace)
	if v == "" {
		return "", ""
	}
	switch q := v[0]; q {
	case '"', '\'', '`':
		end := strings.IndexByte(v[1:], q)
		if end < 0 {
			return "", "has an opening quote but no closing quote"
		}
		end++
		val := v[1:end]
		// ini.v1 takes a backslash before a double quote as an escape, so
		// the quote would not end the value.
		if q == '"' && strings.HasSuffix(val, `\`) {
			return "", "cannot end with a backslash inside double quotes: use single quotes"
		}
		after := v[end+1:]
		if after == "" {
			return val, ""
		}
		// Only a comment may follow, and ini.v1 sees one only after a space.
		c := strings.TrimLeft(after, " \t")
		if (c[0] != '#' && c[0] != ';') || len(c) == len(after) || after[len(after)-len(c)-1] != ' ' {
			return "", "has text after the closing quote (a comment needs a space before # or ;)"
		}
		// ini.v1 ends a backquoted value at the last backquote on the line.
		if q == '`' && strings.IndexByte(c, '`') >= 0 {
			return "", "is backquoted and followed by a comment with a backquote in it"
		}
		return val, ""
	case '#', ';':
		// ini.v1 would take "Key = # note" as the value "# note"; that is far
		// more likely a forgotten value than a wanted one.
		return "", "starts with a comment character: quote it, or leave nothing after \"=\""
	}
	// A bare value ends at the first " #" or " ;", as in ini.v1 with
	// SpaceBeforeInlineComment, so "p#ss" stays whole.
	for i := 1; i < len(v); i++ {
		if (v[i] == '#' || v[i] == ';') && v[i-1] == ' ' {
			return strings.TrimSpace(v[:i]), ""
		}
	}
	return v, ""
}
