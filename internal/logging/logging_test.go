package logging

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDirectoryGetsCalcserverLog(t *testing.T) {
	dir := t.TempDir()
	for name, loc := range map[string]string{"existing directory": dir, "trailing slash": dir + "/"} {
		t.Run(name, func(t *testing.T) {
			f, err := OpenFile(loc)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Path() != filepath.Join(dir, FileName) {
				t.Fatalf("path %q", f.Path())
			}
		})
	}
}

func TestReopenFollowsLogrotate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.log")
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	log, err := New(f, "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("before")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	log.Info("still old file")
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	log.Info("after")
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), `"msg":"before"`) || !strings.Contains(string(old), "still old file") {
		t.Fatalf("rotated file: %s", old)
	}
	if !strings.Contains(string(cur), `"msg":"after"`) || strings.Contains(string(cur), "before") {
		t.Fatalf("new file: %s", cur)
	}
}

func TestFailedWritesAreCountedNotReturned(t *testing.T) {
	f, err := OpenFile(filepath.Join(t.TempDir(), "x.log"))
	if err != nil {
		t.Fatal(err)
	}
	f.w.(*os.File).Close() // every later write fails
	if n, err := f.Write([]byte("line\n")); err != nil || n != 5 {
		t.Fatalf("Write = %d, %v; a log write must never fail its caller", n, err)
	}
	if f.Failed() != 1 {
		t.Fatalf("Failed = %d", f.Failed())
	}
}

func TestBadLocationsAndFormats(t *testing.T) {
	if _, err := OpenFile(""); err == nil {
		t.Error("empty location accepted")
	}
	if _, err := OpenFile(filepath.Join(t.TempDir(), "missing", "dir", "x.log")); err == nil || !strings.Contains(err.Error(), "LogLocation") {
		t.Errorf("missing directory: %v", err)
	}
	if _, err := New(os.Stderr, "xml"); err == nil {
		t.Error("format xml accepted")
	}
}

func TestEscapeKeyCannotForgeALine(t *testing.T) {
	cases := map[string]string{
		"plain":                          "SUNhbkhhelVuaWNvcm4/LTg5OTk=",
		"a newline":                      "a%0Ab",
		"a quote and a backslash":        "%22%5C",
		"a percent sign stays decodable": "100%25",
		"raw high bytes":                 "%FF%00",
	}
	in := map[string]string{
		"plain":                          "SUNhbkhhelVuaWNvcm4/LTg5OTk=",
		"a newline":                      "a\nb",
		"a quote and a backslash":        "\"\\",
		"a percent sign stays decodable": "100%",
		"raw high bytes":                 "\xff\x00",
	}
	for name, want := range cases {
		if got := EscapeKey(in[name]); got != want {
			t.Errorf("%s: EscapeKey(%q) = %q, want %q", name, in[name], got, want)
		}
	}
	if got := EscapeURI("/calc?input=a%2Fb c"); got != "/calc?input=a%2Fb%20c" {
		t.Errorf("EscapeURI = %q", got)
	}
}

// TestCheckAgreesWithOpenFileAndCreatesNothing holds -check to what the start does:
// Check accepts a location exactly when OpenFile can open it, and leaves no file.
func TestCheckAgreesWithOpenFileAndCreatesNothing(t *testing.T) {
	cases := map[string]struct {
		setup   func(dir string) string // returns the LogLocation
		wantErr string
	}{
		"an existing directory":               {func(dir string) string { return dir }, ""},
		"a directory with a trailing slash":   {func(dir string) string { return dir + "/" }, ""},
		"a new file in an existing directory": {func(dir string) string { return filepath.Join(dir, "server.log") }, ""},
		"an existing file": {func(dir string) string {
			p := filepath.Join(dir, "old.log")
			must(t, os.WriteFile(p, []byte("kept\n"), 0o644))
			return p
		}, ""},
		"a file in a missing directory": {func(dir string) string { return filepath.Join(dir, "missing", "server.log") }, "no such file"},
		"a file under a file": {func(dir string) string {
			p := filepath.Join(dir, "plain")
			must(t, os.WriteFile(p, nil, 0o644))
			return filepath.Join(p, "server.log")
		}, "not a directory"},
		"a directory whose calcserver.log is a directory": {func(dir string) string {
			must(t, os.Mkdir(filepath.Join(dir, FileName), 0o755))
			return dir
		}, "is a directory"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			loc := tc.setup(dir)
			before := snapshot(t, dir)
			path, err := Check(loc)
			if after := snapshot(t, dir); after != before {
				t.Fatalf("Check changed the directory:\nbefore %s\nafter  %s", before, after)
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Check(%q) = %v, want error %q", loc, err, tc.wantErr)
			}
			f, openErr := OpenFile(loc)
			if (openErr == nil) != (err == nil) {
				t.Fatalf("Check says %v but OpenFile says %v", err, openErr)
			}
			if openErr == nil {
				defer f.Close()
				if f.Path() != path {
					t.Fatalf("Check names %s, OpenFile opened %s", path, f.Path())
				}
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// snapshot lists every name, size and modification time under dir.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %d; ", p, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
