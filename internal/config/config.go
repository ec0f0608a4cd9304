// Package config loads and checks server.ini, the calc server's configuration
// file, in the flat style of the contests' files:
//
//	# comment
//	"LogLocation" = "./"
//	Port = 80
//
// Keys and values may be quoted or bare, a UTF-8 BOM and CRLF line endings are
// accepted, and there are no sections. Every problem is reported with the file
// name, the line number and the key, so a typo is found before the server
// starts rather than after.
package config

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/ini.v1"
)

// Config is the effective configuration: the defaults, overlaid with a file,
// possibly overlaid with command-line flags by the caller.
type Config struct {
	// Reference keys, as in the contests' server.ini. Port keys are 0 when unset.
	LogLocation       string // a directory (calcserver.log is written in it) or a file; "" = standard error
	FsPath            string
	PgsqlHost         string
	PgsqlUser         string
	PgsqlPass         string
	PgsqlDb           string
	PgsqlTable        string
	PgsqlPort         int
	MysqlHost         string
	MysqlUser         string
	MysqlPass         string
	MysqlDb           string
	MysqlPort         int
	MongoDbHost       string
	MongoDbUser       string
	MongoDbPass       string
	MongoDbDatabase   string
	MongoDbCollection string
	MongoDbCAFilePath string
	MongoDbPort       int
	MongoDbEnableSSL  bool
	RedisHost         string
	RedisPort         int
	MemcacheHost      string
	MemcachePort      int
	AwsRegion         string

	// Extensions, with the defaults set by Default.
	Port              int           // listening port, 80; 0 = any free port
	Cores             int           // simulated cores, 1 (1..1024)
	QueueSize         int           // requests that may wait for a core, 5 (0..100000)
	WorkTime          time.Duration // time a job holds a core, 4s (>0, <=1h)
	WorkMode          string        // "burn" (spin the CPU) or "sleep"
	CalcVersion       int           // V in the unicorn function, 1 (1..1e9)
	ResponseFormat    string        // "token" or "hash"
	MemoryCacheSize   int           // memory tier entries, 100000; 0 = no memory tier
	CacheTTL          time.Duration // 0 = entries never expire
	CacheTimeout      time.Duration // per shared-cache operation, 100ms (>0)
	CacheOrder        []string      // backends from CacheBackends; nil = default order
	MysqlTable        string        // "unicorntable"; an SQL identifier
	MysqlCreateTable  bool          // create MysqlTable when missing instead of failing
	MysqlTLS          string        // "" (off), "true", "skip-verify" or "preferred"
	PgsqlSSLMode      string        // libpq sslmode: disable, allow, prefer, require, verify-ca, verify-full
	PgsqlCreateTable  bool          // create PgsqlTable when missing instead of failing
	DynamoTable       string        // DynamoDB table; "" = off
	DynamoCreateTable bool          // create DynamoTable (on-demand, TTL on) when missing
	RedisPassword     string
	RedisDB           int           // 0..15
	RedisTLS          bool          // connect to Redis over TLS
	RedisAddrs        []string      // host:port of each Redis server, instead of RedisHost/RedisPort
	MemcacheServers   []string      // host:port of each memcached server, instead of MemcacheHost/MemcachePort
	DenyPattern       []string      // substrings of keys that are refused with 403
	LogFormat         string        // "logfmt" or "json"
	ShutdownDelay     time.Duration // time /healthcheck reports draining before misses are refused, 0s
	ShutdownTimeout   time.Duration // time left to running and waiting jobs, 30s
	PprofAddr         string        // host:port of the pprof listener; "" = off

	// TrustedProxies are the peers whose X-Forwarded-For the access log
	// believes; nil = none.
	TrustedProxies []netip.Prefix

	// Source is where the configuration was read from ("" for the defaults).
	// It is not a key.
	Source string

	// lines maps each key Parse read to the line it was first set on, so that
	// Validate's errors can name the line as Parse's do.
	lines map[string]int
}

// Default returns the configuration used when there is no file: every
// extension at its documented default, every reference key unset.
func Default() Config {
	return Config{
		Port:            80,
		Cores:           1,
		QueueSize:       5,
		WorkTime:        4 * time.Second,
		WorkMode:        "burn",
		CalcVersion:     1,
		ResponseFormat:  "token",
		MemoryCacheSize: 100000,
		CacheTimeout:    100 * time.Millisecond,
		MysqlTable:      "unicorntable",
		PgsqlSSLMode:    "prefer",
		LogFormat:       "logfmt",
		ShutdownTimeout: 30 * time.Second,
	}
}

// maxFileSize bounds what Load reads. A real server.ini is a few hundred bytes;
// anything this large is the wrong file (often the server binary itself).
const maxFileSize = 1 << 20

// Load reads the local file at path and parses it with Parse. Messages name
// the file by path, and the result's Source is path.
func Load(path string) (Config, error) {
	data, err := Read(path)
	if err != nil {
		return Config{}, err
	}
	return Parse(path, data)
}

// Read returns the bytes of the local file at path, refusing one larger than any
// server.ini, for ParsePartial.
func Read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: reading %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("config: %s is larger than %d bytes: not a server.ini", path, maxFileSize)
	}
	return data, nil
}

// msgMismatch and msgIniFailed mark errors that mean the line index and
// ini.v1 read the file differently. The scanner is written so that this cannot
// happen; the fuzz test holds it to that.
const (
	msgMismatch  = "the line is read differently by the ini parser: quote the value"
	msgIniFailed = "ini parser: "
)

// Parse reads the bytes of a server.ini named name (used in messages) on top
// of Default. Every bad line is reported, not only the first, and with them
// the problems Validate finds between keys: the error is a *Error or an
// errors.Join of several. On error the Config is the zero value.
func Parse(name string, data []byte) (Config, error) {
	c, _, err := ParsePartial(name, data)
	if err != nil {
		return Config{}, err
	}
	return c, nil
}

// ParsePartial is Parse that, when the file has problems, also returns the Config of
// the lines that read (the keys of the others at their defaults) and the names of
// the keys whose lines did not, so that a caller can check its own rules on the rest
// and report every problem at once. A problem of the whole file (no line) returns
// the default Config.
func ParsePartial(name string, data []byte) (Config, map[string]bool, error) {
	specs := keySpecs()
	index := specIndex(specs)

	data, msg := stripBOM(data)
	if msg != "" {
		return Default(), nil, &Error{File: name, Line: 1, Msg: msg}
	}

	// First pass: the line index. Lines that are accepted are handed on to
	// ini.v1 at the same line numbers; everything else becomes a blank line.
	var (
		errs   []*Error
		pairs  []pair
		clean  strings.Builder
		first  = make(map[int]int) // spec index -> line of its first occurrence
		known  = make([]string, len(specs))
		report = func(e *Error) { errs = append(errs, e) }
	)
	for i, s := range specs {
		known[i] = s.name
	}
	for n, raw := range strings.Split(string(data), "\n") {
		line := n + 1
		key, value, ok, msg := scanLine(raw)
		if msg != "" {
			report(&Error{File: name, Line: line, Key: key, Msg: msg})
		}
		if ok {
			si, isKnown := index[strings.ToLower(key)]
			switch prev, seen := first[si]; {
			case !isKnown:
				e := &Error{File: name, Line: line, Key: key, Msg: "unknown key " + quote(key)}
				// Past maxErrors the error is not shown, so its suggestion
				// is not worth computing.
				if len(errs) < maxErrors {
					e.Suggest = suggest(key, known)
				}
				report(e)
				ok = false
			case seen && !specs[si].repeat:
				report(&Error{File: name, Line: line, Key: key,
					Msg: fmt.Sprintf("duplicate key %s: already set on line %d", quote(key), prev)})
				ok = false
			case !seen:
				first[si] = line
			}
		}
		if ok {
			pairs = append(pairs, pair{line: line, key: key, value: value})
			clean.WriteString(raw)
		}
		clean.WriteByte('\n')
	}

	// Second pass: ini.v1 reads the accepted lines. Shadows keep every
	// occurrence of a key, in file order, so each can be matched to its line.
	f, err := ini.LoadSources(ini.LoadOptions{
		KeyValueDelimiters:         "=",
		IgnoreContinuation:         true,
		SpaceBeforeInlineComment:   true,
		AllowShadows:               true,
		AllowDuplicateShadowValues: true,
		PreserveEmptyShadowValues:  true,
	}, []byte(clean.String()))
	if err != nil {
		report(&Error{File: name, Msg: msgIniFailed + err.Error()})
		return Default(), nil, joinErrors(errs)
	}
	sec := f.Section(ini.DefaultSection)
	// values holds each key's occurrences once: ValueWithShadows copies
	// them on every call, which would make a long DenyPattern list quadratic.
	values := make(map[string][]string)
	used := make(map[string]int)
	c := Default()
	c.Source = name
	for _, p := range pairs {
		if c.lines == nil {
			c.lines = make(map[string]int)
		}
		if _, ok := c.lines[specs[index[strings.ToLower(p.key)]].name]; !ok {
			c.lines[specs[index[strings.ToLower(p.key)]].name] = p.line
		}
		s := specs[index[strings.ToLower(p.key)]]
		vals, seen := values[p.key]
		if !seen {
			if k, err := sec.GetKey(p.key); err == nil {
				vals = k.ValueWithShadows()
			}
			values[p.key] = vals
		}
		value, ok := "", used[p.key] < len(vals)
		if ok {
			value = vals[used[p.key]]
		}
		used[p.key]++
		if !ok || value != p.value {
			report(&Error{File: name, Line: p.line, Key: p.key, Msg: msgMismatch})
			continue
		}
		if e := s.set(&c, value); e != nil {
			e.File, e.Line, e.Key, e.Value = name, p.line, p.key, maskIf(s.secret, value)
			report(e)
		}
	}
	// ini.v1 must not have found a key, or an occurrence, that the line
	// index did not.
	for _, k := range sec.KeyStrings() {
		if n := len(sec.Key(k).ValueWithShadows()); n != used[k] {
			report(&Error{File: name, Key: k, Msg: msgMismatch})
		}
	}
	if len(errs) > 0 {
		// The rules that tie keys together are reported too, so that every
		// problem shows at once; those that read a key with a bad line are
		// left out, as its field holds the default rather than the file's value.
		bad := make(map[string]bool)
		for _, e := range errs {
			if si, ok := index[strings.ToLower(e.Key)]; ok {
				bad[specs[si].name] = true
			}
		}
		errs = append(errs, c.crossErrors(bad)...)
		slices.SortStableFunc(errs, func(a, b *Error) int { return a.Line - b.Line })
		return c, bad, joinErrors(errs)
	}
	return c, nil, nil
}

// quote is strconv.Quote, named for how messages use it.
func quote(s string) string { return strconv.Quote(s) }

// maskIf hides a secret value in messages and listings.
func maskIf(secret bool, v string) string {
	if secret && v != "" {
		return "****"
	}
	return v
}
