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
