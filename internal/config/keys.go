package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/sqlname"
)

// keySpec describes one key: how to read a value into a Config and how to
// write it back. Parse, Validate, Entries and Warnings are all driven by the
// same table, so a key cannot be known to one and forgotten by another.
type keySpec struct {
	name    string
	backend string // the backend the key configures, for Warnings ("" = none)
	secret  bool   // masked in Entries and in messages
	repeat  bool   // a repeated key adds to the value instead of being refused
	set     func(c *Config, v string) *Error
	get     func(c *Config) string
}

// CacheBackends lists the names CacheOrder accepts, in the default order: the
// names of the table of backends in internal/app, which a test holds to it.
func CacheBackends() []string {
	return []string{"memory", "redis", "memcached", "file", "mongodb", "mysql", "pgsql", "dynamodb"}
}

// keySpecs returns the table of known keys in README order: the contests'
// reference keys first, then the extensions. It is built on each call because
// the package keeps no global state.
func keySpecs() []keySpec {
	return []keySpec{
		stringKey("LogLocation", "", func(c *Config) *string { return &c.LogLocation }),
		stringKey("FsPath", "file", func(c *Config) *string { return &c.FsPath }),
		stringKey("PgsqlHost", "pgsql", func(c *Config) *string { return &c.PgsqlHost }),
		portKey("PgsqlPort", "pgsql", func(c *Config) *int { return &c.PgsqlPort }),
		stringKey("PgsqlUser", "pgsql", func(c *Config) *string { return &c.PgsqlUser }),
		secret(stringKey("PgsqlPass", "pgsql", func(c *Config) *string { return &c.PgsqlPass })),
		stringKey("PgsqlDb", "pgsql", func(c *Config) *string { return &c.PgsqlDb }),
		stringKey("PgsqlTable", "pgsql", func(c *Config) *string { return &c.PgsqlTable }),
		stringKey("MysqlHost", "mysql", func(c *Config) *string { return &c.MysqlHost }),
		portKey("MysqlPort", "mysql", func(c *Config) *int { return &c.MysqlPort }),
		stringKey("MysqlUser", "mysql", func(c *Config) *string { return &c.MysqlUser }),
		secret(stringKey("MysqlPass", "mysql", func(c *Config) *string { return &c.MysqlPass })),
		stringKey("MysqlDb", "mysql", func(c *Config) *string { return &c.MysqlDb }),
		stringKey("MongoDbHost", "mongodb", func(c *Config) *string { return &c.MongoDbHost }),
		portKey("MongoDbPort", "mongodb", func(c *Config) *int { return &c.MongoDbPort }),
		stringKey("MongoDbUser", "mongodb", func(c *Config) *string { return &c.MongoDbUser }),
		secret(stringKey("MongoDbPass", "mongodb", func(c *Config) *string { return &c.MongoDbPass })),
		stringKey("MongoDbDatabase", "mongodb", func(c *Config) *string { return &c.MongoDbDatabase }),
		stringKey("MongoDbCollection", "mongodb", func(c *Config) *string { return &c.MongoDbCollection }),
		stringKey("MongoDbCAFilePath", "mongodb", func(c *Config) *string { return &c.MongoDbCAFilePath }),
		boolKey("MongoDbEnableSSL", "mongodb", func(c *Config) *bool { return &c.MongoDbEnableSSL }),
		stringKey("RedisHost", "redis", func(c *Config) *string { return &c.RedisHost }),
		portKey("RedisPort", "redis", func(c *Config) *int { return &c.RedisPort }),
		stringKey("MemcacheHost", "memcached", func(c *Config) *string { return &c.MemcacheHost }),
		portKey("MemcachePort", "memcached", func(c *Config) *int { return &c.MemcachePort }),
		stringKey("AwsRegion", "", func(c *Config) *string { return &c.AwsRegion }),

		intKey("Port", 0, 65535, func(c *Config) *int { return &c.Port }),
		intKey("Cores", 1, 1024, func(c *Config) *int { return &c.Cores }),
		intKey("QueueSize", 0, 100000, func(c *Config) *int { return &c.QueueSize }),
		durationKey("WorkTime", true, time.Hour, func(c *Config) *time.Duration { return &c.WorkTime }),
		enumKey("WorkMode", func(c *Config) *string { return &c.WorkMode }, "burn", "sleep"),
		intKey("CalcVersion", 1, 1_000_000_000, func(c *Config) *int { return &c.CalcVersion }),
		enumKey("ResponseFormat", func(c *Config) *string { return &c.ResponseFormat }, "token", "hash"),
		intKey("MemoryCacheSize", 0, 100_000_000, func(c *Config) *int { return &c.MemoryCacheSize }),
		durationKey("CacheTTL", false, 0, func(c *Config) *time.Duration { return &c.CacheTTL }),
		durationKey("CacheTimeout", true, 0, func(c *Config) *time.Duration { return &c.CacheTimeout }),
		cacheOrderKey(),
		mysqlTableKey(),
		boolKey("MysqlCreateTable", "mysql", func(c *Config) *bool { return &c.MysqlCreateTable }),
		mysqlTLSKey(),
		pgsqlSSLModeKey(),
		boolKey("PgsqlCreateTable", "pgsql", func(c *Config) *bool { return &c.PgsqlCreateTable }),
		dynamoTableKey(),
		boolKey("DynamoCreateTable", "dynamodb", func(c *Config) *bool { return &c.DynamoCreateTable }),
		secret(stringKey("RedisPassword", "redis", func(c *Config) *string { return &c.RedisPassword })),
		backend(intKey("RedisDB", 0, 15, func(c *Config) *int { return &c.RedisDB }), "redis"),
		boolKey("RedisTLS", "redis", func(c *Config) *bool { return &c.RedisTLS }),
		addrListKey("RedisAddrs", "redis", func(c *Config) *[]string { return &c.RedisAddrs }),
		addrListKey("MemcacheServers", "memcached", func(c *Config) *[]string { return &c.MemcacheServers }),
		denyPatternKey(),
		enumKey("LogFormat", func(c *Config) *string { return &c.LogFormat }, "logfmt", "json"),
		durationKey("ShutdownDelay", false, 0, func(c *Config) *time.Duration { return &c.ShutdownDelay }),
		durationKey("ShutdownTimeout", false, 0, func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
		pprofAddrKey(),
		trustedProxiesKey(),
	}
}

// specIndex maps the lower-case name of every key to its place in specs, for
// case-insensitive lookup: the contests' files do not agree on case.
func specIndex(specs []keySpec) map[string]int {
	m := make(map[string]int, len(specs))
	for i, s := range specs {
		m[strings.ToLower(s.name)] = i
	}
	return m
}

// Keys returns every known key name in README order.
func Keys() []string {
	specs := keySpecs()
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.name
	}
	return names
}

// Entry is one key of the effective configuration and its value as it would
// be written in server.ini.
type Entry struct{ Key, Value string }

// String renders the entry as a server.ini line, quoting the value so that the
// line reads back to the same value (see quoteValue).
func (e Entry) String() string { return e.Key + " = " + quoteValue(e.Value) }

// Entries returns the effective configuration, every key in README order, for
// `-check` and the startup log line. Secrets are shown as "****" when set,
// lists are joined with ",", durations use time.Duration.String, and an unset
// port key is "".
func (c Config) Entries() []Entry { return c.entries(true) }

// entries is Entries with masking optional, so tests can check that every
// value reads back unchanged.
func (c Config) entries(mask bool) []Entry {
	specs := keySpecs()
	out := make([]Entry, len(specs))
	for i, s := range specs {
		out[i] = Entry{Key: s.name, Value: maskIf(mask && s.secret, s.get(&c))}
	}
	return out
}

// quoteValue encloses v in the first kind of quote that the scanner reads
// back unchanged: double quotes, else single quotes, else backquotes. A value
// holding all three cannot be written in server.ini; it is Go-quoted so it is
// at least readable in a listing.
func quoteValue(v string) string {
	switch {
	case !strings.Contains(v, `"`) && !strings.HasSuffix(v, `\`):
		return `"` + v + `"`
	case !strings.Contains(v, "'"):
		return "'" + v + "'"
	case !strings.Contains(v, "`"):
		return "`" + v + "`"
	}
	return strconv.Quote(v)
}

// quotable reports whether quoteValue can write v so that it reads back.
func quotable(v string) bool {
	return !strings.Contains(v, `"`) && !strings.HasSuffix(v, `\`) ||
		!strings.Contains(v, "'") || !strings.Contains(v, "`")
}

func secret(s keySpec) keySpec { s.secret = true; return s }

func backend(s keySpec, name string) keySpec { s.backend = name; return s }

// valueError is a bad value's message; Parse and Validate add where it was.
func valueError(msg string) *Error { return &Error{Msg: msg} }

// stringKey is a free-form string; an empty value means unset.
func stringKey(name, backend string, field func(*Config) *string) keySpec {
	return keySpec{
		name:    name,
		backend: backend,
		set:     func(c *Config, v string) *Error { *field(c) = v; return nil },
		get:     func(c *Config) string { return *field(c) },
	}
}

// portKey is a reference port key. The contests' files quote the number
// ("5432"); an empty value means unset and is kept as 0.
func portKey(name, backend string, field func(*Config) *int) keySpec {
	return keySpec{
		name:    name,
		backend: backend,
		set: func(c *Config, v string) *Error {
			if v == "" {
				*field(c) = 0
				return nil
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 65535 {
				return valueError("must be a port number from 1 to 65535, or empty for unset")
			}
			*field(c) = n
			return nil
		},
		get: func(c *Config) string {
			if n := *field(c); n != 0 {
				return strconv.Itoa(n)
			}
			return ""
		},
	}
}

// intKey is a decimal integer within [lo, hi].
func intKey(name string, lo, hi int, field func(*Config) *int) keySpec {
	return keySpec{
		name: name,
		set: func(c *Config, v string) *Error {
			n, err := strconv.Atoi(v)
			if err != nil || n < lo || n > hi {
				return valueError(fmt.Sprintf("must be a whole number from %d to %d", lo, hi))
			}
			*field(c) = n
			return nil
		},
		get: func(c *Config) string { return strconv.Itoa(*field(c)) },
	}
}

// durationKey is a Go duration ("4s", "100ms", "1h"; a bare "0" is zero). It
// must be positive when positive is set, else at least zero, and at most hi
// when hi is not 0.
func durationKey(name string, positive bool, hi time.Duration, field func(*Config) *time.Duration) keySpec {
	rule := "0 or more"
	if positive {
		rule = "more than 0"
	}
	if hi > 0 {
		rule += " and at most " + shortDuration(hi)
	}
	return keySpec{
		name: name,
		set: func(c *Config, v string) *Error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || (positive && d == 0) || (hi > 0 && d > hi) {
				return valueError("must be a duration such as 4s, 100ms or 1h, " + rule)
			}
			*field(c) = d
			return nil
		},
		get: func(c *Config) string { return field(c).String() },
	}
}

// shortDuration writes whole hours and minutes without the trailing zero
// units of time.Duration.String ("1h" rather than "1h0m0s").
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// boolKey is true or false, in any case. Other spellings (yes, 1, on) are
// refused rather than guessed at.
func boolKey(name, backend string, field func(*Config) *bool) keySpec {
	return keySpec{
		name:    name,
		backend: backend,
		set: func(c *Config, v string) *Error {
			switch {
			case strings.EqualFold(v, "true"):
				*field(c) = true
			case strings.EqualFold(v, "false"), v == "":
				// Empty is "unset", as for every other key: contest templates
				// leave values blank. Every boolean defaults to false.
				*field(c) = false
			default:
				return valueError("must be true or false (empty means false)")
			}
			return nil
		},
		get: func(c *Config) string { return strconv.FormatBool(*field(c)) },
	}
}

// enumKey is one of allowed, in any case, stored in lower case.
func enumKey(name string, field func(*Config) *string, allowed ...string) keySpec {
	msg := "must be " + orList(allowed)
	return keySpec{
		name: name,
		set: func(c *Config, v string) *Error {
			l := strings.ToLower(v)
			if !slices.Contains(allowed, l) {
				e := valueError(msg)
				e.Suggest = suggest(v, allowed)
				return e
			}
			*field(c) = l
			return nil
		},
		get: func(c *Config) string { return *field(c) },
	}
}

// orList writes "a or b" and "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// splitList splits a comma-separated value, trimming spaces around items and
// dropping empty ones, so a trailing comma is harmless. It returns nil for no
// items, so an empty list compares equal however it was written.
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// CheckServer checks the address of a server to connect to, host:port with a port
// from 1 to 65535, as the list keys (MemcacheServers, RedisAddrs) require; flags
// that set those keys use it to name the flag in their error.
func CheckServer(addr string) error {
	if msg := checkAddr(addr, false); msg != "" {
		return errors.New(msg + ": must be host:port with a port from 1 to 65535")
	}
	return nil
}

// checkAddr checks a host:port item and says what is wrong with it, or "". A
// listening address may leave the host empty and use port 0 (any free port).
func checkAddr(item string, listen bool) string {
	host, port, err := net.SplitHostPort(item)
	if err != nil {
		return "is not host:port"
	}
	if !listen && host == "" {
		return "has no host"
	}
	low := 1
	if listen {
		low = 0
	}
	if n, err := strconv.Atoi(port); err != nil || n < low || n > 65535 {
		return fmt.Sprintf("has no port from %d to 65535", low)
	}
	return ""
}

// addrListKey is a comma-separated list of host:port items.
func addrListKey(name, backend string, field func(*Config) *[]string) keySpec {
	return keySpec{
		name:    name,
		backend: backend,
		set: func(c *Config, v string) *Error {
			items := splitList(v)
			for _, it := range items {
				if msg := checkAddr(it, false); msg != "" {
					return valueError(fmt.Sprintf("item %q %s: must be a comma-separated list of host:port, ports from 1 to 65535", it, msg))
				}
			}
			*field(c) = items
			return nil
		},
		get: func(c *Config) string { return strings.Join(*field(c), ",") },
	}
}

func pprofAddrKey() keySpec {
	return keySpec{
		name: "PprofAddr",
		set: func(c *Config, v string) *Error {
			if v != "" && checkAddr(v, true) != "" {
				return valueError("must be host:port or :port with a port from 0 (any free port) to 65535, or empty for off")
			}
			c.PprofAddr = v
			return nil
		},
		get: func(c *Config) string { return c.PprofAddr },
	}
}

// trustedProxiesKey is a comma-separated list of CIDR prefixes; a bare address
// is its own /32 or /128. Prefixes are kept masked (10.1.2.3/8 is 10.0.0.0/8).
func trustedProxiesKey() keySpec {
	return keySpec{
		name: "TrustedProxies",
		set: func(c *Config, v string) *Error {
			var out []netip.Prefix
			for _, it := range splitList(v) {
				p, err := netip.ParsePrefix(it)
				if err != nil {
					a, aerr := netip.ParseAddr(it)
					if aerr != nil || a.Zone() != "" {
						return valueError(fmt.Sprintf("item %q is not a CIDR prefix: must be a comma-separated list of CIDR prefixes (10.0.0.0/8, 2001:db8::/32) or addresses", it))
					}
					p = netip.PrefixFrom(a, a.BitLen())
				}
				out = append(out, p.Masked())
			}
			c.TrustedProxies = out
			return nil
		},
		get: func(c *Config) string {
			items := make([]string, len(c.TrustedProxies))
			for i, p := range c.TrustedProxies {
				items[i] = p.String()
			}
			return strings.Join(items, ",")
		},
	}
}

// denyPatternKey accumulates: every occurrence of the key adds its
// comma-separated patterns.
func denyPatternKey() keySpec {
	return keySpec{
		name:   "DenyPattern",
		repeat: true,
		set: func(c *Config, v string) *Error {
			c.DenyPattern = append(c.DenyPattern, splitList(v)...)
			return nil
		},
		get: func(c *Config) string { return strings.Join(c.DenyPattern, ",") },
	}
}

func cacheOrderKey() keySpec {
	names := CacheBackends()
	return keySpec{
		name: "CacheOrder",
		set: func(c *Config, v string) *Error {
			items := splitList(v)
			for i, it := range items {
				l := strings.ToLower(it)
				if !slices.Contains(names, l) {
					e := valueError(fmt.Sprintf("item %q: must be a comma-separated list of %s, each at most once", it, orList(names)))
					e.Suggest = suggest(it, names)
					return e
				}
				if slices.Contains(items[:i], l) {
					return valueError(fmt.Sprintf("%q is listed twice: each backend may appear at most once", l))
				}
				items[i] = l
			}
			c.CacheOrder = items
			return nil
		},
		get: func(c *Config) string { return strings.Join(c.CacheOrder, ",") },
	}
}

func mysqlTableKey() keySpec {
	return keySpec{
		name:    "MysqlTable",
		backend: "mysql",
		set: func(c *Config, v string) *Error {
			if !sqlname.Valid(v) {
				return valueError("must be an SQL identifier: " + sqlname.Rule)
			}
			c.MysqlTable = v
			return nil
		},
		get: func(c *Config) string { return c.MysqlTable },
	}
}

// pgsqlSSLModeKey takes libpq's sslmode values (RDS accepts require and the verify
// modes with its CA bundle).
func pgsqlSSLModeKey() keySpec {
	allowed := []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
	return keySpec{
		name:    "PgsqlSSLMode",
		backend: "pgsql",
		set: func(c *Config, v string) *Error {
			l := strings.ToLower(v)
			if !slices.Contains(allowed, l) {
				e := valueError("must be " + orList(allowed))
				e.Suggest = suggest(v, allowed)
				return e
			}
			c.PgsqlSSLMode = l
			return nil
		},
		get: func(c *Config) string { return c.PgsqlSSLMode },
	}
}

// dynamoTableKey takes a DynamoDB table name: 3 to 255 of a-z, A-Z, 0-9, '_', '-'
// and '.'.
func dynamoTableKey() keySpec {
	return keySpec{
		name:    "DynamoTable",
		backend: "dynamodb",
		set: func(c *Config, v string) *Error {
			if v != "" && !validDynamoTable(v) {
				return valueError("must be a DynamoDB table name: 3 to 255 characters of a-z, A-Z, 0-9, _, - and .")
			}
			c.DynamoTable = v
			return nil
		},
		get: func(c *Config) string { return c.DynamoTable },
	}
}

func validDynamoTable(s string) bool {
	if len(s) < 3 || len(s) > 255 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// mysqlTLSKey takes the go-sql-driver/mysql tls values; "false" and "" both
// mean off and are stored as "".
func mysqlTLSKey() keySpec {
	allowed := []string{"false", "true", "skip-verify", "preferred"}
	return keySpec{
		name:    "MysqlTLS",
		backend: "mysql",
		set: func(c *Config, v string) *Error {
			l := strings.ToLower(v)
			if l != "" && !slices.Contains(allowed, l) {
				e := valueError("must be " + orList(allowed) + ", or empty for off")
				e.Suggest = suggest(v, allowed)
				return e
			}
			if l == "false" {
				l = ""
			}
			c.MysqlTLS = l
			return nil
		},
		get: func(c *Config) string { return c.MysqlTLS },
	}
}
