// Package s3config fetches a configuration file from Amazon S3 (or an S3-compatible
// server), the way the events hand server.ini to their instances.
//
// It uses the AWS SDK's defaults, as the AWS CLI does: credentials from the environment,
// the shared files or the EC2 instance role (IMDSv2); the region from AWS_REGION or
// AWS_DEFAULT_REGION, the shared config, or the instance metadata, else the bucket's own
// region as S3 reports it. AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL point it at another
// server, with path-style addressing. Every failure is one line that names the bucket
// or key and says what went wrong.
package s3config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
)

// MaxSize bounds what Fetch reads. A real server.ini is a few hundred bytes; anything
// this large is the wrong object (often the server binary itself).
const MaxSize = 1 << 20

// fallbackRegion is where a request goes when nothing names a region; S3 answers it
// for a bucket anywhere with the bucket's region, and Fetch follows that answer.
const fallbackRegion = "us-east-1"

// Errors Fetch wraps, for callers that tell them apart with errors.Is.
var (
	ErrLocation      = errors.New("s3config: bad S3 location")
	ErrNoSuchBucket  = errors.New("s3config: no such bucket")
	ErrNoSuchKey     = errors.New("s3config: no such key")
	ErrAccessDenied  = errors.New("s3config: access denied")
	ErrNoCredentials = errors.New("s3config: no AWS credentials found")
	ErrCredentials   = errors.New("s3config: AWS credentials configured but not usable")
	ErrTooLarge      = errors.New("s3config: object too large")
)

// fetchError is a message for users that errors.Is matches to one of the sentinels
// above, without repeating the sentinel's text.
type fetchError struct {
	kind error
	msg  string
}

func (e *fetchError) Error() string { return e.msg }
func (e *fetchError) Unwrap() error { return e.kind }

func kindError(kind error, format string, args ...any) error {
	return &fetchError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Location is a bucket and an object key.
type Location struct {
	Bucket, Key string
}

// String is the s3:// URL of l.
func (l Location) String() string { return "s3://" + l.Bucket + "/" + l.Key }

// IsURL reports whether s names an S3 location rather than a local path.
func IsURL(s string) bool { return strings.HasPrefix(s, "s3://") }

// ParseURL reads "s3://bucket/key". The key may contain slashes; it is taken as
// written (S3 keys are not URL paths, so nothing is unescaped).
func ParseURL(s string) (Location, error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return Location{}, kindError(ErrLocation, "%s: want s3://bucket/key", s)
	}
	bucket, key, _ := strings.Cut(rest, "/")
	switch {
	case bucket == "":
		return Location{}, kindError(ErrLocation, "%s: no bucket: want s3://bucket/key", s)
	case key == "":
		return Location{}, kindError(ErrLocation, "%s: no key: want s3://%s/key", s, bucket)
	}
	if msg := checkBucket(bucket); msg != "" {
		return Location{}, kindError(ErrLocation, "%s: bucket %q %s", s, bucket, msg)
	}
	if len(key) > 1024 {
		return Location{}, kindError(ErrLocation, "%s: the key is longer than S3's 1024 bytes", s)
	}
	return Location{Bucket: bucket, Key: key}, nil
}

// checkBucket applies S3's bucket naming rules that a typo breaks, so a bad name is
// reported before any request: 3 to 63 lowercase letters, digits, dots and hyphens,
// starting and ending with a letter or digit.
func checkBucket(b string) string {
	if len(b) < 3 || len(b) > 63 {
		return "must be 3 to 63 characters long"
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return fmt.Sprintf("has %q: only lowercase letters, digits, '.' and '-' are allowed", c)
		}
	}
	if !isAlnum(b[0]) || !isAlnum(b[len(b)-1]) {
		return "must start and end with a letter or digit"
	}
	return ""
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// Fetch reads the object at the s3:// URL. getenv is consulted for the endpoint
// override (which needs path-style addressing); the SDK itself reads the process
// environment and the shared files for everything else.
func Fetch(ctx context.Context, url string, getenv func(string) string) ([]byte, error) {
	loc, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithLogger(logging.Nop{}))
	if err != nil {
		return nil, fmt.Errorf("%s: loading the AWS configuration: %v", loc, oneLine(err))
	}
	if cfg.Region == "" {
		cfg.Region = imdsRegion(ctx, cfg, getenv)
	}
	// Ask for credentials first, so that "none found" is said as such rather than as
	// whatever the request fails with.
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		msg := oneLine(err)
		// The default chain ends with the instance role: when that is all it says,
		// nothing was configured anywhere.
		if strings.Contains(msg, "no EC2 IMDS role found") {
			return nil, kindError(ErrNoCredentials, "%s: no AWS credentials found (looked in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the shared files, and the EC2 instance role)", loc)
		}
		// Something configured failed (a credential_process, an expired SSO token, an
		// assume-role): say what.
		return nil, kindError(ErrCredentials, "%s: cannot get AWS credentials: %s", loc, strings.TrimPrefix(msg, "failed to refresh cached credentials, "))
	}
	// Path-style addressing for an endpoint of one's own (MinIO, a local fake): set by
	// the environment or by endpoint_url in the shared config, unless the SDK is told to
	// ignore configured endpoints.
	pathStyle := (getenv("AWS_ENDPOINT_URL_S3") != "" || getenv("AWS_ENDPOINT_URL") != "" || cfg.BaseEndpoint != nil) &&
		!strings.EqualFold(getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true")
	region := cfg.Region
	if region == "" {
		region = fallbackRegion
	}
	data, err := get(ctx, cfg, region, pathStyle, loc)
	// A bucket in another region answers with its own region: go there once.
	if other := bucketRegion(err); other != "" && other != region {
		data, err = get(ctx, cfg, other, pathStyle, loc)
	}
	if err != nil {
		return nil, describe(loc, err)
	}
	return data, nil
}

// imdsTimeout bounds asking the instance metadata service for the region; off EC2 it
// does not answer, and the bucket's own region is found another way.
const imdsTimeout = 2 * time.Second

// imdsRegion is the instance's region from the metadata service (IMDSv2), or "" off EC2
// or when AWS_EC2_METADATA_DISABLED is true. The SDK's own WithEC2IMDSRegion fails the
// whole load in the latter case instead of falling back.
func imdsRegion(ctx context.Context, cfg aws.Config, getenv func(string) string) string {
	if strings.EqualFold(getenv("AWS_EC2_METADATA_DISABLED"), "true") {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, imdsTimeout)
	defer cancel()
	out, err := imds.NewFromConfig(cfg).GetRegion(ctx, &imds.GetRegionInput{})
	if err != nil {
		return ""
	}
	return out.Region
}

func get(ctx context.Context, cfg aws.Config, region string, pathStyle bool, loc Location) ([]byte, error) {
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.Region = region
		o.UsePathStyle = pathStyle
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(loc.Bucket), Key: aws.String(loc.Key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	if out.ContentLength != nil && *out.ContentLength > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, *out.ContentLength)
	}
	data, err := io.ReadAll(io.LimitReader(out.Body, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, MaxSize)
	}
	return data, nil
}

// bucketRegion is the region S3 named in a failed response, if any.
func bucketRegion(err error) string {
	var re *awshttp.ResponseError
	if err == nil || !errors.As(err, &re) || re.Response == nil {
		return ""
	}
	return re.Response.Header.Get("X-Amz-Bucket-Region")
}

// describe turns an SDK error into one line that says which part of loc failed and
// why, without the SDK's operation and retry wrapping.
func describe(loc Location, err error) error {
	var (
		noBucket *types.NoSuchBucket
		noKey    *types.NoSuchKey
		api      smithy.APIError
		re       *awshttp.ResponseError
	)
	status := 0
	if errors.As(err, &re) && re.Response != nil {
		status = re.Response.StatusCode
	}
	code := ""
	if errors.As(err, &api) {
		code = api.ErrorCode()
	}
	switch {
	case errors.Is(err, ErrTooLarge):
		return kindError(ErrTooLarge, "%s: object too large (%v): not a server.ini", loc, oneLine(errors.Unwrap(err)))
	case errors.As(err, &noBucket) || code == "NoSuchBucket":
		return kindError(ErrNoSuchBucket, "%s: bucket %q does not exist (NoSuchBucket)", loc, loc.Bucket)
	case errors.As(err, &noKey) || code == "NoSuchKey" || code == "NotFound" || status == http.StatusNotFound:
		return kindError(ErrNoSuchKey, "%s: bucket %q has no object %q (NoSuchKey)", loc, loc.Bucket, loc.Key)
	case code == "AccessDenied" || status == http.StatusForbidden:
		said := ""
		if api != nil && api.ErrorMessage() != "" && api.ErrorMessage() != "Access Denied" {
			// S3 may say more: a KMS key the credentials cannot use, say.
			said = ": " + oneLine(errors.New(api.ErrorMessage()))
		}
		return kindError(ErrAccessDenied, "%s: access denied to bucket %q, key %q (AccessDenied%s): the credentials need s3:GetObject on arn:aws:s3:::%s/%s (and kms:Decrypt for a bucket encrypted with a KMS key; without s3:ListBucket, S3 also says this for a key that does not exist)",
			loc, loc.Bucket, loc.Key, said, loc.Bucket, loc.Key)
	case code != "":
		return fmt.Errorf("%s: S3 answered %s: %s", loc, code, oneLine(errors.New(api.ErrorMessage())))
	}
	// Not an answer from S3: a network or context error, wrapped by the SDK in
	// "operation error S3: GetObject, exceeded maximum number of attempts, ...". The
	// network error itself names the address and the reason.
	var netErr *net.OpError
	switch {
	case errors.As(err, &netErr):
		return fmt.Errorf("%s: cannot reach S3: %v", loc, oneLine(netErr))
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: S3 did not answer in time", loc)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: canceled", loc)
	}
	return fmt.Errorf("%s: %v", loc, oneLine(err))
}

// oneLine folds an error message onto one line.
func oneLine(err error) string {
	if err == nil {
		return ""
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}
