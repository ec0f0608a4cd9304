package s3config_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/s3config"
	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

func TestParseURL(t *testing.T) {
	good := map[string]s3config.Location{
		"s3://my-bucket/server.ini":              {Bucket: "my-bucket", Key: "server.ini"},
		"s3://gameday.team1/unicorn/v2/srv.ini":  {Bucket: "gameday.team1", Key: "unicorn/v2/srv.ini"},
		"s3://abc/a%20b":                         {Bucket: "abc", Key: "a%20b"},
		"s3://abc/" + strings.Repeat("k", 1024):  {Bucket: "abc", Key: strings.Repeat("k", 1024)},
		"s3://" + strings.Repeat("b", 63) + "/k": {Bucket: strings.Repeat("b", 63), Key: "k"},
	}
	for in, want := range good {
		t.Run("accepts "+in[:min(len(in), 40)], func(t *testing.T) {
			got, err := s3config.ParseURL(in)
			if err != nil || got != want {
				t.Fatalf("ParseURL(%q) = %+v, %v; want %+v", in, got, err, want)
			}
			if got.String() != in {
				t.Fatalf("String() = %q, want %q", got.String(), in)
			}
		})
	}
	bad := map[string]string{
		"s3://":                                 "no bucket",
		"s3:///server.ini":                      "no bucket",
		"s3://bucket":                           "no key",
		"s3://bucket/":                          "no key",
		"s3://My_Bucket/x":                      "only lowercase",
		"s3://ab/x":                             "3 to 63",
		"s3://-abc/x":                           "start and end",
		"/etc/server.ini":                       "want s3://bucket/key",
		"s3://abc/" + strings.Repeat("k", 1025): "1024",
	}
	for in, want := range bad {
		t.Run("refuses "+in[:min(len(in), 40)], func(t *testing.T) {
			_, err := s3config.ParseURL(in)
			if err == nil || !errors.Is(err, s3config.ErrLocation) || !strings.Contains(err.Error(), want) {
				t.Fatalf("ParseURL(%q) error %v, want one saying %q", in, err, want)
			}
		})
	}
}

// awsEnv points the SDK at the fake, with extra on top, and clears every variable of the host that could
// make it look elsewhere for credentials, a region or an endpoint.
func awsEnv(t *testing.T, f *svctest.S3Fake, extra map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
		}
	}
	t.Setenv("HOME", t.TempDir())
	for _, kv := range f.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	for k, v := range extra {
		t.Setenv(k, v)
	}
}

func TestFetch(t *testing.T) {
	f := svctest.S3(t)
	f.CreateBucket(t, "unicorn-config")
	f.Put(t, "unicorn-config", "team1/server.ini", []byte("QueueSize = 9\n"))
	f.Put(t, "unicorn-config", "big.ini", make([]byte, s3config.MaxSize+1))
	f.CreateBucket(t, "locked")
	f.Put(t, "locked", "server.ini", []byte("Port = 80\n"))
	f.Deny("locked")
	f.CreateBucket(t, "far-away")
	f.Put(t, "far-away", "server.ini", []byte("Cores = 2\n"))
	f.Locate("far-away", "ap-southeast-2")
	f.CreateBucket(t, "sealed")
	f.Put(t, "sealed", "server.ini", []byte("Port = 80\n"))
	f.DenyWith("sealed", "User: arn:aws:sts::1:assumed-role/calc/i-1 is not authorized to perform: kms:Decrypt on resource: key/abc")
	dir := t.TempDir()
	sharedEndpoint := dir + "/endpoint.config"
	if err := os.WriteFile(sharedEndpoint, []byte("[default]\nendpoint_url = "+f.URL+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	failingProcess := dir + "/process.config"
	if err := os.WriteFile(failingProcess, []byte("[default]\ncredential_process = sh -c 'exit 3'\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	fetch := func(t *testing.T, url string) ([]byte, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return s3config.Fetch(ctx, url, os.Getenv)
	}
	ok := []struct {
		name, url, want string
		env             map[string]string
	}{
		{"reads an object", "s3://unicorn-config/team1/server.ini", "QueueSize = 9\n", nil},
		{"follows a bucket to its region", "s3://far-away/server.ini", "Cores = 2\n", nil},
		{"finds the region without one configured", "s3://far-away/server.ini", "Cores = 2\n", map[string]string{"AWS_REGION": ""}},
		{"takes AWS_ENDPOINT_URL as well", "s3://unicorn-config/team1/server.ini", "QueueSize = 9\n", map[string]string{"AWS_ENDPOINT_URL_S3": "", "AWS_ENDPOINT_URL": f.URL}},
		{"takes endpoint_url from the shared config, path-style", "s3://unicorn-config/team1/server.ini", "QueueSize = 9\n",
			map[string]string{"AWS_ENDPOINT_URL_S3": "", "AWS_CONFIG_FILE": sharedEndpoint}},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			awsEnv(t, f, tc.env)
			got, err := fetch(t, tc.url)
			if err != nil || string(got) != tc.want {
				t.Fatalf("Fetch = %q, %v; want %q", got, err, tc.want)
			}
		})
	}

	closed := closedPort(t)
	bad := []struct {
		name, url string
		env       map[string]string
		is        error
		says      []string
	}{
		{"says NoSuchKey for a missing key", "s3://unicorn-config/team2/server.ini", nil, s3config.ErrNoSuchKey,
			[]string{"NoSuchKey", `"team2/server.ini"`, `"unicorn-config"`}},
		{"says NoSuchBucket for a missing bucket", "s3://no-such-bucket/server.ini", nil, s3config.ErrNoSuchBucket,
			[]string{"NoSuchBucket", `"no-such-bucket"`}},
		{"says AccessDenied and which permission is needed", "s3://locked/server.ini", nil, s3config.ErrAccessDenied,
			[]string{"AccessDenied", "s3:GetObject", "arn:aws:s3:::locked/server.ini"}},
		{"says no credentials were found", "s3://unicorn-config/team1/server.ini",
			map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, s3config.ErrNoCredentials,
			[]string{"no AWS credentials found", "instance role"}},
		{"says what a configured credential source failed with", "s3://unicorn-config/team1/server.ini",
			map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_CONFIG_FILE": failingProcess}, s3config.ErrCredentials,
			[]string{"cannot get AWS credentials", "credential_process", "exit status 3"}},
		{"passes on S3's reason for a refusal", "s3://sealed/server.ini", nil, s3config.ErrAccessDenied,
			[]string{"AccessDenied: User: arn:aws:sts::1:assumed-role/calc/i-1 is not authorized to perform: kms:Decrypt", "kms:Decrypt"}},
		{"refuses an object too large for a server.ini", "s3://unicorn-config/big.ini", nil, s3config.ErrTooLarge,
			[]string{"too large", "not a server.ini"}},
		{"says S3 cannot be reached", "s3://unicorn-config/team1/server.ini",
			map[string]string{"AWS_ENDPOINT_URL_S3": "http://" + closed}, nil,
			[]string{"cannot reach S3", closed, "connection refused"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			awsEnv(t, f, tc.env)
			_, err := fetch(t, tc.url)
			if err == nil {
				t.Fatal("Fetch succeeded")
			}
			msg := err.Error()
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", msg, tc.is)
			}
			if !strings.HasPrefix(msg, tc.url+": ") {
				t.Errorf("error %q does not start with the location", msg)
			}
			if strings.Contains(msg, "\n") || strings.Contains(msg, "operation error") || strings.Contains(msg, "RequestID") {
				t.Errorf("error is not one plain line: %q", msg)
			}
			for _, s := range tc.says {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not say %q", msg, s)
				}
			}
		})
	}
}

// closedPort is a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// FuzzParseURL holds ParseURL to its promise: whatever it accepts prints back as given.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"s3://my-bucket/server.ini", "s3://a/b", "s3:///", "s3://abc/k/", "http://x/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		loc, err := s3config.ParseURL(s)
		if err != nil {
			if !errors.Is(err, s3config.ErrLocation) || strings.Contains(err.Error(), "\n") && !strings.Contains(s, "\n") {
				t.Fatalf("ParseURL(%q): %v", s, err)
			}
			return
		}
		if loc.String() != s || loc.Bucket == "" || loc.Key == "" {
			t.Fatalf("ParseURL(%q) = %+v", s, loc)
		}
	})
}
