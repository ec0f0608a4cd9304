package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// errorsOf flattens err into its *Error parts, looking through errors.Join.
func errorsOf(t *testing.T, err error) []*Error {
	t.Helper()
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*Error
		for _, e := range j.Unwrap() {
			out = append(out, errorsOf(t, e)...)
		}
		return out
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *Error", err, err)
	}
	return []*Error{e}
}

// mustParse parses text and fails the test on any error.
func mustParse(t *testing.T, text string) Config {
	t.Helper()
	c, err := Parse("server.ini", []byte(text))
	if err != nil {
		t.Fatalf("Parse(%q): %v", text, err)
	}
	return c
}

func TestDefault(t *testing.T) {
	c := Default()
	want := map[string]string{
		"Port": "80", "Cores": "1", "QueueSize": "5", "WorkTime": "4s", "WorkMode": "burn",
		"CalcVersion": "1", "ResponseFormat": "token", "MemoryCacheSize": "100000",
		"CacheTTL": "0s", "CacheTimeout": "100ms", "CacheOrder": "", "MysqlTable": "unicorntable",
		"MysqlCreateTable": "false", "MysqlTLS": "", "RedisDB": "0", "LogFormat": "logfmt",
		"ShutdownDelay": "0s", "ShutdownTimeout": "30s", "PprofAddr": "", "LogLocation": "",
		"PgsqlPort": "", "MongoDbEnableSSL": "false", "PgsqlSSLMode": "prefer", "PgsqlCreateTable": "false",
		"DynamoTable": "", "DynamoCreateTable": "false", "AwsRegion": "",
	}
	got := make(map[string]string)
	for _, e := range c.Entries() {
		got[e.Key] = e.Value
	}
	for k, v := range want {
		t.Run(k+" has its documented default", func(t *testing.T) {
			if got[k] != v {
				t.Errorf("%s = %q, want %q", k, got[k], v)
			}
		})
	}
	t.Run("the defaults are valid", func(t *testing.T) {
		if err := c.Validate(); err != nil {
			t.Error(err)
		}
	})
	t.Run("the defaults come from no file", func(t *testing.T) {
		if c.Source != "" {
			t.Errorf("Source = %q", c.Source)
		}
	})
	t.Run("an empty file gives the defaults", func(t *testing.T) {
		p := mustParse(t, "")
		p.Source = ""
		if p.lines != nil {
			t.Errorf("an empty file recorded lines %v", p.lines)
		}
		if !reflect.DeepEqual(p, c) {
			t.Errorf("Parse(\"\") = %+v, want %+v", p, c)
		}
	})
}

func TestParseContestFiles(t *testing.T) {
	server, err := os.ReadFile("../../testdata/contest-server.ini")
	if err != nil {
		t.Fatal(err)
	}
	day1, err := os.ReadFile("../../testdata/day1-crlf.ini")
	if err != nil {
		t.Fatal(err)
	}
	// The CRLF file is only a test of CRLF while git leaves it alone
	// (.gitattributes marks *.ini -text).
	if !bytes.Contains(day1, []byte("\r\n")) {
		t.Fatal("testdata/day1-crlf.ini has lost its CRLF line endings")
	}
	bom := []byte(utf8BOM)
	crlf := bytes.ReplaceAll(server, []byte("\n"), []byte("\r\n"))

	serverChecks := func(t *testing.T, c Config) {
		t.Helper()
		checks := []struct {
			name      string
			got, want any
		}{
			{"LogLocation", c.LogLocation, "./"},
			{"FsPath", c.FsPath, "/mnt/efs"},
			{"PgsqlPort", c.PgsqlPort, 5432},
			{"PgsqlTable", c.PgsqlTable, "unicorntable"},
			{"MysqlPass", c.MysqlPass, "Unic0rn!"},
			{"MysqlPort", c.MysqlPort, 3306},
			{"MongoDbPort", c.MongoDbPort, 27017},
			{"MongoDbEnableSSL", c.MongoDbEnableSSL, false},
			{"MongoDbCAFilePath", c.MongoDbCAFilePath, "rds-combined-ca-bundle.pem"},
			{"RedisHost", c.RedisHost, "localhost"},
			{"RedisPort", c.RedisPort, 6379},
			{"MemcachePort", c.MemcachePort, 11211},
			{"AwsRegion", c.AwsRegion, "us-east-1"},
			{"Port", c.Port, 80},
		}
		for _, ch := range checks {
			if ch.got != ch.want {
				t.Errorf("%s = %#v, want %#v", ch.name, ch.got, ch.want)
			}
		}
	}
	day1Checks := func(t *testing.T, c Config) {
		t.Helper()
		if c.LogLocation != "./" || c.PgsqlHost != "localhost" || c.PgsqlPort != 5432 ||
			c.PgsqlPass != "unicorndb" || c.PgsqlTable != "unicorntable" {
			t.Errorf("got %+v", c)
		}
		// A "\r" left on a value would break every later use of it.
		for _, e := range c.entries(false) {
			if strings.ContainsAny(e.Value, "\r\n") {
				t.Errorf("%s = %q keeps a line ending", e.Key, e.Value)
			}
		}
	}
	tests := map[string]struct {
		data  []byte
		check func(*testing.T, Config)
	}{
		"the contest server.ini parses":              {server, serverChecks},
		"the contest server.ini parses with a BOM":   {append(bom, server...), serverChecks},
		"the contest server.ini parses with CRLF":    {crlf, serverChecks},
		"the day-1 CRLF file parses":                 {day1, day1Checks},
		"the day-1 CRLF file parses with a BOM":      {append(bom, day1...), day1Checks},
		"a file with two BOMs parses as ini.v1 does": {append(append(bom, bom...), day1...), day1Checks},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := Parse("server.ini", tt.data)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestParseSyntax(t *testing.T) {
	tests := map[string]struct {
		text  string
		check func(Config) bool
	}{
		"a quoted key takes a quoted value": {`"LogLocation" = "/var/log/"`,
			func(c Config) bool { return c.LogLocation == "/var/log/" }},
		"a bare key takes a bare value": {"Port = 8080",
			func(c Config) bool { return c.Port == 8080 }},
		"a quoted key takes a bare value": {`"MongoDbEnableSSL" = true`,
			func(c Config) bool { return c.MongoDbEnableSSL }},
		"a bare key takes a quoted value": {`WorkTime = "250ms"`,
			func(c Config) bool { return c.WorkTime == 250*time.Millisecond }},
		"a backquoted key is read like a quoted one": {"`Cores` = 4",
			func(c Config) bool { return c.Cores == 4 }},
		"a single-quoted value may hold a double quote": {`MysqlPass = 'pa"ss'`,
			func(c Config) bool { return c.MysqlPass == `pa"ss` }},
		"a backquoted value may hold both quotes": {"MysqlPass = `p'a\"ss`",
			func(c Config) bool { return c.MysqlPass == `p'a"ss` }},
		"a quoted value keeps # and ; and inner spaces": {`MysqlPass = " a#b;c " # note`,
			func(c Config) bool { return c.MysqlPass == " a#b;c " }},
		"a bare value keeps # with no space before it": {"MysqlPass = p#ss;x",
			func(c Config) bool { return c.MysqlPass == "p#ss;x" }},
		"a comment after a bare value is dropped": {"Cores = 2 # two cores\nQueueSize = 7 ; seven",
			func(c Config) bool { return c.Cores == 2 && c.QueueSize == 7 }},
		"an empty value unsets a string": {`"RedisHost" = ""` + "\nMemcacheHost =",
			func(c Config) bool { return c.RedisHost == "" && c.MemcacheHost == "" }},
		"an empty port key is unset": {`"RedisPort" = ""`,
			func(c Config) bool { return c.RedisPort == 0 }},
		"keys match case-insensitively": {"port = 81\nWORKMODE = Sleep",
			func(c Config) bool { return c.Port == 81 && c.WorkMode == "sleep" }},
		"comments, blank lines and indentation are ignored": {"# a\n; b\n\n   \t\n  Port = 82\n\t# c",
			func(c Config) bool { return c.Port == 82 }},
		"booleans are accepted in any case": {"MongoDbEnableSSL = TRUE\nRedisTLS = True\nMysqlCreateTable = FALSE",
			func(c Config) bool { return c.MongoDbEnableSSL && c.RedisTLS && !c.MysqlCreateTable }},
		"a bare zero is a zero duration": {"CacheTTL = 0\nShutdownDelay = 2s",
			func(c Config) bool { return c.CacheTTL == 0 && c.ShutdownDelay == 2*time.Second }},
		"the last line needs no newline": {"Cores = 3",
			func(c Config) bool { return c.Cores == 3 }},
		"CRLF endings are stripped from bare values": {"Cores = 3\r\nLogFormat = json\r\n",
			func(c Config) bool { return c.Cores == 3 && c.LogFormat == "json" }},
		"lists are split on commas and trimmed": {"RedisAddrs = a:6379, b:6380 ,\nCacheOrder = Memory,redis",
			func(c Config) bool {
				return reflect.DeepEqual(c.RedisAddrs, []string{"a:6379", "b:6380"}) &&
					reflect.DeepEqual(c.CacheOrder, []string{"memory", "redis"})
			}},
		"MysqlTLS false means off": {"MysqlTLS = false",
			func(c Config) bool { return c.MysqlTLS == "" }},
		"MysqlTLS skip-verify is kept": {"MysqlTLS = Skip-Verify",
			func(c Config) bool { return c.MysqlTLS == "skip-verify" }},
		"PprofAddr may omit the host": {"PprofAddr = :6060",
			func(c Config) bool { return c.PprofAddr == ":6060" }},
		"Port 0 asks for any free port": {"Port = 0",
			func(c Config) bool { return c.Port == 0 }},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c := mustParse(t, tt.text)
			if !tt.check(c) {
				t.Errorf("Parse(%q) = %+v", tt.text, c)
			}
			if c.Source != "server.ini" {
				t.Errorf("Source = %q", c.Source)
			}
		})
	}
}

func TestParseUnknownKey(t *testing.T) {
	tests := map[string]struct {
		text     string
		line     int
		key      string
		suggest  string
		rendered string
	}{
		"a transposed key suggests the real one": {"# c\nCores = 1\nProt = 80\n", 3, "Prot", "Port",
			`server.ini:3: unknown key "Prot" (did you mean "Port"?)`},
		"a quoted misspelt key suggests the real one": {`"LogLocaton" = "./"`, 1, "LogLocaton", "LogLocation",
			`server.ini:1: unknown key "LogLocaton" (did you mean "LogLocation"?)`},
		"a misspelt key in another case suggests the real one": {"mysqlpasword = x", 1, "mysqlpasword", "MysqlPass",
			`server.ini:1: unknown key "mysqlpasword" (did you mean "MysqlPass"?)`},
		"an unrelated key suggests nothing": {"\n\nZzzzzz = 1", 3, "Zzzzzz", "",
			`server.ini:3: unknown key "Zzzzzz"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("server.ini", []byte(tt.text))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not a *Error", err)
			}
			if e.Line != tt.line || e.Key != tt.key || e.Suggest != tt.suggest || e.File != "server.ini" {
				t.Errorf("got %#v", e)
			}
			if err.Error() != tt.rendered {
				t.Errorf("message %q, want %q", err.Error(), tt.rendered)
			}
		})
	}
}

func TestParseBadValues(t *testing.T) {
	// Each case puts the bad line at line 5 behind valid lines, and names
	// what the message must contain beyond "server.ini:5:", the key and the
	// quoted value.
	const head = "# head\n\"LogLocation\" = \"./\"\n\"AwsRegion\" = \"us-east-1\"\n\n"
	tests := map[string]struct {
		line, key, value string
		allowed          []string
	}{
		"an unknown work mode lists both modes":  {`WorkMode = "fast"`, "WorkMode", "fast", []string{"must be burn or sleep"}},
		"yes is not a boolean":                   {"RedisTLS = yes", "RedisTLS", "yes", []string{"true or false"}},
		"1 is not a boolean":                     {`"MongoDbEnableSSL" = 1`, "MongoDbEnableSSL", "1", []string{"true or false"}},
		"a port key outside 1..65535 is refused": {`"PgsqlPort" = "70000"`, "PgsqlPort", "70000", []string{"1 to 65535"}},
		"a port key must be a number":            {`"MysqlPort" = "mysql"`, "MysqlPort", "mysql", []string{"1 to 65535"}},
		"zero cores are refused":                 {"Cores = 0", "Cores", "0", []string{"1 to 1024"}},
		"a hex number is refused":                {"QueueSize = 0x10", "QueueSize", "0x10", []string{"0 to 100000"}},
		"a duration needs a unit":                {"WorkTime = 4", "WorkTime", "4", []string{"4s", "at most 1h"}},
		"a work time above an hour is refused":   {"WorkTime = 2h", "WorkTime", "2h", []string{"more than 0 and at most 1h"}},
		"a negative TTL is refused":              {"CacheTTL = -1s", "CacheTTL", "-1s", []string{"0 or more"}},
		"a zero cache timeout is refused":        {"CacheTimeout = 0", "CacheTimeout", "0", []string{"more than 0"}},
		"RedisDB above 15 is refused":            {"RedisDB = 16", "RedisDB", "16", []string{"0 to 15"}},
		"a table name must be an identifier":     {"MysqlTable = unicorn;drop", "MysqlTable", "unicorn;drop", []string{"SQL identifier"}},
		"an unknown TLS mode lists the choices":  {"MysqlTLS = on", "MysqlTLS", "on", []string{"false, true, skip-verify or preferred"}},
		"an unknown SSL mode lists libpq's modes": {"PgsqlSSLMode = on", "PgsqlSSLMode", "on",
			[]string{"disable, allow, prefer, require, verify-ca or verify-full"}},
		"a misspelt SSL mode suggests the real one": {"PgsqlSSLMode = requre", "PgsqlSSLMode", "requre", []string{`did you mean "require"`}},
		"a DynamoDB table name needs 3 characters":  {"DynamoTable = ab", "DynamoTable", "ab", []string{"3 to 255 characters"}},
		"a DynamoDB table name has no slash":        {"DynamoTable = unicorn/cache", "DynamoTable", "unicorn/cache", []string{"a-z, A-Z, 0-9, _, - and ."}},
		"an unknown cache backend is refused":       {"CacheOrder = memory,redsi", "CacheOrder", "memory,redsi", []string{`"redsi"`, "memcached", `did you mean "redis"`}},
		"a cache backend listed twice is refused":   {"CacheOrder = redis,memory,Redis", "CacheOrder", "redis,memory,Redis", []string{`"redis" is listed twice`}},
		"a server without a port is refused":        {"MemcacheServers = a:11211,b", "MemcacheServers", "a:11211,b", []string{`"b"`, "host:port"}},
		"a server without a host is refused":        {"RedisAddrs = :6379", "RedisAddrs", ":6379", []string{"host"}},
		"a pprof port out of range is refused":      {"PprofAddr = localhost:65536", "PprofAddr", "localhost:65536", []string{"0 (any free port) to 65535"}},
		"an empty response format is refused":       {`ResponseFormat = ""`, "ResponseFormat", "", []string{"token or hash"}},
		"a log format in another style is refused":  {"LogFormat = text", "LogFormat", "text", []string{"logfmt or json"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("server.ini", []byte(head+tt.line+"\nPort = 80\n"))
			errs := errorsOf(t, err)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(errs), err)
			}
			e := errs[0]
			if e.Line != 5 || e.Key != tt.key || e.Value != tt.value {
				t.Errorf("got %#v", e)
			}
			msg := err.Error()
			for _, want := range append([]string{"server.ini:5: ", tt.key + ` = "` + tt.value + `": `}, tt.allowed...) {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q lacks %q", msg, want)
				}
			}
		})
	}
	t.Run("the work mode message is exactly as documented", func(t *testing.T) {
		_, err := Parse("server.ini", []byte(head+`WorkMode = "fast"`))
		if want := `server.ini:5: WorkMode = "fast": must be burn or sleep`; err == nil || err.Error() != want {
			t.Errorf("got %v, want %s", err, want)
		}
	})
}

func TestParseLineErrors(t *testing.T) {
	tests := map[string]struct {
		text string
		line int
		msg  string
	}{
		"a section header is refused":                    {"Port = 80\n[redis]\nRedisHost = x", 2, `section header "[redis]"`},
		"a value with no closing quote is refused":       {"Port = 80\n\"LogLocation\" = \"./\n", 2, "no closing quote"},
		"a key with no closing quote is refused":         {"\"LogLocation = ./", 1, "no closing quote"},
		"a line with no = is refused":                    {"Port 80", 1, `no "="`},
		"a line with no key is refused":                  {" = 80", 1, "missing key name"},
		"an empty quoted key is refused":                 {`"" = 80`, 1, "empty key name"},
		"text after a closing quote is refused":          {`LogLocation = "./" x`, 1, "after the closing quote"},
		"a comment glued to a closing quote is refused":  {`LogLocation = "./"#x`, 1, "after the closing quote"},
		"a triple-quoted value is refused":               {`LogLocation = """./"""`, 1, "after the closing quote"},
		"a multi-line backquoted value is refused":       {"LogLocation = `./\nPort = 80", 1, "no closing quote"},
		"a backslash before a closing quote is refused":  {`MysqlPass = "a\"`, 1, "backslash"},
		"a value that is only a comment is refused":      {"RedisHost = # none", 1, "comment character"},
		"text between a quoted key and = is refused":     {`"Port" x = 80`, 1, "between the quoted key"},
		"a line that is not UTF-8 is refused":            {"LogLocation = \xff\xfe", 1, "UTF-8"},
		"a UTF-16 file is refused":                       {"\xff\xfeP\x00", 1, "UTF-16"},
		"a colon is not a key-value delimiter":           {"Port: 80", 1, `no "="`},
		"a duplicate key names both lines":               {"Port = 80\nCores = 1\nPort = 81", 3, `duplicate key "Port": already set on line 1`},
		"a duplicate key in another case is refused":     {"\"RedisHost\" = \"a\"\nredishost = b", 2, `duplicate key "redishost": already set on line 1`},
		"a duplicate key with the same value is refused": {"Cores = 1\nCores = 1", 2, "already set on line 1"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("server.ini", []byte(tt.text))
			errs := errorsOf(t, err)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(errs), err)
			}
			if errs[0].Line != tt.line || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %q (line %d), want line %d and %q", err, errs[0].Line, tt.line, tt.msg)
			}
		})
	}
}

func TestParseDenyPattern(t *testing.T) {
	tests := map[string]struct {
		text string
		want []string
	}{
		"a single pattern is kept":         {"DenyPattern = H@XX0RR333DDD", []string{"H@XX0RR333DDD"}},
		"comma-separated patterns split":   {`DenyPattern = "a, b,,c,"`, []string{"a", "b", "c"}},
		"repeated keys add their patterns": {"DenyPattern = a\nPort = 80\ndenypattern = b,c\n\"DenyPattern\" = \"d\"", []string{"a", "b", "c", "d"}},
		"an empty pattern adds nothing":    {"DenyPattern = \nDenyPattern = ,", nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := mustParse(t, tt.text).DenyPattern; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DenyPattern = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseReportsEveryBadLine(t *testing.T) {
	text := strings.Join([]string{
		"Prot = 80",         // 1: unknown key
		"Cores = 2",         // 2: fine
		"[section]",         // 3: section
		"WorkMode = fast",   // 4: bad value
		"Cores = 3",         // 5: duplicate
		`LogLocation = "./`, // 6: unterminated quote
		"RedisTLS = yes",    // 7: bad value
	}, "\n")
	c, err := Parse("server.ini", []byte(text))
	errs := errorsOf(t, err)
	var lines []int
	for _, e := range errs {
		lines = append(lines, e.Line)
	}
	if want := []int{1, 3, 4, 5, 6, 7}; !reflect.DeepEqual(lines, want) {
		t.Errorf("error lines %v, want %v; errors:\n%v", lines, want, err)
	}
	if !reflect.DeepEqual(c, Config{}) {
		t.Errorf("a failed Parse returned %+v, want the zero Config", c)
	}
	t.Run("a flood of bad lines is cut short", func(t *testing.T) {
		_, err := Parse("server.ini", []byte(strings.Repeat("x\n", 500)))
		errs := errorsOf(t, err)
		if len(errs) != maxErrors+1 || !strings.Contains(errs[maxErrors].Msg, "450 more") {
			t.Errorf("got %d errors, last %v", len(errs), errs[len(errs)-1])
		}
	})
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	t.Run("a contest file loads and names its source", func(t *testing.T) {
		path := "../../testdata/contest-server.ini"
		c, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if c.Source != path || c.MysqlPass != "Unic0rn!" {
			t.Errorf("Source %q, MysqlPass %q", c.Source, c.MysqlPass)
		}
	})
	t.Run("a missing file is an error naming the path", func(t *testing.T) {
		path := filepath.Join(dir, "nope.ini")
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("errors in a loaded file name the path", func(t *testing.T) {
		path := filepath.Join(dir, "bad.ini")
		if err := os.WriteFile(path, []byte("Port = 80\nProt = 81\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("a huge file is refused", func(t *testing.T) {
		path := filepath.Join(dir, "huge.ini")
		if err := os.WriteFile(path, bytes.Repeat([]byte("# \n"), maxFileSize), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("got %v", err)
		}
	})
}

func TestErrorString(t *testing.T) {
	tests := map[string]struct {
		e    Error
		want string
	}{
		"every part":               {Error{File: "f", Line: 2, Key: "K", Value: "v", Msg: "bad", Suggest: "X"}, `f:2: K = "v": bad (did you mean "X"?)`},
		"no line":                  {Error{File: "f", Key: "K", Value: "v", Msg: "bad"}, `f: K = "v": bad`},
		"no file":                  {Error{Line: 3, Msg: "bad"}, "line 3: bad"},
		"a key named in the msg":   {Error{File: "f", Line: 1, Key: "K", Msg: `unknown key "K"`}, `f:1: unknown key "K"`},
		"an empty value is shown":  {Error{Key: "K", Msg: "must be set"}, `K = "": must be set`},
		"no message at all":        {Error{}, "invalid"},
		"a value is quoted safely": {Error{Key: "K", Value: "a\"\x00", Msg: "bad"}, `K = "a\"\x00": bad`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tt.e.Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestParsePartialKeepsTheLinesThatRead: with bad lines, ParsePartial returns the
// Config of the others and names the keys of the bad ones; Parse returns none.
func TestParsePartialKeepsTheLinesThatRead(t *testing.T) {
	text := "Cores = 3\nRedisTLS = yes\nCacheOrder = memory,redis\nPort = 99999\n"
	c, bad, err := ParsePartial("server.ini", []byte(text))
	if len(errorsOf(t, err)) != 2 {
		t.Fatalf("errors: %v", err)
	}
	if c.Cores != 3 || !reflect.DeepEqual(c.CacheOrder, []string{"memory", "redis"}) || c.Port != Default().Port {
		t.Errorf("partial Config: Cores %d, CacheOrder %v, Port %d", c.Cores, c.CacheOrder, c.Port)
	}
	if !reflect.DeepEqual(bad, map[string]bool{"RedisTLS": true, "Port": true}) {
		t.Errorf("bad keys %v, want RedisTLS and Port", bad)
	}
	if full, err := Parse("server.ini", []byte(text)); err == nil || !reflect.DeepEqual(full, Config{}) {
		t.Errorf("Parse = %+v, %v; want the zero Config and the errors", full, err)
	}
}
