// Package sqlname checks the table names the SQL backends write into their
// statements. It imports nothing, so that config can check MysqlTable at its line
// without linking a database driver.
package sqlname

// Rule says what Valid accepts, for messages.
const Rule = "a letter or _, then up to 63 letters, digits or _"

// Valid reports whether s is [A-Za-z_][A-Za-z0-9_]{0,63}: a table name that cannot
// break out of its quotes (backticks, double quotes) in any SQL dialect.
func Valid(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		letter := ch == '_' || ('a' <= ch && ch <= 'z') || ('A' <= ch && ch <= 'Z')
		if !letter && (i == 0 || ch < '0' || ch > '9') {
			return false
		}
	}
	return true
}
