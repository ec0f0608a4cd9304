package svctest

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// S3Fake is an in-memory S3-compatible server (gofakes3) on a loopback port, for the
// AWS SDK and the AWS CLI alike: both reach it through an endpoint override with
// path-style addressing. It accepts any credentials; Deny makes a bucket answer
// AccessDenied, as a bucket policy that does not grant the caller would, and Locate puts
// a bucket in a region, so a request signed for another one is redirected as S3 does.
type S3Fake struct {
	URL     string // "http://127.0.0.1:PORT"
	backend *s3mem.Backend

	mu      sync.Mutex
	denied  map[string]string // bucket -> S3's message
	regions map[string]string
}

// S3 starts an S3Fake for t and stops it when t ends.
func S3(t testing.TB) *S3Fake {
	t.Helper()
	f := &S3Fake{backend: s3mem.New(), denied: map[string]string{}, regions: map[string]string{}}
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
	// The fake's own PUT handler records Last-Modified; the AWS CLI's download needs it.
	meta := map[string]string{"Last-Modified": time.Now().UTC().Format(http.TimeFormat)}
	if _, err := f.backend.PutObject(bucket, key, meta, bytes.NewReader(data), int64(len(data)), nil); err != nil {
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
func (f *S3Fake) Deny(bucket string) { f.DenyWith(bucket, "Access Denied") }

// DenyWith makes every request for bucket answer 403 AccessDenied with message, as S3
// explains a refusal by a KMS key policy, say.
func (f *S3Fake) DenyWith(bucket, message string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.denied[bucket] = message
}

// Locate puts bucket in region: a request signed for another region gets S3's
// 301 PermanentRedirect with the bucket's region in X-Amz-Bucket-Region.
func (f *S3Fake) Locate(bucket, region string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.regions[bucket] = region
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

// deny answers requests for a denied bucket, or signed for the wrong region, the way S3
// does, before the fake sees them.
func (f *S3Fake) deny(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bucket, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		f.mu.Lock()
		denied, region := f.denied[bucket], f.regions[bucket]
		f.mu.Unlock()
		switch {
		case denied != "":
			s3Error(w, r, http.StatusForbidden, "AccessDenied", denied)
		case region != "" && signedRegion(r) != region:
			w.Header().Set("X-Amz-Bucket-Region", region)
			s3Error(w, r, http.StatusMovedPermanently, "PermanentRedirect",
				"The bucket you are attempting to access must be addressed using the specified endpoint.")
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// signedRegion is the region in the credential scope of a SigV4 Authorization header:
// "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3/aws4_request, ...".
func signedRegion(r *http.Request) string {
	_, cred, ok := strings.Cut(r.Header.Get("Authorization"), "Credential=")
	if !ok {
		return ""
	}
	parts := strings.Split(cred, "/")
	if len(parts) < 3 {
		return ""
	}
	return parts[2]
}

func s3Error(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
			`<Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource><RequestId>0</RequestId></Error>`, code, msg, r.URL.Path)
	}
}
