// Package file is the shared file system cache backend (FsPath): one file per key on
// a directory that several hosts mount, such as an EFS or NFS share.
//
// Entries live at <Dir>/unicorn/v<Version>/<h[0:2]>/<h[2:4]>/<h>, where h is the hex
// SHA-256 of the key (the hash in cache.StorageKey), so no directory grows beyond a
// few hundred entries and versions never collide. Each file holds
// cache.EncodeValue(version, key, result).
//
// File system calls take no context and a network mount can hang, so every operation
// runs its system calls in a goroutine that holds one of MaxInFlight slots and returns
// when its context ends even if the calls have not. A hung mount therefore costs at
// most MaxInFlight goroutines and never blocks a caller beyond its deadline.
package file

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// Options configure a Cache.
type Options struct {
	// Dir is the shared directory (FsPath). A relative path is made absolute at New.
	Dir string
	// Version is the CalcVersion whose entries Get and Set use.
	Version int
	// TTL is how long an entry lives after it was written, judged by the file's
	// modification time; an older entry is a miss and is removed. Zero means entries
	// never expire.
	TTL time.Duration
	// MaxInFlight bounds the operations that may be inside file system calls at
	// once, and so the goroutines a hung mount can hold. If zero, 64 is used.
	MaxInFlight int
}

// DefaultMaxInFlight is the MaxInFlight used when Options leave it zero.
const DefaultMaxInFlight = 64

// tempPrefix starts the name of every temporary file a write creates. Purge removes
// such files once they are older than staleTemp: they are what a writer that crashed
// between create and rename leaves behind.
const tempPrefix = ".tmp-"

// staleTemp is the age beyond which Purge treats a temporary file as abandoned. No
// write takes anywhere near this long, so a fresh file is never pulled from under a
// writer on another host.
const staleTemp = time.Hour

// maxPurgeRead bounds what Purge reads of one entry file. A real entry is a token,
// a newline and a key of at most a few kilobytes; anything larger is not ours and is
// left alone.
const maxPurgeRead = 1 << 20

// purgeWorkers is how many shard directories Purge works on at once (fewer when
// MaxInFlight is smaller). Each file on a network mount costs a round trip or more, so
// a sequential walk of a large cache would take minutes.
const purgeWorkers = 8

// Cache stores entries as files under a shared directory. It is safe for concurrent
// use, also by several processes and hosts sharing the directory.
type Cache struct {
	dir     string // absolute Options.Dir
	root    string // dir/unicorn: everything this package writes (Ping aside) lives below
	base    string // root/v<version>
	version int
	ttl     time.Duration
	sem     chan struct{} // one slot per operation inside file system calls
}

var (
	_ cache.Cache   = (*Cache)(nil)
	_ cache.Deleter = (*Cache)(nil)
	_ cache.Pinger  = (*Cache)(nil)
	_ cache.Purger  = (*Cache)(nil)
)

// New checks o and returns a Cache. It does not touch the file system: the shared
// mount may appear after the server starts, and Ping reports whether it is there.
func New(o Options) (*Cache, error) {
	if o.Dir == "" {
		return nil, errors.New("file cache: Dir is empty")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("file cache: Dir %q: %w", o.Dir, err)
	}
	if err := cache.CheckOptions(o.Version, o.TTL, 0); err != nil {
		return nil, fmt.Errorf("file cache: %w", err)
	}
	if o.MaxInFlight < 0 {
		return nil, fmt.Errorf("file cache: MaxInFlight %d is negative", o.MaxInFlight)
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	root := filepath.Join(dir, "unicorn")
	return &Cache{
		dir:     dir,
		root:    root,
		base:    filepath.Join(root, "v"+strconv.Itoa(o.Version)),
		version: o.Version,
		ttl:     o.TTL,
		sem:     make(chan struct{}, o.MaxInFlight),
	}, nil
}

// Dir returns the absolute directory the cache stores under.
func (c *Cache) Dir() string { return c.dir }

// path returns the file that holds key at this cache's version.
func (c *Cache) path(key string) string {
	sum := sha256.Sum256([]byte(key))
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	b := make([]byte, 0, len(c.base)+3+3+1+len(h))
	b = append(b, c.base...)
	b = append(b, filepath.Separator)
	b = append(b, h[0:2]...)
	b = append(b, filepath.Separator)
	b = append(b, h[2:4]...)
	b = append(b, filepath.Separator)
	b = append(b, h[:]...)
	return string(b)
}

// do runs fn, which makes file system calls, under ctx: it waits for a free slot
// (returning ctx.Err() if ctx ends first), runs fn in a goroutine that releases the
// slot when fn returns, and returns ctx.Err() if ctx ends before fn does. fn must
// not write anything the caller reads unless do returned nil.
func (c *Cache) do(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if ctx.Done() == nil {
		// A context that never ends cannot be waited against, so a goroutine would
		// only cost an allocation; the slot still bounds how many callers a hung
		// mount can hold.
		defer func() { <-c.sem }()
		return fn()
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-c.sem }()
		done <- fn()
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// Prefer a result that arrived at the same moment: the work is done.
		select {
		case err := <-done:
			return err
		default:
			return ctx.Err()
		}
	}
}

// Get returns the result stored for key, cache.ErrMiss if there is none or it has
// expired, an error matching cache.ErrCorrupt if the file does not hold exactly the
// answer for key at this version, or another error if the file system failed.
func (c *Cache) Get(ctx context.Context, key string) (calc.Result, error) {
	var r calc.Result
	err := c.do(ctx, func() error {
		var err error
		r, err = c.get(key)
		return err
	})
	if err != nil {
		return calc.Result{}, err
	}
	return r, nil
}

func (c *Cache) get(key string) (calc.Result, error) {
	path := c.path(key)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return calc.Result{}, cache.ErrMiss
	}
	if err != nil {
		return calc.Result{}, fmt.Errorf("file cache: get: %w", err)
	}
	defer f.Close()
	if c.ttl > 0 {
		fi, err := f.Stat()
		if err != nil {
			return calc.Result{}, fmt.Errorf("file cache: get: %w", err)
		}
		// The modification time comes from the file server's clock, the age from
		// ours: hosts are expected to keep their clocks in step (NTP), and a skew
		// of seconds does not matter for a TTL of minutes or more.
		if time.Since(fi.ModTime()) > c.ttl {
			c.removeExpired(path, fi)
			return calc.Result{}, cache.ErrMiss
		}
	}
	// A real entry has exactly this many bytes. Reading one more tells a longer
	// file from a right one without reading an arbitrarily large file.
	want := calc.TokenSize + 1 + len(key)
	buf := make([]byte, want+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return calc.Result{}, fmt.Errorf("file cache: get: read %s: %w", path, err)
	}
	r, err := cache.DecodeValue(c.version, key, buf[:n])
	if err != nil {
		return calc.Result{}, fmt.Errorf("file cache: %s: %w", path, err)
	}
	return r, nil
}

// removeExpired removes the expired entry fi at path unless another writer has
// replaced it since it was opened (a rename gives the name a new file), so that a
// fresh value written by another host is not thrown away. A failure is ignored: the
// entry stays a miss for every reader, and the next write replaces it.
func (c *Cache) removeExpired(path string, fi fs.FileInfo) {
	now, err := os.Stat(path)
	if err != nil || !os.SameFile(fi, now) {
		return
	}
	_ = os.Remove(path)
}

// Set stores r for key. The value is written to a temporary file in the entry's
// directory and renamed over the entry, so a reader on any host sees the old value
// or the new one, never part of one.
func (c *Cache) Set(ctx context.Context, key string, r calc.Result) error {
	v := cache.EncodeValue(c.version, key, r)
	return c.do(ctx, func() error { return c.set(c.path(key), v) })
}

func (c *Cache) set(path string, v []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if errors.Is(err, fs.ErrNotExist) {
		if err := c.mkdirs(dir); err != nil {
			return err
		}
		f, err = os.CreateTemp(dir, tempPrefix+"*")
	}
	if err != nil {
		return fmt.Errorf("file cache: set: %w", err)
	}
	tmp := f.Name()
	// No Sync: on EFS an fsync costs several round trips, and a write lost in a
	// crash only costs one recomputation of a deterministic answer.
	_, err = f.Write(v)
	if err == nil {
		// CreateTemp makes the file 0o600; other hosts may run the server as
		// another user.
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("file cache: set: %w", err)
	}
	return nil
}

// mkdirs creates dir, the shard directory of an entry, and its parents up to Dir,
// but never Dir itself: if Dir is missing the shared mount is probably not there, and
// creating it would put the cache on the local disk, hidden under the mount once it
// appears.
func (c *Cache) mkdirs(dir string) error {
	fi, err := os.Stat(c.dir)
	if err != nil {
		return fmt.Errorf("file cache: set: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("file cache: set: %s is not a directory", c.dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("file cache: set: %w", err)
	}
	return nil
}

// Delete removes the entry for key at this version. An absent entry is not an error.
func (c *Cache) Delete(ctx context.Context, key string) error {
	return c.do(ctx, func() error {
		err := os.Remove(c.path(key))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("file cache: delete: %w", err)
		}
		return nil
	})
}

// Ping reports whether Dir exists, is a directory and accepts new files, by creating
// and removing a probe file in it. It creates nothing else, so a mount that is not
// there yet stays visible as an error.
func (c *Cache) Ping(ctx context.Context) error {
	return c.do(ctx, func() error {
		fi, err := os.Stat(c.dir)
		if err != nil {
			return fmt.Errorf("file cache: ping: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("file cache: ping: %s is not a directory", c.dir)
		}
		f, err := os.CreateTemp(c.dir, ".unicorn-ping-*")
		if err != nil {
			return fmt.Errorf("file cache: ping: %w", err)
		}
		err = f.Close()
		if rerr := os.Remove(f.Name()); err == nil {
			err = rerr
		}
		if err != nil {
			return fmt.Errorf("file cache: ping: %w", err)
		}
		return nil
	})
}

// Close releases nothing: a Cache holds no open files between operations, and an
// operation still stuck in a hung mount finishes on its own. It exists so that every
// backend can be closed alike.
func (c *Cache) Close() error { return nil }

// Purge removes every entry, of any version, whose original key (read back from the
// file with cache.ValueKey) match accepts, and returns how many it removed. It also
// removes temporary files older than an hour, which crashed writers leave behind.
// Files that are not entries of this layout, or whose content does not name a key
// hashing to their name, are left alone and not counted.
//
// Shard directories are worked on in parallel, but match is never called
// concurrently. When ctx ends Purge stops and returns what it removed so far with
// ctx.Err(); a file system call already under way may still remove one more entry
// per worker. Other errors do not stop the walk: Purge removes what it can and
// returns the first error.
func (c *Cache) Purge(ctx context.Context, match func(key string) bool) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &purge{c: c, ctx: ctx, match: match}
	leaves := make(chan string)
	var wg sync.WaitGroup
	for range min(purgeWorkers, cap(c.sem)) {
		wg.Go(func() {
			for dir := range leaves {
				p.fail(c.do(ctx, func() error { return p.leaf(dir) }))
			}
		})
	}
	p.walk(leaves)
	close(leaves)
	wg.Wait()
	n := int(p.removed.Load())
	if err := ctx.Err(); err != nil {
		return n, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nerrs > 1 {
		return n, fmt.Errorf("%w (and %d more errors)", p.err, p.nerrs-1)
	}
	return n, p.err
}

// purge is the state of one Purge call.
type purge struct {
	c     *Cache
	ctx   context.Context
	match func(string) bool

	removed atomic.Int64

	mu    sync.Mutex // guards err and serialises match
	err   error
	nerrs int
}

// fail records err (the first one is returned, the others counted).
func (p *purge) fail(err error) {
	if err == nil || p.ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nerrs++
	if p.err == nil {
		p.err = err
	}
}

// walk sends every shard leaf directory below Dir/unicorn/v*/ to leaves, reading
// each directory level under a slot, until done or ctx ends.
func (p *purge) walk(leaves chan<- string) {
	versions, err := p.readDir(p.c.root, isVersion)
	if errors.Is(err, fs.ErrNotExist) {
		// Nothing was ever stored, unless Dir itself is missing: then the mount
		// is probably gone, and "0 removed" would be a lie.
		p.fail(p.c.do(p.ctx, func() error {
			if _, err := os.Stat(p.c.dir); err != nil {
				return fmt.Errorf("file cache: purge: %w", err)
			}
			return nil
		}))
		return
	}
	p.fail(err)
	for _, v := range versions {
		tops, err := p.readDir(v, isShard)
		p.fail(err)
		for _, top := range tops {
			subs, err := p.readDir(top, isShard)
			p.fail(err)
			for _, sub := range subs {
				select {
				case leaves <- sub:
				case <-p.ctx.Done():
					return
				}
			}
		}
	}
}

// readDir returns the paths of the subdirectories of dir whose names pass ok.
func (p *purge) readDir(dir string, ok func(string) bool) ([]string, error) {
	var paths []string
	err := p.c.do(p.ctx, func() error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.IsDir() && ok(e.Name()) {
				paths = append(paths, filepath.Join(dir, e.Name()))
			}
		}
		return nil
	})
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("file cache: purge: %w", err)
		}
		return nil, err
	}
	return paths, nil
}

// leaf purges one shard directory. It runs inside do, so it checks ctx between files
// itself.
func (p *purge) leaf(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // removed by someone else since the walk saw it
	}
	if err != nil {
		return fmt.Errorf("file cache: purge: %w", err)
	}
	var first error
	for _, e := range entries {
		if p.ctx.Err() != nil {
			return nil
		}
		name := e.Name()
		path := filepath.Join(dir, name)
		var err error
		switch {
		case strings.HasPrefix(name, tempPrefix):
			err = p.temp(path, e)
		case isHash(name) && e.Type().IsRegular():
			err = p.entry(path, name)
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

// temp removes the temporary file path if it is stale.
func (p *purge) temp(path string, e fs.DirEntry) error {
	fi, err := e.Info()
	if errors.Is(err, fs.ErrNotExist) {
		return nil // renamed into place meanwhile
	}
	if err != nil {
		return fmt.Errorf("file cache: purge: %w", err)
	}
	if time.Since(fi.ModTime()) <= staleTemp {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file cache: purge: %w", err)
	}
	return nil
}

// entry removes the entry file path, named hash, if its key matches. A file it
// cannot read, or that is too long to be an entry, is left alone: it names no key
// that could be matched, and a failing mount shows in the directory reads anyway.
func (p *purge) entry(path, hash string) error {
	v, ok := readAtMost(path, maxPurgeRead)
	if !ok {
		return nil
	}
	key, ok := cache.ValueKey(v)
	if !ok {
		return nil
	}
	sum := sha256.Sum256([]byte(key))
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	if !bytes.Equal(h[:], []byte(hash)) {
		return nil // not the key this file is named for: garbage, left alone
	}
	p.mu.Lock()
	// Checked under the lock, so that once ctx ends (perhaps from inside match)
	// no other worker calls match again.
	m := p.ctx.Err() == nil && p.match(key)
	p.mu.Unlock()
	if !m || p.ctx.Err() != nil {
		return nil
	}
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // another host purged it first
	}
	if err != nil {
		return fmt.Errorf("file cache: purge: %w", err)
	}
	p.removed.Add(1)
	return nil
}

// readAtMost returns the content of path and true, or false if it cannot be read or
// is longer than limit.
func readAtMost(path string, limit int64) ([]byte, bool) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	v, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil || int64(len(v)) > limit {
		return nil, false
	}
	return v, true
}

// isVersion reports whether name is a version directory, v<decimal>.
func isVersion(name string) bool {
	digits, ok := strings.CutPrefix(name, "v")
	if !ok || digits == "" {
		return false
	}
	for i := range len(digits) {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	return true
}

// isShard reports whether name is a shard directory: two lower-case hex digits.
func isShard(name string) bool { return len(name) == 2 && isLowerHex(name) }

// isHash reports whether name is an entry file: a hex SHA-256.
func isHash(name string) bool { return len(name) == 2*sha256.Size && isLowerHex(name) }

func isLowerHex(s string) bool {
	for i := range len(s) {
		if (s[i] < '0' || s[i] > '9') && (s[i] < 'a' || s[i] > 'f') {
			return false
		}
	}
	return true
}
