package config

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that the line index and ini.v1
// never disagree, that every error points at a real line, and that a parsed
// file written back from its entries parses to the same Config.
func FuzzParse(f *testing.F) {
	for _, path := range []string{"../../testdata/contest-server.ini", "../../testdata/day1-crlf.ini"} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"\ufeffPort = 80\r\n",
		"Prot = 80",
		`"MysqlPass" = "p#ss;w" # c`,
		"MysqlPass = 'a\"b' ; c",
		"MysqlPass = `a'\"b` # c",
		"DenyPattern = a,b\nDenyPattern = c",
		"[s]\nk = v",
		`"LogLocation" = "./`,
		`MysqlPass = "a\" # x`,
		"CacheOrder = memory,redis\nRedisAddrs = r:1\nWorkTime = 1h\nCacheTTL = 1.5s",
		"Port = 80\nport = 81",
		"MysqlTLS = FALSE\nRedisTLS = True\nMemcacheServers = a:1,,b:2,",
		"- = x\n\"\"\"Port\"\"\" = 1\nPort = \"\"\"1\"\"\"",
		"RedisHost = a \\\nb",
		"MysqlPass = \"a\"\u00a0# c\nLogLocation = '' ;x",
		"\u00a0Port\u0085=\t80\t;c\r\r\n",
		"DenyPattern = \"\\\\a\\b\" # \"q\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.ini", data)
		if err != nil {
			lines := bytes.Count(data, []byte("\n")) + 1
			for _, e := range errorsOf(t, err) {
				if e.Msg == msgMismatch || strings.HasPrefix(e.Msg, msgIniFailed) {
					t.Fatalf("the line index and ini.v1 disagree on %q: %v", data, e)
				}
				if e.File != "fuzz.ini" || e.Line < 0 || e.Line > lines {
					t.Fatalf("error %#v does not point into the %d-line file", e, lines)
				}
				if e.Error() == "" {
					t.Fatal("empty error message")
				}
			}
			if !reflect.DeepEqual(c, Config{}) {
				t.Fatalf("a failed Parse returned %+v", c)
			}
			return
		}

		// Entries masks secrets, so the round trip uses the unmasked form;
		// the masked form is checked separately against it.
		masked, plain := c.Entries(), c.entries(false)
		if len(masked) != len(Keys()) || len(plain) != len(masked) {
			t.Fatalf("Entries has %d items, want %d", len(masked), len(Keys()))
		}
		var text strings.Builder
		for i, e := range plain {
			if masked[i].Key != e.Key || (masked[i].Value != e.Value && masked[i].Value != "****") {
				t.Fatalf("masked entry %v does not match %v", masked[i], e)
			}
			if !quotable(e.Value) {
				return // server.ini has no way to write this value
			}
			text.WriteString(e.String() + "\n")
		}
		again, err := Parse("fuzz.ini", []byte(text.String()))
		if err != nil {
			t.Fatalf("the entries of %q do not parse: %v\n%s", data, err, text.String())
		}
		again.lines, c.lines = nil, nil // the rendered file has its own line numbers
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip changed the config:\nfirst  %+v\nsecond %+v\nfile:\n%s", c, again, text.String())
		}
	})
}
