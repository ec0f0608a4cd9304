package svctest

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// S3Fake is an in-memory S3-compatible server (gofakes3) on a loopback port, for the
// AWS SDK and the AWS CLI alike: both reach it through an endpoint override with
// path-style addressing. It accepts any credentials; Deny makes a bucket answer
// AccessDenied, as a bucket policy that does not grant the caller would.
type S3Fake struct {
	URL     string // "http://127.0.0.1:PORT"
	backend *s3mem.Backend

	mu     sync.Mutex
	denied map[string]bool
}

// S3 starts an S3Fake for t and stops it when t ends.
func S3(t testing.TB) *S3Fake {
	t.Helper()
	f := &S3Fake{backend: s3mem.New(), denied: map[string]bool{}}
	fake := gofakes3.New(f.backend)
	srv := httptest.NewServer(f.deny(fake.Server()))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// CreateBucket creates the bucket name.
func (f *S3Fake) CreateBucket(t testing.TB, name string) {
	t.Helper()
	if err := f.backend.CreateBucket(name); err != nil {
		t.Fatalf("svctest: create bucket %s: %v", name, err)
	}
}

// Put stores data as bucket/key; the bucket must exist.
func (f *S3Fake) Put(t testing.TB, bucket, key string, data []byte) {
	t.Helper()
	if _, err := f.backend.PutObject(bucket, key, nil, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatalf("svctest: put s3://%s/%s: %v", bucket, key, err)
	}
}

// Get returns the object bucket/key, and false when it does not exist.
func (f *S3Fake) Get(t testing.TB, bucket, key string) ([]byte, bool) {
	t.Helper()
	obj, err := f.backend.GetObject(bucket, key, nil)
	if gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchKey) || gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchBucket) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("svctest: get s3://%s/%s: %v", bucket, key, err)
	}
	defer obj.Contents.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(obj.Contents); err != nil {
		t.Fatalf("svctest: read s3://%s/%s: %v", bucket, key, err)
	}
	return b.Bytes(), true
}

// Deny makes every request for bucket answer 403 AccessDenied.
func (f *S3Fake) Deny(bucket string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.denied[bucket] = true
}

// Env is the environment that points the AWS SDK and CLI at the fake with dummy
// credentials, and keeps both off the instance metadata service.
func (f *S3Fake) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=AKIDFAKE",
		"AWS_SECRET_ACCESS_KEY=fake-secret",
		"AWS_REGION=us-east-1",
		"AWS_ENDPOINT_URL_S3=" + f.URL,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	}
}

// deny answers requests for a denied bucket the way S3 does, before the fake sees them.
func (f *S3Fake) deny(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bucket, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		f.mu.Lock()
		denied := f.denied[bucket]
		f.mu.Unlock()
		if !denied {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		if r.Method != http.MethodHead {
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
				`<Error><Code>AccessDenied</Code><Message>Access Denied</Message><Resource>%s</Resource><RequestId>0</RequestId></Error>`, r.URL.Path)
		}
	})
}
