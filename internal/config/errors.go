package config

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is one problem in a configuration: a line that cannot be read, an
// unknown or repeated key, a bad value, or a rule that ties several keys
// together. Every field except Msg may be empty; Error() leaves empty parts out.
type Error struct {
	File    string // the name given to Parse or Load, or Config.Source in Validate
	Line    int    // 1-based line number, 0 when the problem has no single line
	Key     string // the key as written in the file
	Value   string // the offending value (secrets are masked)
	Msg     string // what is wrong and what is allowed
	Suggest string // the nearest known key or value, for a probable typo
}

// Error renders the problem as "file:line: Key = "value": msg (did you mean "X"?)".
// The "Key = value" part is left out when the message already names the key
// (an unknown or duplicate key), so the key is never printed twice.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Key != "" && !strings.Contains(e.Msg, strconv.Quote(e.Key)) {
		b.WriteString(e.Key + " = " + strconv.Quote(e.Value) + ": ")
	}
	if e.Msg == "" {
		b.WriteString("invalid")
	} else {
		b.WriteString(e.Msg)
	}
	if e.Suggest != "" {
		b.WriteString(" (did you mean " + strconv.Quote(e.Suggest) + "?)")
	}
	return b.String()
}

// maxErrors bounds how many problems one Parse reports. A file with hundreds of
// bad lines is almost always the wrong file (a binary, a log), and a screenful
// of identical messages hides that.
const maxErrors = 50

// joinErrors returns nil, the single *Error, or an errors.Join of all of them,
// so that callers can use errors.As in every case and a lone problem prints on
// one line.
func joinErrors(errs []*Error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	list := make([]error, 0, len(errs)+1)
	for i, e := range errs {
		if i == maxErrors {
			list = append(list, &Error{File: e.File, Msg: strconv.Itoa(len(errs)-maxErrors) + " more problems not shown"})
			break
		}
		list = append(list, e)
	}
	return errors.Join(list...)
}

// suggest returns the candidate nearest to name (case-insensitive Levenshtein
// distance), or "" when nothing is close enough to be a plausible typo. Ties go
// to the earliest candidate, so the answer is stable.
func suggest(name string, candidates []string) string {
	// No key or value is anywhere near this long; a longer name is not a
	// typo, and comparing it would cost time for nothing.
	if len(name) > 100 {
		return ""
	}
	best, bestDist := "", -1
	lname := strings.ToLower(name)
	for _, c := range candidates {
		lc := strings.ToLower(c)
		d := levenshtein(lname, lc)
		// On a tie the longer common prefix wins: "MysqlPasword" is nearer
		// to MysqlPass than to MysqlPort, though both are four edits away.
		if bestDist < 0 || d < bestDist ||
			(d == bestDist && commonPrefix(lname, lc) > commonPrefix(lname, strings.ToLower(best))) {
			best, bestDist = c, d
		}
	}
	// Two edits cover a transposition ("Prot") or a missing pair of letters;
	// longer names may drift further (a third of their length) and still be
	// recognisably the same word.
	if bestDist < 0 || bestDist == 0 || (bestDist > 2 && bestDist*3 > utf8.RuneCountInString(name)) {
		return ""
	}
	return best
}

// commonPrefix returns the length in bytes of the common prefix of a and b.
func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// levenshtein returns the edit distance between a and b, counted in runes.
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
