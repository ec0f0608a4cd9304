package svctest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

func createTable(ctx context.Context, t *testing.T, db *dynamodb.Client, name string) {
	t.Helper()
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	w := dynamodb.NewTableExistsWaiter(db, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 20*time.Millisecond, 100*time.Millisecond
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, 10*time.Second); err != nil {
		t.Fatalf("waiting for %s: %v", name, err)
	}
}

func ttlStatus(ctx context.Context, t *testing.T, db *dynamodb.Client, name string) (types.TimeToLiveStatus, string) {
	t.Helper()
	out, err := db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(name)})
	if err != nil {
		t.Fatalf("DescribeTimeToLive: %v", err)
	}
	return out.TimeToLiveDescription.TimeToLiveStatus, aws.ToString(out.TimeToLiveDescription.AttributeName)
}

// TestDynaliteServesTheSDKAndLosesItsDataOnRestart checks the harness end to end: the
// SDK with Config stores and reads an item, TTL settings are kept per table as
// DynamoDB keeps them, a killed server refuses connections, and a restarted one
// answers on the same endpoint with nothing in it.
func TestDynaliteServesTheSDKAndLosesItsDataOnRestart(t *testing.T) {
	d := svctest.Dynalite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := dynamodb.NewFromConfig(d.Config())

	createTable(ctx, t, db, "svctest")
	item := map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "k"}, "v": &types.AttributeValueMemberS{Value: "hello"}}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("svctest"), Item: item}); err != nil {
		t.Fatalf("PutItem: %v", err)
	}
	got, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("svctest"), Key: map[string]types.AttributeValue{"id": item["id"]}})
	if err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	if v, ok := got.Item["v"].(*types.AttributeValueMemberS); !ok || v.Value != "hello" {
		t.Fatalf("GetItem = %#v", got.Item)
	}

	t.Run("TTL is off, can be enabled once, and is per table", func(t *testing.T) {
		if s, _ := ttlStatus(ctx, t, db, "svctest"); s != types.TimeToLiveStatusDisabled {
			t.Fatalf("new table's TTL is %s", s)
		}
		spec := &types.TimeToLiveSpecification{AttributeName: aws.String("expires"), Enabled: aws.Bool(true)}
		if _, err := db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: aws.String("svctest"), TimeToLiveSpecification: spec}); err != nil {
			t.Fatalf("UpdateTimeToLive: %v", err)
		}
		if s, a := ttlStatus(ctx, t, db, "svctest"); s != types.TimeToLiveStatusEnabled || a != "expires" {
			t.Fatalf("TTL is %s on %q, want ENABLED on expires", s, a)
		}
		_, err := db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: aws.String("svctest"), TimeToLiveSpecification: spec})
		if err == nil || !strings.Contains(err.Error(), "already enabled") {
			t.Fatalf("enabling twice: %v, want ValidationException: already enabled", err)
		}
		createTable(ctx, t, db, "other")
		if s, _ := ttlStatus(ctx, t, db, "other"); s != types.TimeToLiveStatusDisabled {
			t.Fatalf("another table's TTL is %s", s)
		}
		var nf *types.ResourceNotFoundException
		if _, err := db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String("missing")}); !errors.As(err, &nf) {
			t.Fatalf("DescribeTimeToLive of a missing table: %v, want ResourceNotFoundException", err)
		}
	})

	t.Run("the AWS CLI reaches it with Env and its URL", func(t *testing.T) {
		cmd := exec.CommandContext(ctx, "/usr/bin/aws", "--endpoint-url", d.URL, "dynamodb", "describe-time-to-live", "--table-name", "svctest")
		cmd.Env = append(os.Environ(), d.Env()...)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ENABLED") {
			t.Fatalf("aws dynamodb describe-time-to-live: %v\n%s", err, out)
		}
	})

	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ListTables(ctx, &dynamodb.ListTablesInput{}); err == nil {
		t.Fatal("ListTables answered by a killed server")
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	out, err := db.ListTables(ctx, &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatalf("ListTables after the restart: %v", err)
	}
	if len(out.TableNames) != 0 {
		t.Fatalf("a restarted dynalite kept %v", out.TableNames)
	}
}
