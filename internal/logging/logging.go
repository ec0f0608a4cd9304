// Package logging opens the server's log destination: standard error, or a file that
// SIGHUP reopens so logrotate can move it away; an Async writes it off the request's
// goroutine.
package logging

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// FileName is the file written inside a LogLocation that is a directory.
const FileName = "calcserver.log"

// ErrFormat reports an unknown log format.
var ErrFormat = errors.New("logging: unknown format")

// File is an append-only log file that can be reopened by path. Like a Guard, it
// counts and drops a failed write: logging never fails a request.
type File struct {
	path string
	Guard
}

// OpenFile opens location for appending. A location that is an existing directory, or
// that ends in a path separator, gets FileName inside it.
func OpenFile(location string) (*File, error) {
	if location == "" {
		return nil, errors.New("logging: LogLocation is empty")
	}
	path := resolve(location)
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &File{path: path, Guard: Guard{w: f}}, nil
}

// resolve is the file OpenFile writes for location.
func resolve(location string) string {
	if st, err := os.Stat(location); (err == nil && st.IsDir()) || os.IsPathSeparator(location[len(location)-1]) {
		return filepath.Join(location, FileName)
	}
	return location
}

// Check reports whether OpenFile(location) would succeed, without creating or changing
// anything (for calcserver -check): an existing file must open for appending, a new
// one needs a directory that this process may write to. It returns the file's path.
func Check(location string) (string, error) {
	if location == "" {
		return "", errors.New("logging: LogLocation is empty")
	}
	path := resolve(location)
	st, err := os.Stat(path)
	switch {
	case err == nil && st.IsDir():
		return path, fmt.Errorf("logging: LogLocation: %s is a directory", path)
	case err == nil:
		// Opening an existing file without O_CREATE or O_TRUNC changes nothing.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return path, fmt.Errorf("logging: LogLocation: %w", err)
		}
		return path, f.Close()
	case !errors.Is(err, fs.ErrNotExist):
		return path, fmt.Errorf("logging: LogLocation: %w", err)
	}
	dir := filepath.Dir(path)
	dst, err := os.Stat(dir)
	if err != nil {
		return path, fmt.Errorf("logging: LogLocation: cannot create %s: %w", path, err)
	}
	if !dst.IsDir() {
		return path, fmt.Errorf("logging: LogLocation: cannot create %s: %s is not a directory", path, dir)
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return path, fmt.Errorf("logging: LogLocation: cannot create %s: directory %s: %w", path, dir, err)
	}
	return path, nil
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("logging: LogLocation: %w", err)
	}
	return f, nil
}

// Path returns the file's path.
func (l *File) Path() string { return l.path }

// Reopen closes the file and opens its path again, as logrotate expects after it
// renamed the file. On error the old file stays in use.
func (l *File) Reopen() error {
	f, err := openAppend(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.w
	l.w = f
	l.mu.Unlock()
	return old.(*os.File).Close()
}

// Close closes the file.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.(*os.File).Close()
}

// New returns a logger writing format ("logfmt" or "json") to w.
func New(w io.Writer, format string) (*slog.Logger, error) {
	switch format {
	case "", "logfmt":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("%w %q (allowed: logfmt, json)", ErrFormat, format)
}

// Guard wraps a writer such as standard error so that a failed write is counted
// and dropped: Write never returns an error, so a full disk cannot fail a request.
// A failed write counts as many lost lines as it holds (an Async writes many at once).
type Guard struct {
	w      io.Writer
	mu     sync.Mutex
	failed int64
}

// NewGuard returns a Guard around w.
func NewGuard(w io.Writer) *Guard { return &Guard{w: w} }

// Write passes p on and never returns an error.
func (g *Guard) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, err := g.w.Write(p); err != nil {
		g.failed += int64(max(1, bytes.Count(p, []byte{'\n'})))
	}
	return len(p), nil
}

// Failed returns the number of lines lost to writes that could not be completed.
func (g *Guard) Failed() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failed
}
