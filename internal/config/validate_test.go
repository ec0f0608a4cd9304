package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := map[string]struct {
		edit func(*Config)
		key  string // the key the single error must name; "" = no error
		msg  string
	}{
		"the defaults pass":                         {func(*Config) {}, "", ""},
		"MySQL with a database passes":              {func(c *Config) { c.MysqlHost, c.MysqlDb = "db", "unicorn" }, "", ""},
		"MySQL without a database fails":            {func(c *Config) { c.MysqlHost = "db" }, "MysqlDb", "must be set when MysqlHost is set"},
		"RedisHost with RedisAddrs fails":           {func(c *Config) { c.RedisHost, c.RedisAddrs = "r", []string{"r:6379"} }, "RedisAddrs", "RedisHost"},
		"MemcacheHost with MemcacheServers fails":   {func(c *Config) { c.MemcacheHost, c.MemcacheServers = "m", []string{"m:11211"} }, "MemcacheServers", "MemcacheHost"},
		"a bad RedisAddrs item fails":               {func(c *Config) { c.RedisAddrs = []string{"r:6379", "r"} }, "RedisAddrs", `"r"`},
		"a MemcacheServers port out of range fails": {func(c *Config) { c.MemcacheServers = []string{"m:65536"} }, "MemcacheServers", "1 to 65535"},
		"a bad PprofAddr fails":                     {func(c *Config) { c.PprofAddr = "localhost" }, "PprofAddr", "host:port"},
		"Port 0 passes":                             {func(c *Config) { c.Port = 0 }, "", ""},
		"Port 65536 fails":                          {func(c *Config) { c.Port = 65536 }, "Port", "0 to 65535"},
		"a negative port fails":                     {func(c *Config) { c.Port = -1 }, "Port", "0 to 65535"},
		"zero work time fails":                      {func(c *Config) { c.WorkTime = 0 }, "WorkTime", "more than 0"},
		"a reference port out of range fails":       {func(c *Config) { c.RedisPort = 70000 }, "RedisPort", "1 to 65535"},
		"an upper-case work mode fails":             {func(c *Config) { c.WorkMode = "Burn" }, "WorkMode", `read back as "burn"`},
		"a deny pattern with a comma fails":         {func(c *Config) { c.DenyPattern = []string{"a,b"} }, "DenyPattern", `read back as ["a" "b"]`},
		"empty lists pass":                          {func(c *Config) { c.DenyPattern, c.RedisAddrs = []string{}, []string{} }, "", ""},
		"CacheOrder with backends that are off passes (the caller checks them)": {func(c *Config) {
			c.CacheOrder, c.MemoryCacheSize = []string{"redis", "memory"}, 0
		}, "", ""},
		"CacheOrder with configured backends passes": {func(c *Config) {
			c.CacheOrder = []string{"memory", "redis", "memcached", "file", "mysql"}
			c.RedisAddrs, c.MemcacheHost, c.FsPath, c.MysqlHost, c.MysqlDb = []string{"r:1"}, "m", "/mnt/efs", "db", "u"
		}, "", ""},
		"an unknown CacheOrder backend fails": {func(c *Config) { c.CacheOrder = []string{"disk"} }, "CacheOrder", `"disk"`},
		"PostgreSQL with a database passes":   {func(c *Config) { c.PgsqlHost, c.PgsqlDb = "db", "unicorndb" }, "", ""},
		"PostgreSQL without a database fails": {func(c *Config) { c.PgsqlHost = "db" }, "PgsqlDb", "must be set when PgsqlHost is set"},
		"MongoDB with a database passes":      {func(c *Config) { c.MongoDbHost, c.MongoDbDatabase = "docdb", "unicorn" }, "", ""},
		"MongoDB without a database fails":    {func(c *Config) { c.MongoDbHost = "docdb" }, "MongoDbDatabase", "must be set when MongoDbHost is set"},
		"an upper-case PgsqlSSLMode fails":    {func(c *Config) { c.PgsqlSSLMode = "Require" }, "PgsqlSSLMode", `read back as "require"`},
		"a DynamoDB table alone passes":       {func(c *Config) { c.DynamoTable = "unicorn" }, "", ""},
		"every backend in CacheOrder passes": {func(c *Config) {
			c.CacheOrder = CacheBackends()
		}, "", ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c := Default()
			tt.edit(&c)
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			errs := errorsOf(t, err)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(errs), err)
			}
			if errs[0].Key != tt.key || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %q (key %q), want key %q and %q", err, errs[0].Key, tt.key, tt.msg)
			}
		})
	}
	t.Run("several problems are reported together", func(t *testing.T) {
		c := Default()
		c.Cores, c.QueueSize, c.MysqlHost = 0, -1, "db"
		if errs := errorsOf(t, c.Validate()); len(errs) != 3 {
			t.Errorf("got %d errors, want 3: %v", len(errs), errs)
		}
	})
}

func TestEveryKeyHasItsField(t *testing.T) {
	// Validate finds fields by key name, so a key without a field of the
	// same name would go unchecked.
	typ := reflect.TypeOf(Config{})
	for _, k := range Keys() {
		if _, ok := typ.FieldByName(k); !ok {
			t.Errorf("key %s has no Config field", k)
		}
	}
	if got, want := len(Keys()), typ.NumField()-2; got != want {
		t.Errorf("%d keys for %d fields besides Source and lines", got, want)
	}
}

func TestEntries(t *testing.T) {
	c := Default()
	c.MysqlPass, c.PgsqlPass, c.MongoDbPass, c.RedisPassword = "m", "p", "g", "r"
	c.DenyPattern = []string{"a", "b"}
	c.RedisAddrs = []string{"r1:6379", "r2:6379"}
	c.PgsqlPort = 5432
	c.CacheTTL = 90 * time.Second
	entries := c.Entries()
	got := make(map[string]string)
	var order []string
	for _, e := range entries {
		if _, dup := got[e.Key]; dup {
			t.Errorf("key %s listed twice", e.Key)
		}
		got[e.Key] = e.Value
		order = append(order, e.Key)
	}
	t.Run("every key is listed once, in Keys order", func(t *testing.T) {
		if !reflect.DeepEqual(order, Keys()) {
			t.Errorf("Entries keys %v\nKeys %v", order, Keys())
		}
		if len(Keys()) != 55 {
			t.Errorf("%d keys, want 55", len(Keys()))
		}
	})
	t.Run("reference keys come first", func(t *testing.T) {
		if order[0] != "LogLocation" || order[25] != "AwsRegion" || order[26] != "Port" {
			t.Errorf("order %v", order)
		}
	})
	t.Run("set secrets are masked", func(t *testing.T) {
		for _, k := range []string{"MysqlPass", "PgsqlPass", "MongoDbPass", "RedisPassword"} {
			if got[k] != "****" {
				t.Errorf("%s = %q", k, got[k])
			}
		}
	})
	t.Run("unset secrets are shown empty", func(t *testing.T) {
		for _, e := range Default().Entries() {
			if e.Value == "****" {
				t.Errorf("%s is masked although empty", e.Key)
			}
		}
	})
	t.Run("values are rendered as the file writes them", func(t *testing.T) {
		want := map[string]string{"DenyPattern": "a,b", "RedisAddrs": "r1:6379,r2:6379", "PgsqlPort": "5432",
			"MysqlPort": "", "CacheTTL": "1m30s", "WorkTime": "4s", "MongoDbEnableSSL": "false"}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %q, want %q", k, got[k], v)
			}
		}
	})
	t.Run("an entry renders as a line that parses back", func(t *testing.T) {
		for _, v := range []string{"", "plain", `a"b`, `a"b'c`, "a\\", `a"b'c\`, " spaced # ; "} {
			line := Entry{Key: "LogLocation", Value: v}.String()
			if p := mustParse(t, line); p.LogLocation != v {
				t.Errorf("%s reads back as %q, want %q", line, p.LogLocation, v)
			}
		}
	})
}

func TestWarnings(t *testing.T) {
	all := map[string]bool{"redis": true, "memcached": true, "mysql": true, "file": true, "pgsql": true, "mongodb": true, "dynamodb": true}
	contest := func() Config {
		c := Default()
		c.PgsqlHost, c.PgsqlPort = "127.0.0.1", 5432
		c.RedisHost = "localhost"
		c.AwsRegion = "us-east-1"
		c.LogLocation = "./"
		return c
	}
	tests := map[string]struct {
		c     Config
		built map[string]bool
		want  []string
	}{
		"the defaults warn of nothing":         {Default(), nil, nil},
		"every backend built warns of nothing": {contest(), all, nil},
		"unbuilt backends are each named once with their keys": {contest(), map[string]bool{"redis": true}, []string{
			"PgsqlHost, PgsqlPort are set, but this build has no pgsql backend: they are ignored",
		}},
		"AwsRegion alone belongs to no backend and warns of nothing": {func() Config { c := Default(); c.AwsRegion = "us-east-1"; return c }(), nil, nil},
		"the DynamoDB keys name the dynamodb backend": {func() Config {
			c := Default()
			c.DynamoTable, c.DynamoCreateTable, c.AwsRegion = "unicorn", true, "eu-west-1"
			return c
		}(), all, nil},
		"the DynamoDB keys warn in a build without it": {func() Config {
			c := Default()
			c.DynamoTable, c.DynamoCreateTable = "unicorn", true
			return c
		}(), map[string]bool{"redis": true}, []string{
			"DynamoTable, DynamoCreateTable are set, but this build has no dynamodb backend: they are ignored",
		}},
		"a default PgsqlSSLMode is not a PostgreSQL setting": {func() Config { c := Default(); c.PgsqlCreateTable = true; return c }(), nil, []string{
			"PgsqlCreateTable is set, but this build has no pgsql backend: it is ignored",
		}},
		"a default MysqlTable is not a MySQL setting": {func() Config { c := Default(); c.MysqlCreateTable = true; return c }(), nil, []string{
			"MysqlCreateTable is set, but this build has no mysql backend: it is ignored",
		}},
		"CacheOrder naming an unbuilt backend warns": {func() Config { c := Default(); c.CacheOrder = []string{"memory", "file"}; return c }(), nil, []string{
			"CacheOrder lists file, but this build has no file backend: it is skipped",
		}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tt.c.Warnings(tt.built); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	tests := map[string]struct{ in, want string }{
		"a transposition is two edits":     {"Prot", "Port"},
		"case does not count":              {"QUEUESIZE", ""},
		"a missing letter":                 {"WorkTim", "WorkTime"},
		"a long name may drift further":    {"MemoryCacheSiz3s", "MemoryCacheSize"},
		"something unrelated gets nothing": {"Banana", ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := suggest(tt.in, Keys()); got != tt.want {
				t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestValidateNamesTheLineOfAKeyFromTheFile(t *testing.T) {
	c, err := Parse("server.ini", []byte("# redis\nRedisHost = r\nRedisAddrs = a:1,b:2\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	var e *Error
	if !errors.As(err, &e) || e.File != "server.ini" || e.Line != 3 || e.Key != "RedisAddrs" {
		t.Fatalf("Validate = %v, want server.ini:3 RedisAddrs", err)
	}
	// A key set after Parse (from a flag) names no line.
	c.RedisAddrs = nil
	c.MysqlHost = "db"
	if err := c.Validate(); !errors.As(err, &e) || e.Line != 0 || e.File != "" || e.Key != "MysqlDb" {
		t.Fatalf("Validate = %v, want MysqlDb without a line", err)
	}
}

func TestValidateNamesTheLineOfAnEmptyDatabaseKey(t *testing.T) {
	// Contest files leave keys empty rather than out: the error names the
	// empty key's line.
	tests := map[string]struct {
		text, key, msg string
		line           int
	}{
		"PgsqlHost with an empty PgsqlDb": {"# day one\n\"PgsqlHost\" = \"localhost\"\n\"PgsqlPort\" = \"5432\"\n\"PgsqlDb\" = \"\"\n",
			"PgsqlDb", "must be set when PgsqlHost is set", 4},
		"MongoDbHost with an empty MongoDbDatabase": {"\"MongoDbHost\" = \"127.0.0.1\"\n\"MongoDbDatabase\" = \"\"\n\"MongoDbCollection\" = \"requests\"\n",
			"MongoDbDatabase", "must be set when MongoDbHost is set", 2},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := Parse("server.ini", []byte(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			err = c.Validate()
			var e *Error
			if !errors.As(err, &e) || e.File != "server.ini" || e.Line != tt.line || e.Key != tt.key {
				t.Fatalf("Validate = %v, want server.ini:%d %s", err, tt.line, tt.key)
			}
			if want := fmt.Sprintf(`server.ini:%d: %s = "": %s`, tt.line, tt.key, tt.msg); err.Error() != want {
				t.Errorf("message %q, want %q", err, want)
			}
		})
	}
}

func TestKeyErrorNamesTheLineAndMasksSecrets(t *testing.T) {
	c, err := Parse("server.ini", []byte("CacheOrder = redis\nRedisPassword = hunter2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.KeyError("CacheOrder", "lists redis, but it is off").Error(), `server.ini:1: CacheOrder = "redis": lists redis, but it is off`; got != want {
		t.Errorf("KeyError = %s, want %s", got, want)
	}
	if e := c.KeyError("RedisPassword", "bad"); e.Line != 2 || e.Value != "****" {
		t.Errorf("KeyError(RedisPassword) = %+v, want line 2 and a masked value", e)
	}
	if e := Default().KeyError("CacheOrder", "bad"); e.File != "" || e.Line != 0 {
		t.Errorf("KeyError on the defaults = %+v, want no file or line", e)
	}
}

func TestAnEmptyBooleanIsFalse(t *testing.T) {
	c, err := Parse("server.ini", []byte("\"MongoDbEnableSSL\" = \"\"\nRedisTLS =\n"))
	if err != nil || c.MongoDbEnableSSL || c.RedisTLS {
		t.Fatalf("Parse = %+v, %v", c, err)
	}
	if _, err := Parse("server.ini", []byte("RedisTLS = yes\n")); err == nil || !strings.Contains(err.Error(), "true or false") {
		t.Fatalf("RedisTLS = yes: %v", err)
	}
}

func TestCheckServer(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:11211": true, "[::1]:6379": true, "cache:0": false, "cache": false, ":11211": false} {
		if err := CheckServer(addr); (err == nil) != ok {
			t.Errorf("CheckServer(%q) = %v", addr, err)
		}
	}
}

// problems parses text as server.ini and validates it, and returns every
// problem's text, one a line: what -check prints.
func problems(t *testing.T, text string) []string {
	t.Helper()
	c, err := Parse("server.ini", []byte(text))
	if err == nil {
		err = c.Validate()
	}
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func TestCrossKeyRulesNameTheirLine(t *testing.T) {
	tests := map[string]struct {
		text string
		want []string // none = valid
	}{
		// The redis backend refuses a DB other than 0 for a cluster.
		"RedisAddrs with RedisDB 1": {"RedisAddrs = 127.0.0.1:1,127.0.0.1:2\nRedisDB = 1\n", []string{
			`server.ini:2: RedisDB = "1": must be 0 when RedisAddrs is set: RedisAddrs makes a Redis cluster, and a cluster has only DB 0`}},
		"RedisAddrs with RedisDB 0":  {"RedisAddrs = 127.0.0.1:1,127.0.0.1:2\nRedisDB = 0\n", nil},
		"RedisHost with RedisDB 1":   {"RedisHost = r\nRedisDB = 1\n", nil},
		"RedisDB out of range alone": {"RedisAddrs = a:1\nRedisDB = 16\n", []string{`server.ini:2: RedisDB = "16": must be a whole number from 0 to 15`}},

		// A host:port and a port key that disagree.
		"RedisHost with another RedisPort": {"RedisHost = localhost:6379\nRedisPort = 6380\n", []string{
			`server.ini:2: RedisPort = "6380": conflicts with RedisHost = localhost:6379, which names port 6379: give the port in one of the two keys, or the same port in both`}},
		"MemcacheHost with another MemcachePort": {"MemcachePort = 11212\nMemcacheHost = m:11211\n", []string{
			`server.ini:1: MemcachePort = "11212": conflicts with MemcacheHost = m:11211, which names port 11211: give the port in one of the two keys, or the same port in both`}},
		"MysqlHost with another MysqlPort": {"MysqlHost = db:3307\nMysqlPort = 3306\nMysqlDb = u\n", []string{
			`server.ini:2: MysqlPort = "3306": conflicts with MysqlHost = db:3307, which names port 3307: give the port in one of the two keys, or the same port in both`}},
		"PgsqlHost with another PgsqlPort": {"PgsqlHost = [::1]:5433\nPgsqlPort = 5432\nPgsqlDb = u\n", []string{
			`server.ini:2: PgsqlPort = "5432": conflicts with PgsqlHost = [::1]:5433, which names port 5433: give the port in one of the two keys, or the same port in both`}},
		"MongoDbHost with another MongoDbPort": {"MongoDbHost = m:27018\nMongoDbPort = 27017\nMongoDbDatabase = u\n", []string{
			`server.ini:2: MongoDbPort = "27017": conflicts with MongoDbHost = m:27018, which names port 27018: give the port in one of the two keys, or the same port in both`}},
		"the same port in both passes": {"RedisHost = localhost:6379\nRedisPort = 6379\nMongoDbHost = m:27017\nMongoDbPort = 27017\nMongoDbDatabase = u\n", nil},
		"a host:port alone passes":     {"RedisHost = localhost:6380\nMemcacheHost = m:11212\n", nil},
		"a host:port with a bad port": {"RedisHost = localhost:http\n", []string{
			`server.ini:1: RedisHost = "localhost:http": is not host:port with a port from 1 to 65535: give the host alone and the port in RedisPort`}},

		// A missing database key is reported on the host key's line.
		"MysqlHost without MysqlDb": {"# db\nMysqlHost = db\n", []string{
			`server.ini:2: MysqlDb = "": must be set when MysqlHost is set (MysqlHost is set on this line)`}},
		"PgsqlHost without PgsqlDb": {"PgsqlHost = db\n", []string{
			`server.ini:1: PgsqlDb = "": must be set when PgsqlHost is set (PgsqlHost is set on this line)`}},
		"MongoDbHost without MongoDbDatabase": {"Cores = 2\nMongoDbHost = m\n", []string{
			`server.ini:2: MongoDbDatabase = "": must be set when MongoDbHost is set (MongoDbHost is set on this line)`}},

		// The mongodb and pgsql backends' own rules.
		"a MongoDB database name with a dot": {"MongoDbHost = m\nMongoDbDatabase = a.b\n", []string{
			`server.ini:2: MongoDbDatabase = "a.b": must not contain any of / \ . " $ * < > : | ? or a space: MongoDB refuses such database names`}},
		"a MongoDB database name too long": {"MongoDbHost = m\nMongoDbDatabase = " + strings.Repeat("d", 64) + "\n", []string{
			`server.ini:2: MongoDbDatabase = "` + strings.Repeat("d", 64) + `": is longer than 63 bytes, the longest MongoDB database name`}},
		"a reserved MongoDB collection": {"MongoDbHost = m\nMongoDbDatabase = u\nMongoDbCollection = system.users\n", []string{
			`server.ini:3: MongoDbCollection = "system.users": must not start with "system.": MongoDB reserves those collection names`}},
		"a MongoDB collection with $": {"MongoDbHost = m\nMongoDbDatabase = u\nMongoDbCollection = a$b\n", []string{
			`server.ini:3: MongoDbCollection = "a$b": must not contain $ or NUL: MongoDB refuses such collection names`}},
		"a MongoDB collection too long": {"MongoDbHost = m\nMongoDbDatabase = u\nMongoDbCollection = " + strings.Repeat("c", 121) + "\n", []string{
			`server.ini:3: MongoDbCollection = "` + strings.Repeat("c", 121) + `": is longer than 120 bytes, the longest MongoDB collection name`}},
		"a MongoDB password without a user": {"MongoDbHost = m\nMongoDbDatabase = u\nMongoDbPass = secret\n", []string{
			`server.ini:3: MongoDbPass = "****": is set without MongoDbUser: set MongoDbUser too, or drop MongoDbPass`}},
		"a MongoDB connection string": {"MongoDbHost = mongodb://a,b\nMongoDbDatabase = u\n", []string{
			`server.ini:1: MongoDbHost = "mongodb://a,b": must be one host name or address, optionally with :port, not a connection string or a list`}},
		"MongoDB keys without MongoDbHost are not checked": {"MongoDbDatabase = a.b\nMongoDbCollection = system.x\n", nil},
		"a PgsqlTable that is not an identifier": {"PgsqlHost = db\nPgsqlDb = u\nPgsqlTable = 1table\n", []string{
			`server.ini:3: PgsqlTable = "1table": must be a PostgreSQL table name: a letter or _, then up to 62 letters, digits or _`}},
		"a PgsqlTable of 64 bytes": {"PgsqlHost = db\nPgsqlDb = u\nPgsqlTable = " + strings.Repeat("t", 64) + "\n", []string{
			`server.ini:3: PgsqlTable = "` + strings.Repeat("t", 64) + `": must be a PostgreSQL table name: a letter or _, then up to 62 letters, digits or _`}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := problems(t, tt.text); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestParseReportsCrossKeyErrorsWithLineErrors(t *testing.T) {
	// Every problem at once, in line order, each with its place.
	got := problems(t, "RedisHost = localhost:6379\nPort = abc\nRedisPort = 6380\nMysqlHost = db\nCores = 0\n")
	want := []string{
		`server.ini:2: Port = "abc": must be a whole number from 0 to 65535`,
		`server.ini:3: RedisPort = "6380": conflicts with RedisHost = localhost:6379, which names port 6379: give the port in one of the two keys, or the same port in both`,
		`server.ini:4: MysqlDb = "": must be set when MysqlHost is set (MysqlHost is set on this line)`,
		`server.ini:5: Cores = "0": must be a whole number from 1 to 1024`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A rule that reads a key with a bad line is left out: the field holds
	// the default, not what the file says.
	got = problems(t, "RedisHost = localhost:6379\nRedisPort = x\n")
	want = []string{`server.ini:2: RedisPort = "x": must be a port number from 1 to 65535, or empty for unset`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestAPortWithoutItsHostWarns(t *testing.T) {
	c, err := Parse("server.ini", []byte("RedisPort = 6380\nMemcachePort = 11211\nRedisAddrs = r:6379\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	all := map[string]bool{"redis": true, "memcached": true}
	want := []string{
		"server.ini:1: RedisPort is set without RedisHost: it is ignored (set RedisHost, or drop RedisPort)",
		"server.ini:2: MemcachePort is set without MemcacheHost: it is ignored (set MemcacheHost, or drop MemcachePort)",
	}
	if got := c.Warnings(all); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	// From a flag, there is no line to name.
	c = Default()
	c.PgsqlPort = 5432
	want = []string{"PgsqlPort is set without PgsqlHost: it is ignored (set PgsqlHost, or drop PgsqlPort)"}
	if got := c.Warnings(map[string]bool{"pgsql": true}); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestTheContestFilesLoadCleanly(t *testing.T) {
	all := map[string]bool{"redis": true, "memcached": true, "mysql": true, "file": true, "pgsql": true, "mongodb": true, "dynamodb": true}
	paths, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "*.ini"))
	if len(paths) == 0 {
		t.Fatal("no testdata/*.ini")
	}
	for _, p := range paths {
		c, err := Load(p)
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			t.Errorf("%s: %v", p, err)
		}
		if w := c.Warnings(all); len(w) > 0 {
			t.Errorf("%s: warnings %q", p, w)
		}
	}
}
