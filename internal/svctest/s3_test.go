package svctest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// TestS3FakeServesTheAWSCLI checks the fake with the client the user-data tests use:
// Debian's AWS CLI downloads what Put stored (also when overwritten), uploads land, and a
// denied bucket refuses.
func TestS3FakeServesTheAWSCLI(t *testing.T) {
	f := svctest.S3(t)
	f.CreateBucket(t, "bucket")
	f.Put(t, "bucket", "a/server.ini", []byte("one"))
	f.Put(t, "bucket", "a/server.ini", []byte("Port = 80\n"))
	dst := filepath.Join(t.TempDir(), "got.ini")
	cmd := exec.Command("/usr/bin/aws", "--endpoint-url", f.URL, "s3", "cp", "s3://bucket/a/server.ini", dst)
	cmd.Env = append(os.Environ(), f.Env()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("aws s3 cp: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(dst); string(b) != "Port = 80\n" {
		t.Fatalf("downloaded %q", b)
	}
	up := filepath.Join(t.TempDir(), "up")
	if err := os.WriteFile(up, []byte("uploaded"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command("/usr/bin/aws", "--endpoint-url", f.URL, "s3", "cp", up, "s3://bucket/b")
	cmd.Env = append(os.Environ(), f.Env()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("aws s3 cp up: %v\n%s", err, out)
	}
	if b, ok := f.Get(t, "bucket", "b"); !ok || string(b) != "uploaded" {
		t.Fatalf("Get = %q, %v", b, ok)
	}
	f.Deny("bucket")
	cmd = exec.Command("/usr/bin/aws", "--endpoint-url", f.URL, "s3", "cp", "s3://bucket/b", dst)
	cmd.Env = append(os.Environ(), f.Env()...)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("a denied bucket served a download:\n%s", out)
	}
}
