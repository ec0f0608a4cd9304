package svctest

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// DepsDir is the project-local, git-ignored folder scripts/deps.sh installs npm
// packages into (dynalite, under DepsDir/node_modules), relative to the module root.
const DepsDir = ".deps"

// Fake AWS settings a Dynamo hands its clients: dynalite checks that requests are
// signed, not by whom.
const (
	DynamoRegion    = "us-east-1"
	DynamoAccessKey = "AKIDSVCTEST"
	DynamoSecretKey = "svctest-secret"
)

//go:embed dynalite.js
var dynaliteJS []byte

// Dynamo is a dynalite server: DynamoDB's API in memory on a loopback port. Its tables
// and items live in the process, so Kill and Restart lose them all, tables included;
// a test that restarts it must create its table again (a client with CreateTable does
// so on its next probe). dynalite 4 lacks UpdateTimeToLive; the wrapper it runs in
// (dynalite.js) answers it and DescribeTimeToLive as DynamoDB does, but, like
// DynamoDB's lazy deleter, never deletes an expired item within a test.
type Dynamo struct {
	*Proc
	URL string // "http://127.0.0.1:PORT", the endpoint
}

// StartDynalite starts dynalite, installed by scripts/deps.sh under the module root's
// DepsDir, on a free loopback port with dir as its working directory, and waits until
// it answers.
func StartDynalite(dir string) (*Dynamo, error) {
	pkg, err := dynalitePackage()
	if err != nil {
		return nil, err
	}
	node, err := lookBin("node")
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("svctest: dynalite: %w", err)
	}
	script := filepath.Join(dir, "dynalite.js")
	if err := os.WriteFile(script, dynaliteJS, 0o644); err != nil {
		return nil, fmt.Errorf("svctest: dynalite: %w", err)
	}
	p := &Proc{
		Name: "dynalite",
		Dir:  dir,
		bin:  node,
		argsFor: func(port int) []string {
			return []string{script, pkg, strconv.Itoa(port)}
		},
		probe: probeDynalite,
		wait:  30 * time.Second, // node loads dynalite in about a second on an idle machine
	}
	if err := p.start(freePort); err != nil {
		return nil, err
	}
	return &Dynamo{Proc: p, URL: "http://" + p.Addr}, nil
}

// dynalitePackage is the folder of the dynalite package scripts/deps.sh installed.
func dynalitePackage() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	pkg := filepath.Join(root, DepsDir, "node_modules", "dynalite")
	if _, err := os.Stat(filepath.Join(pkg, "package.json")); err != nil {
		return "", fmt.Errorf("svctest: dynalite is not installed in %s (run bash scripts/deps.sh): %w", filepath.Dir(pkg), err)
	}
	return pkg, nil
}

// probeDynalite checks that the server on addr is the wrapper of process pid.
func probeDynalite(ctx context.Context, addr string, pid int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/svctest/pid", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(string(b)); resp.StatusCode != http.StatusOK || got != strconv.Itoa(pid) {
		return fmt.Errorf("%s is not dynalite process %d: %s %q", addr, pid, resp.Status, got)
	}
	return nil
}

// Config is an AWS SDK configuration for d: its endpoint, DynamoRegion, static fake
// credentials, and no retries, so a test sees every failure.
func (d *Dynamo) Config() aws.Config {
	return aws.Config{
		Region:       DynamoRegion,
		BaseEndpoint: aws.String(d.URL),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: DynamoAccessKey, SecretAccessKey: DynamoSecretKey, Source: "svctest"}, nil
		}),
		Retryer: func() aws.Retryer { return aws.NopRetryer{} },
	}
}

// Env is the environment that points the AWS SDK's default configuration at d,
// through the standard AWS_ENDPOINT_URL_DYNAMODB, with fake credentials, and keeps it
// and the AWS CLI off the shared files and the instance metadata service. Debian's AWS
// CLI (2.9) predates AWS_ENDPOINT_URL_DYNAMODB: give it --endpoint-url URL.
func (d *Dynamo) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + DynamoAccessKey,
		"AWS_SECRET_ACCESS_KEY=" + DynamoSecretKey,
		"AWS_REGION=" + DynamoRegion,
		"AWS_DEFAULT_REGION=" + DynamoRegion,
		"AWS_ENDPOINT_URL_DYNAMODB=" + d.URL,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
	}
}
