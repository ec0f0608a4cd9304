package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Validate checks every field against the rules Parse applies (the caller may
// have changed fields after Parse, from flags for instance) and the rules that
// tie keys together:
//
//   - MysqlHost set needs MysqlDb;
//   - RedisHost and RedisAddrs exclude each other, as do MemcacheHost and
//     MemcacheServers (a caller that takes -memcache-server should clear
//     MemcacheHost when it sets MemcacheServers);
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

	cross := func(key, msg string) { errs = append(errs, c.keyError(key, values[key], msg)) }
	if c.MysqlHost != "" && c.MysqlDb == "" {
		cross("MysqlDb", "must be set when MysqlHost is set")
	}
	if c.PgsqlHost != "" && c.PgsqlDb == "" {
		cross("PgsqlDb", "must be set when PgsqlHost is set")
	}
	if c.MongoDbHost != "" && c.MongoDbDatabase == "" {
		cross("MongoDbDatabase", "must be set when MongoDbHost is set")
	}
	if c.RedisHost != "" && len(c.RedisAddrs) > 0 {
		cross("RedisAddrs", "cannot be used together with RedisHost: list every Redis server in RedisAddrs, or use RedisHost and RedisPort")
	}
	if c.MemcacheHost != "" && len(c.MemcacheServers) > 0 {
		cross("MemcacheServers", "cannot be used together with MemcacheHost: list every memcached server in MemcacheServers, or use MemcacheHost and MemcachePort")
	}
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
	var out []string
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
