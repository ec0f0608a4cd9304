package file

import (
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/cache"
	"github.com/unicorn-rentals/unicorn/internal/cache/cachetest"
	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// newCache returns a cache on o, with Dir a fresh temporary directory and Version 1
// unless o sets them.
func newCache(t testing.TB, o Options) *Cache {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Version == 0 {
		o.Version = 1
	}
	c, err := New(o)
	if err != nil {
		t.Fatalf("New(%+v): %v", o, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func exists(t testing.TB, path string) bool {
	t.Helper()
	_, err := os.Lstat(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// tempFiles returns the temporary files of writes anywhere below dir.
func tempFiles(t testing.TB, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestNewChecksOptions(t *testing.T) {
	for name, tc := range map[string]struct {
		o  Options
		ok bool
	}{
		"an absolute dir is accepted":    {Options{Dir: "/mnt/efs", Version: 1}, true},
		"a relative dir is accepted":     {Options{Dir: "cache", Version: 7}, true},
		"an empty dir is refused":        {Options{Version: 1}, false},
		"version 0 is refused":           {Options{Dir: "/x"}, false},
		"a version too large is refused": {Options{Dir: "/x", Version: calc.MaxVersion + 1}, false},
		"a negative TTL is refused":      {Options{Dir: "/x", Version: 1, TTL: -time.Second}, false},
		"a negative bound is refused":    {Options{Dir: "/x", Version: 1, MaxInFlight: -1}, false},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := New(tc.o)
			if tc.ok != (err == nil) {
				t.Fatalf("New(%+v) error %v, want ok=%v", tc.o, err, tc.ok)
			}
			if err != nil {
				return
			}
			if !filepath.IsAbs(c.Dir()) {
				t.Errorf("Dir() = %q, want an absolute path", c.Dir())
			}
			if cap(c.sem) != DefaultMaxInFlight {
				t.Errorf("MaxInFlight 0 gave %d slots, want %d", cap(c.sem), DefaultMaxInFlight)
			}
		})
	}
}

func TestNewDoesNotNeedTheDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not-mounted-yet")
	c := newCache(t, Options{Dir: dir})
	if exists(t, dir) {
		t.Fatal("New created the directory")
	}
	if err := c.Set(context.Background(), "k", calc.Sum(1, []byte("k"))); err == nil {
		t.Fatal("Set on a missing directory succeeded")
	}
	if exists(t, dir) {
		t.Fatal("Set created the missing directory: writes would land on the local disk under the mount point")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cachetest.Set(t, c, c.version, "k")
	cachetest.WantHit(t, c, c.version, "k")
}

func TestConformance(t *testing.T) {
	dir := t.TempDir()
	cachetest.Conformance(t, cachetest.Backend{
		New: func(t testing.TB, version int) cachetest.Shared {
			return newCache(t, Options{Dir: dir, Version: version})
		},
		Put: func(t testing.TB, version int, key string, v []byte) {
			path := newCache(t, Options{Dir: dir, Version: version}).path(key)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, v, 0o644); err != nil {
				t.Fatal(err)
			}
		},
	})
}

func TestEntriesFollowTheLayout(t *testing.T) {
	c := newCache(t, Options{Version: 3})
	cachetest.Set(t, c, c.version, "testing")
	sk := cache.StorageKey(3, "testing")
	h := sk[strings.LastIndexByte(sk, ':')+1:]
	path := filepath.Join(c.Dir(), "unicorn", "v3", h[0:2], h[2:4], h)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("entry not at %s: %v", path, err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("entry mode %v, want 0644 so that other hosts' users can read it", fi.Mode().Perm())
	}
	v, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := cache.EncodeValue(3, "testing", calc.Sum(3, []byte("testing"))); string(v) != string(want) {
		t.Errorf("entry holds %q, want %q", v, want)
	}
	if tmp := tempFiles(t, c.Dir()); len(tmp) != 0 {
		t.Errorf("temporary files left behind: %v", tmp)
	}
}

func TestGetMissesAnAbsentKey(t *testing.T) {
	c := newCache(t, Options{})
	cachetest.WantMiss(t, c, "never stored")
	// Also when nothing at all was ever stored (no unicorn directory yet).
	if exists(t, filepath.Join(c.Dir(), "unicorn")) {
		t.Fatal("Get created directories")
	}
}

func TestTTL(t *testing.T) {
	old := time.Now().Add(-2 * time.Hour)
	t.Run("an entry older than the TTL is a miss and is removed", func(t *testing.T) {
		c := newCache(t, Options{TTL: time.Hour})
		cachetest.Set(t, c, c.version, "k")
		if err := os.Chtimes(c.path("k"), old, old); err != nil {
			t.Fatal(err)
		}
		cachetest.WantMiss(t, c, "k")
		if exists(t, c.path("k")) {
			t.Fatal("expired entry was not removed")
		}
	})
	t.Run("an entry younger than the TTL hits", func(t *testing.T) {
		c := newCache(t, Options{TTL: time.Hour})
		cachetest.Set(t, c, c.version, "k")
		recent := time.Now().Add(-30 * time.Minute)
		if err := os.Chtimes(c.path("k"), recent, recent); err != nil {
			t.Fatal(err)
		}
		cachetest.WantHit(t, c, c.version, "k")
	})
	t.Run("a TTL of 0 never expires", func(t *testing.T) {
		c := newCache(t, Options{})
		cachetest.Set(t, c, c.version, "k")
		ancient := time.Now().AddDate(-10, 0, 0)
		if err := os.Chtimes(c.path("k"), ancient, ancient); err != nil {
			t.Fatal(err)
		}
		cachetest.WantHit(t, c, c.version, "k")
	})
	t.Run("rewriting an expired entry makes it live again", func(t *testing.T) {
		c := newCache(t, Options{TTL: time.Hour})
		cachetest.Set(t, c, c.version, "k")
		if err := os.Chtimes(c.path("k"), old, old); err != nil {
			t.Fatal(err)
		}
		cachetest.Set(t, c, c.version, "k")
		cachetest.WantHit(t, c, c.version, "k")
	})
}

// TestTamperedValueIsCorrupt adds to the conformance suite's cases what only a
// file can hold, and checks that the error names the file.
func TestTamperedValueIsCorrupt(t *testing.T) {
	const key = "3615-7184-2117"
	for name, content := range map[string][]byte{
		"garbage bytes": []byte("not a unicorn"),
		"a huge file":   make([]byte, 10<<20),
	} {
		t.Run(name, func(t *testing.T) {
			c := newCache(t, Options{})
			cachetest.Set(t, c, c.version, key)
			if err := os.WriteFile(c.path(key), content, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := c.Get(context.Background(), key)
			if !errors.Is(err, cache.ErrCorrupt) {
				t.Fatalf("Get: err %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), c.path(key)) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestPurge(t *testing.T) {
	const text = "H@XX0RR333DDD"
	matching := []string{
		"aaa-H@XX0RR333DDD-bbb",
		base64.StdEncoding.EncodeToString([]byte("ICanHaz" + text + "?-8999")),
	}
	keeping := []string{
		"3615-7184-2117",
		base64.StdEncoding.EncodeToString([]byte("ICanHazUnicorn?-8999")),
	}
	if strings.Contains(matching[1], text) {
		t.Fatal("the base64 key must not contain the text itself")
	}
	dir := t.TempDir()
	v1 := newCache(t, Options{Dir: dir, Version: 1})
	v2 := newCache(t, Options{Dir: dir, Version: 2})
	for _, c := range []*Cache{v1, v2} {
		for _, k := range append(slices.Clone(matching), keeping...) {
			cachetest.Set(t, c, c.version, k)
		}
	}

	// Files that are not entries: garbage named like an entry, a value stored
	// under the wrong name, and temporary files old and fresh.
	garbage := filepath.Join(filepath.Dir(v1.path(keeping[0])), strings.Repeat("ab", 32))
	misnamed := filepath.Join(filepath.Dir(v1.path(keeping[0])), strings.Repeat("cd", 32))
	oldTemp := filepath.Join(filepath.Dir(v1.path(keeping[0])), tempPrefix+"crashed")
	oldTemp2 := filepath.Join(filepath.Dir(v2.path(matching[0])), tempPrefix+"crashed-too")
	freshTemp := filepath.Join(filepath.Dir(v1.path(keeping[1])), tempPrefix+"writing")
	for path, content := range map[string][]byte{
		garbage:   []byte("no newline " + text),
		misnamed:  cache.EncodeValue(1, "zzz-"+text, calc.Sum(1, []byte("zzz-"+text))),
		oldTemp:   []byte("half a value"),
		oldTemp2:  []byte("half a value"),
		freshTemp: []byte("half a value"),
	} {
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	for _, p := range []string{oldTemp, oldTemp2} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}

	var seen []string // Purge promises not to call match concurrently; -race checks it
	match := func(key string) bool {
		seen = append(seen, key)
		decoded, _ := base64.StdEncoding.DecodeString(key)
		return strings.Contains(key, text) || strings.Contains(string(decoded), text)
	}
	n, err := v1.Purge(context.Background(), match)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("Purge removed %d entries, want 4 (2 keys x 2 versions)", n)
	}
	slices.Sort(seen)
	var want []string
	for _, k := range append(slices.Clone(matching), keeping...) {
		want = append(want, k, k)
	}
	slices.Sort(want)
	if !slices.Equal(seen, want) {
		t.Errorf("match was called with %q, want every stored key once per version %q", seen, want)
	}
	for _, c := range []*Cache{v1, v2} {
		for _, k := range matching {
			cachetest.WantMiss(t, c, k)
		}
		for _, k := range keeping {
			cachetest.WantHit(t, c, c.version, k)
		}
	}
	for path, want := range map[string]bool{garbage: true, misnamed: true, freshTemp: true, oldTemp: false, oldTemp2: false} {
		if got := exists(t, path); got != want {
			t.Errorf("%s exists = %v after Purge, want %v", filepath.Base(path), got, want)
		}
	}

	n, err = v2.Purge(context.Background(), match)
	if n != 0 || err != nil {
		t.Errorf("second Purge = %d, %v, want 0, nil", n, err)
	}
}

func TestPurgeOfAnEmptyCache(t *testing.T) {
	c := newCache(t, Options{})
	n, err := c.Purge(context.Background(), func(string) bool { return true })
	if n != 0 || err != nil {
		t.Fatalf("Purge = %d, %v, want 0, nil", n, err)
	}
}

func TestPurgeOfAMissingDirFails(t *testing.T) {
	c := newCache(t, Options{Dir: filepath.Join(t.TempDir(), "not-mounted")})
	n, err := c.Purge(context.Background(), func(string) bool { return true })
	if n != 0 || err == nil {
		t.Fatalf("Purge = %d, %v, want 0 and an error", n, err)
	}
}

func TestPurgeStopsWhenTheContextEnds(t *testing.T) {
	c := newCache(t, Options{})
	for _, k := range []string{"a", "b", "c"} {
		cachetest.Set(t, c, c.version, k)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var calls int
	n, err := c.Purge(ctx, func(string) bool {
		calls++
		cancel()
		return true
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Purge err %v, want context.Canceled", err)
	}
	if calls != 1 || n != 0 {
		t.Errorf("after cancelling in the first match: %d calls, %d removed; want 1 and 0", calls, n)
	}
}

func TestPing(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "a-file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		dir string
		ok  bool
	}{
		"a writable directory passes":   {dir, true},
		"a missing directory fails":     {filepath.Join(dir, "missing"), false},
		"a file instead of a dir fails": {notDir, false},
	} {
		t.Run(name, func(t *testing.T) {
			c := newCache(t, Options{Dir: tc.dir})
			err := c.Ping(context.Background())
			if tc.ok != (err == nil) {
				t.Fatalf("Ping: %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), tc.dir) {
				t.Errorf("error %q does not name the directory", err)
			}
		})
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("Ping left files behind: %v", entries)
	}
	if exists(t, filepath.Join(dir, "missing")) {
		t.Error("Ping created the missing directory")
	}
}

func TestConcurrentWritersNeverExposeATornValue(t *testing.T) {
	const key = "SUNhbkhhelVuaWNvcm4/LTg5OTk="
	c := newCache(t, Options{})
	want := calc.Sum(1, []byte(key))
	ctx := context.Background()

	stop := make(chan struct{})
	var readers, writers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := c.Get(ctx, key)
				switch {
				case errors.Is(err, cache.ErrMiss):
				case err != nil:
					t.Errorf("Get during writes: %v", err)
					return
				case got != want:
					t.Errorf("Get during writes = %x, want %x", got, want)
					return
				}
			}
		})
	}
	for range 8 {
		writers.Go(func() {
			for range 200 {
				if err := c.Set(ctx, key, want); err != nil {
					t.Errorf("Set: %v", err)
					return
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	cachetest.WantHit(t, c, c.version, key)
	if tmp := tempFiles(t, c.Dir()); len(tmp) != 0 {
		t.Errorf("temporary files left behind: %v", tmp)
	}
}

func TestAnEndedContextTouchesNothing(t *testing.T) {
	c := newCache(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get: %v, want context.Canceled", err)
	}
	if err := c.Set(ctx, "k", calc.Result{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Set: %v, want context.Canceled", err)
	}
	if err := c.Delete(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete: %v, want context.Canceled", err)
	}
	if err := c.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping: %v, want context.Canceled", err)
	}
	if _, err := c.Purge(ctx, func(string) bool { return true }); !errors.Is(err, context.Canceled) {
		t.Errorf("Purge: %v, want context.Canceled", err)
	}
	if exists(t, filepath.Join(c.Dir(), "unicorn")) {
		t.Error("an operation with an ended context wrote to the directory")
	}
}

func BenchmarkGetHit(b *testing.B) {
	c := newCache(b, Options{})
	cachetest.Set(b, c, c.version, "3615-7184-2117")
	// A deadline, as Chain gives every shared-tier call, takes the goroutine path.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, "3615-7184-2117"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSet(b *testing.B) {
	c := newCache(b, Options{})
	r := calc.Sum(1, []byte("3615-7184-2117"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Set(ctx, "3615-7184-2117", r); err != nil {
			b.Fatal(err)
		}
	}
}
