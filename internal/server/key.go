package server

import (
	"bytes"
	"encoding/base64"
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

// MatchKey reports whether key, or its base64-decoded text when key is valid base64,
// contains one of texts. DenyPattern matches keys this way, and so does
// `calcserver purge`, so that a purge removes what a DenyPattern would refuse.
func MatchKey(key string, texts ...string) bool {
	if len(texts) == 0 {
		return false
	}
	var decoded []byte
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		if d, err := enc.DecodeString(key); err == nil {
			decoded = d
			break
		}
	}
	for _, t := range texts {
		if strings.Contains(key, t) || (decoded != nil && bytes.Contains(decoded, []byte(t))) {
			return true
		}
	}
	return false
}
