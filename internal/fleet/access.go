package fleet

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// AccessLine is one line of nginx's access log in the deploy configuration's
// `upstream` format.
type AccessLine struct {
	Time     string // $time_local, whole seconds
	Request  string // "GET /calc?input=… HTTP/1.1"
	Status   int    // what the client got
	Bytes    int64
	Upstream []string // every upstream tried, in order: "127.0.0.1:PORT", or the group's name ("calcserver") when none was live
	// UpstreamStatus is the status each attempt gave, in order; nginx writes 502 for
	// an attempt that failed to connect or lost its connection, "-" for none.
	UpstreamStatus []string
	Cache          string // the answering instance's X-Cache, "-" for none
	Raw            string // the line as written
}

// Retried reports whether nginx tried more than one upstream for the request.
func (l AccessLine) Retried() bool { return len(l.Upstream) > 1 }

// Answered is the upstream whose answer the client got: the last one tried, "" when
// none was.
func (l AccessLine) Answered() string {
	if len(l.Upstream) == 0 {
		return ""
	}
	return l.Upstream[len(l.Upstream)-1]
}

var accessRE = regexp.MustCompile(`^\S+ \[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\d+) (\d+) upstream=(.*) upstream_status=(.*) request_time=\S+ upstream_time=.* cache=(\S*)$`)

// ParseAccessLine parses one line of the access log.
func ParseAccessLine(s string) (AccessLine, error) {
	m := accessRE.FindStringSubmatch(s)
	if m == nil {
		return AccessLine{}, fmt.Errorf("not in the upstream log format: %q", s)
	}
	st, _ := strconv.Atoi(m[3])
	n, _ := strconv.ParseInt(m[4], 10, 64)
	return AccessLine{
		Time: m[1], Request: m[2], Status: st, Bytes: n, Cache: m[7], Raw: s,
		Upstream: splitList(m[5]), UpstreamStatus: splitList(m[6]),
	}, nil
}

// ReadAccessLog parses nginx's access log at path (Fleet.NginxLog) from the byte
// offset from (0, or an earlier Fleet.LogOffset) on. A last line nginx is still
// writing is left out.
func ReadAccessLog(path string, from int64) ([]AccessLine, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("fleet: read nginx's access log: %w", err)
	}
	defer fh.Close()
	if _, err := fh.Seek(from, io.SeekStart); err != nil {
		return nil, fmt.Errorf("fleet: read nginx's access log %s from %d: %w", path, from, err)
	}
	b, err := io.ReadAll(fh)
	if err != nil {
		return nil, fmt.Errorf("fleet: read nginx's access log %s: %w", path, err)
	}
	lines, _, err := parseAccess(b, path)
	return lines, err
}

// parseAccess parses the complete lines of b and returns how many bytes they took.
func parseAccess(b []byte, path string) ([]AccessLine, int, error) {
	var lines []AccessLine
	used := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if used+len(sc.Bytes()) >= len(b) || b[used+len(sc.Bytes())] != '\n' {
			break // a line nginx is still writing
		}
		l, err := ParseAccessLine(sc.Text())
		if err != nil {
			return nil, 0, fmt.Errorf("fleet: %s: %w", path, err)
		}
		lines = append(lines, l)
		used += len(sc.Bytes()) + 1
	}
	return lines, used, nil
}

// splitList splits nginx's per-attempt lists ("a, b"; "a : b" across internal
// redirects); "-" alone is none.
func splitList(s string) []string {
	if s == "-" || s == "" {
		return nil
	}
	var out []string
	for f := range strings.SplitSeq(strings.ReplaceAll(s, " : ", ", "), ",") {
		out = append(out, strings.TrimSpace(f))
	}
	return out
}

// LogOffset is the current size of nginx's access log: ReadAccessLog(f.NginxLog(),
// f.LogOffset()) later reads the requests logged from now on.
func (f *Fleet) LogOffset() int64 {
	fi, err := os.Stat(f.NginxLog())
	if err != nil {
		return 0
	}
	return fi.Size()
}
