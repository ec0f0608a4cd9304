package config

import (
	"fmt"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/unicorn-rentals/unicorn/internal/sqlname"
)

// Validate checks every field against the rules Parse applies (the caller may
// have changed fields after Parse, from flags for instance) and the rules that
// tie keys together:
//
//   - MysqlHost set needs MysqlDb (PgsqlHost PgsqlDb, MongoDbHost
//     MongoDbDatabase); the error names the Db key's line, or the Host key's
//     when the Db key is not in the file;
//   - RedisHost and RedisAddrs exclude each other, as do MemcacheHost and
//     MemcacheServers (a caller that takes -memcache-server should clear
//     MemcacheHost when it sets MemcacheServers);
//   - a Host key that carries a port (RedisHost = host:6379) and a Port key
//     that names another port is an error naming both keys;
//   - the checks the backends make when they are built (see crossErrors), so
//     that they name a file and line and run in -check and Parse alike;
//   - host:port items must parse with ports from 1 to 65535 (PprofAddr: 0 to 65535);
//   - Port is 0..65535, 0 meaning any free port.
//
// Which keys turn a cache backend on is not config's to know: the caller checks
// that every backend CacheOrder lists is on, with KeyError.
//
// The errors are *Error values, joined with errors.Join when there are several;
// they name Source and the key's line when the key came from a file, and neither
// when it came from a default or a flag.
func (c Config) Validate() error {
	var errs []*Error
	specs := keySpecs()
	values := make(map[string]string, len(specs))
	for _, s := range specs {
		v := s.get(&c)
		values[s.name] = maskIf(s.secret, v)
		// A field is valid when writing it to a file and reading it back
		// succeeds and gives the same field: that reuses every rule of Parse
		// and also catches values a file could not express (a DenyPattern
		// with a comma, a WorkMode in upper case).
		scratch := Default()
		if e := s.set(&scratch, v); e != nil {
			e.Key, e.Value = s.name, maskIf(s.secret, v)
			e.File, e.Line = c.where(s.name)
			errs = append(errs, e)
			continue
		}
		if same, got := sameField(&c, &scratch, s.name); !same {
			file, line := c.where(s.name)
			errs = append(errs, &Error{File: file, Line: line, Key: s.name, Value: maskIf(s.secret, v),
				Msg: "cannot be written in server.ini as it is: it would read back as " + got})
		}
	}

	bad := make(map[string]bool, len(errs))
	for _, e := range errs {
		bad[e.Key] = true
	}
	errs = append(errs, c.crossErrors(bad)...)
	slices.SortStableFunc(errs, func(a, b *Error) int { return a.Line - b.Line })
	return joinErrors(errs)
}

// KeyError returns a problem with key, naming the file and line key was set on as
// Validate's own errors do, for the rules that callers check beyond Validate.
func (c Config) KeyError(key, msg string) *Error {
	value := ""
	for _, s := range keySpecs() {
		if s.name == key {
			value = maskIf(s.secret, s.get(&c))
		}
	}
	return c.keyError(key, value, msg)
}

// crossRule is a rule that ties keys together: check returns the key the
// problem is reported on (its line is named) and the message, or "" when the
// rule holds. keys are the keys the rule reads: a rule is skipped when one of
// them has a bad value of its own, since the field then holds its default
// rather than what the file says.
type crossRule struct {
	keys  []string
	check func(c *Config) (key, msg string)
}

// hostPortPairs are the reference keys that name a server by host and port.
var hostPortPairs = [][2]string{
	{"RedisHost", "RedisPort"},
	{"MemcacheHost", "MemcachePort"},
	{"MysqlHost", "MysqlPort"},
	{"PgsqlHost", "PgsqlPort"},
	{"MongoDbHost", "MongoDbPort"},
}

func crossRules() []crossRule {
	rules := []crossRule{
		needs("MysqlHost", "MysqlDb", func(c *Config) (string, string) { return c.MysqlHost, c.MysqlDb }),
		needs("PgsqlHost", "PgsqlDb", func(c *Config) (string, string) { return c.PgsqlHost, c.PgsqlDb }),
		needs("MongoDbHost", "MongoDbDatabase", func(c *Config) (string, string) { return c.MongoDbHost, c.MongoDbDatabase }),
		{[]string{"RedisHost", "RedisAddrs"}, func(c *Config) (string, string) {
			if c.RedisHost != "" && len(c.RedisAddrs) > 0 {
				return "RedisAddrs", "cannot be used together with RedisHost: list every Redis server in RedisAddrs, or use RedisHost and RedisPort"
			}
			return "", ""
		}},
		{[]string{"MemcacheHost", "MemcacheServers"}, func(c *Config) (string, string) {
			if c.MemcacheHost != "" && len(c.MemcacheServers) > 0 {
				return "MemcacheServers", "cannot be used together with MemcacheHost: list every memcached server in MemcacheServers, or use MemcacheHost and MemcachePort"
			}
			return "", ""
		}},
		// The redis backend refuses a DB other than 0 for a cluster.
		{[]string{"RedisDB", "RedisAddrs"}, func(c *Config) (string, string) {
			if c.RedisDB != 0 && len(c.RedisAddrs) > 0 {
				return "RedisDB", "must be 0 when RedisAddrs is set: RedisAddrs makes a Redis cluster, and a cluster has only DB 0"
			}
			return "", ""
		}},
		// The mongodb backend's rules for names and credentials.
		{[]string{"MongoDbHost", "MongoDbDatabase"}, func(c *Config) (string, string) {
			db := c.MongoDbDatabase
			switch {
			case c.MongoDbHost == "" || db == "":
			case len(db) > 63:
				return "MongoDbDatabase", "is longer than 63 bytes, the longest MongoDB database name"
			case strings.ContainsAny(db, "/\\. \"$*<>:|?\x00"):
				return "MongoDbDatabase", "must not contain any of / \\ . \" $ * < > : | ? or a space: MongoDB refuses such database names"
			}
			return "", ""
		}},
		{[]string{"MongoDbHost", "MongoDbCollection"}, func(c *Config) (string, string) {
			coll := c.MongoDbCollection
			switch {
			case c.MongoDbHost == "" || coll == "":
			case strings.ContainsAny(coll, "$\x00"):
				return "MongoDbCollection", "must not contain $ or NUL: MongoDB refuses such collection names"
			case strings.HasPrefix(coll, "system."):
				return "MongoDbCollection", "must not start with \"system.\": MongoDB reserves those collection names"
			case len(coll) > 120:
				return "MongoDbCollection", "is longer than 120 bytes, the longest MongoDB collection name"
			}
			return "", ""
		}},
		{[]string{"MongoDbHost", "MongoDbUser", "MongoDbPass"}, func(c *Config) (string, string) {
			if c.MongoDbHost != "" && c.MongoDbPass != "" && c.MongoDbUser == "" {
				return "MongoDbPass", "is set without MongoDbUser: set MongoDbUser too, or drop MongoDbPass"
			}
			return "", ""
		}},
		{[]string{"MongoDbHost"}, func(c *Config) (string, string) {
			if strings.ContainsAny(c.MongoDbHost, "/,") {
				return "MongoDbHost", "must be one host name or address, optionally with :port, not a connection string or a list"
			}
			return "", ""
		}},
		// The pgsql backend's rule for table names.
		{[]string{"PgsqlHost", "PgsqlTable"}, func(c *Config) (string, string) {
			if c.PgsqlHost != "" && c.PgsqlTable != "" && (!sqlname.Valid(c.PgsqlTable) || len(c.PgsqlTable) > 63) {
				return "PgsqlTable", "must be a PostgreSQL table name: a letter or _, then up to 62 letters, digits or _"
			}
			return "", ""
		}},
	}
	for _, p := range hostPortPairs {
		rules = append(rules, hostAndPort(p[0], p[1]))
	}
	return rules
}

// needs is the rule that a set host key needs the database key db.
func needs(host, db string, get func(c *Config) (string, string)) crossRule {
	return crossRule{[]string{host, db}, func(c *Config) (string, string) {
		if h, d := get(c); h != "" && d == "" {
			return db, "must be set when " + host + " is set"
		}
		return "", ""
	}}
}

// hostAndPort is the rule that a host key carrying a port and its port key
// agree: the backends would take one and ignore the other, or refuse both.
// A host:port whose port is not a number from 1 to 65535 is refused as well.
func hostAndPort(hostKey, portKey string) crossRule {
	return crossRule{[]string{hostKey, portKey}, func(c *Config) (string, string) {
		host, port := fieldString(c, hostKey), fieldInt(c, portKey)
		h, p, err := net.SplitHostPort(host)
		if err != nil || strings.ContainsAny(host, "/,") { // not host:port at all: see MongoDbHost's rule
			return "", ""
		}
		n, perr := strconv.Atoi(p)
		if perr != nil || n < 1 || n > 65535 || h == "" {
			return hostKey, "is not host:port with a port from 1 to 65535: give the host alone and the port in " + portKey
		}
		if port != 0 && port != n {
			return portKey, fmt.Sprintf("conflicts with %s = %s, which names port %d: give the port in one of the two keys, or the same port in both", hostKey, host, n)
		}
		return "", ""
	}}
}

func fieldString(c *Config, key string) string {
	return reflect.ValueOf(c).Elem().FieldByName(key).String()
}

func fieldInt(c *Config, key string) int {
	return int(reflect.ValueOf(c).Elem().FieldByName(key).Int())
}

// crossErrors applies crossRules, skipping those that read a key in bad. An
// error is placed on the line of the key it names or, when that key is not in
// the file (a missing MysqlDb), on the line of the first key of the rule that
// is.
func (c Config) crossErrors(bad map[string]bool) []*Error {
	specs := keySpecs()
	secrets := make(map[string]bool)
	for _, s := range specs {
		secrets[s.name] = s.secret
	}
	var errs []*Error
rules:
	for _, r := range crossRules() {
		for _, k := range r.keys {
			if bad[k] {
				continue rules
			}
		}
		key, msg := r.check(&c)
		if msg == "" {
			continue
		}
		e := c.KeyError(key, msg)
		if e.Line == 0 {
			for _, k := range r.keys {
				if file, line := c.where(k); line > 0 {
					e.File, e.Line = file, line
					e.Msg += " (" + k + " is set on this line)"
					break
				}
			}
		}
		errs = append(errs, e)
	}
	return errs
}

// portWarnings are the warnings for a port key set without its host key: the
// port is then not used.
func (c Config) portWarnings() []string {
	var out []string
	for _, p := range hostPortPairs {
		if fieldInt(&c, p[1]) == 0 || fieldString(&c, p[0]) != "" {
			continue
		}
		prefix := ""
		if file, line := c.where(p[1]); line > 0 {
			prefix = file + ":" + strconv.Itoa(line) + ": "
		}
		out = append(out, fmt.Sprintf("%s%s is set without %s: it is ignored (set %s, or drop %s)",
			prefix, p[1], p[0], p[0], p[1]))
	}
	return out
}

func (c Config) keyError(key, value, msg string) *Error {
	file, line := c.where(key)
	return &Error{File: file, Line: line, Key: key, Value: value, Msg: msg}
}

// where returns the file and line key was set on, or "" and 0 when it was not
// read from a file.
func (c Config) where(key string) (string, int) {
	line, ok := c.lines[key]
	if !ok {
		return "", 0
	}
	return c.Source, line
}

// sameField reports whether a and b hold the same value in the field named
// like key (every key has a field of its own name), and how b's value reads.
// Empty and nil lists are the same, as they mean the same to every user of a
// Config.
func sameField(a, b *Config, key string) (bool, string) {
	fa := reflect.ValueOf(a).Elem().FieldByName(key)
	fb := reflect.ValueOf(b).Elem().FieldByName(key)
	shown := fmt.Sprintf("%q", fb.Interface())
	if fa.Kind() == reflect.Slice && fa.Len() == 0 && fb.Len() == 0 {
		return true, shown
	}
	return reflect.DeepEqual(fa.Interface(), fb.Interface()), shown
}

// Warnings returns one startup warning per backend that is configured (a key
// of it differs from the default) but not in built, and one per CacheOrder
// entry that names a backend not in built. The keys of built are "redis",
// "memcached", "mysql", "file", "pgsql", "mongodb" and "dynamodb"; the memory tier
// is always built. Such keys are accepted so that the contests' files load,
// and the warning says they have no effect.
func (c Config) Warnings(built map[string]bool) []string {
	def := Default()
	var order []string
	keys := make(map[string][]string)
	for _, s := range keySpecs() {
		if s.backend == "" || built[s.backend] || s.get(&c) == s.get(&def) {
			continue
		}
		if keys[s.backend] == nil {
			order = append(order, s.backend)
		}
		keys[s.backend] = append(keys[s.backend], s.name)
	}
	out := c.portWarnings()
	for _, b := range order {
		verb, pronoun := "are", "they are"
		if len(keys[b]) == 1 {
			verb, pronoun = "is", "it is"
		}
		out = append(out, fmt.Sprintf("%s %s set, but this build has no %s backend: %s ignored",
			strings.Join(keys[b], ", "), verb, b, pronoun))
	}
	for _, b := range c.CacheOrder {
		if b != "memory" && !built[b] {
			out = append(out, fmt.Sprintf("CacheOrder lists %s, but this build has no %s backend: it is skipped", b, b))
		}
	}
	return out
}
