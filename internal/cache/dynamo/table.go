package dynamo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The pauses between DescribeTable calls while a table is being created: DynamoDB
// takes seconds, dynalite milliseconds.
const (
	firstPoll = 50 * time.Millisecond
	maxPoll   = 2 * time.Second
)

// Init checks the table, creating it (on-demand billing, TTL on "expires") if it is
// missing and Options.CreateTable is set, and waits until it is active. A missing
// table otherwise yields an error wrapping ErrNoTable whose text gives the aws
// commands that create it; a table with another key yields ErrSchema; an unreachable
// DynamoDB yields a plain error, and the caller calls Init again later. What can be
// served but should be known, such as a TTL DynamoDB will not enforce, is logged and
// kept in Warnings. Init is idempotent and safe for concurrent use: once it has
// succeeded it returns nil at once.
func (c *Cache) Init(ctx context.Context) error {
	select {
	case c.initSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("dynamo: init %s: %w", c.name(), ctx.Err())
	}
	defer func() { <-c.initSem }()
	if c.ready.Load() {
		return nil
	}
	table, err := c.table(ctx)
	if err != nil {
		return err
	}
	if err := c.checkKey(table); err != nil {
		return err
	}
	warnings, err := c.timeToLive(ctx)
	if err != nil {
		return err
	}
	c.warnings.Store(&warnings)
	// Logged here rather than by the caller: Init may first succeed long after
	// startup, from a probe, and the operator should still see them.
	if c.o.Logger != nil {
		for _, w := range warnings {
			c.o.Logger.Warn("dynamo backend: "+w, "backend", "dynamo")
		}
	}
	c.ready.Store(true)
	return nil
}

// Warnings are the limits of the table Init found that an operator should know about,
// such as a CacheTTL DynamoDB does not enforce. They are nil until Init has succeeded.
func (c *Cache) Warnings() []string {
	if w := c.warnings.Load(); w != nil && c.ready.Load() {
		return slices.Clone(*w)
	}
	return nil
}

// table describes the table once it can serve, creating it first when allowed.
func (c *Cache) table(ctx context.Context) (*types.TableDescription, error) {
	out, err := c.admin.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(c.o.Table)})
	var nf *types.ResourceNotFoundException
	switch {
	case errors.As(err, &nf) && !c.o.CreateTable:
		return nil, fmt.Errorf("%w: %s; create it with: %s (or set DynamoCreateTable = true to let the server create it)",
			ErrNoTable, c.name(), strings.Join(c.CreateCommands(), " && "))
	case errors.As(err, &nf):
		if err := c.create(ctx); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("dynamo: init: describe table %s: %w", c.name(), err)
	case usable(out.Table.TableStatus):
		return out.Table, nil
	case out.Table.TableStatus != types.TableStatusCreating:
		return nil, fmt.Errorf("dynamo: init: table %s is %s", c.name(), out.Table.TableStatus)
	}
	return c.waitActive(ctx)
}

// create creates the table. Another host may be creating it at the same time; then
// DynamoDB answers ResourceInUseException, and the table is waited for all the same.
func (c *Cache) create(ctx context.Context) error {
	_, err := c.admin.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(c.o.Table),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(attrID), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(attrID), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("dynamo: init: create table %s: %w", c.name(), err)
	}
	if c.o.Logger != nil && err == nil {
		c.o.Logger.Info("dynamo backend: created table "+c.name(), "backend", "dynamo")
	}
	return nil
}

// waitActive polls the table until it is active, backing off up to maxPoll, for as
// long as ctx allows.
func (c *Cache) waitActive(ctx context.Context) (*types.TableDescription, error) {
	pause := firstPoll
	t := time.NewTimer(pause)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dynamo: init: waiting for table %s to become active: %w", c.name(), ctx.Err())
		case <-t.C:
		}
		out, err := c.admin.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(c.o.Table)})
		var nf *types.ResourceNotFoundException
		switch {
		case errors.As(err, &nf): // not visible yet: DescribeTable is eventually consistent
		case err != nil:
			return nil, fmt.Errorf("dynamo: init: describe table %s: %w", c.name(), err)
		case usable(out.Table.TableStatus):
			return out.Table, nil
		case out.Table.TableStatus != types.TableStatusCreating:
			return nil, fmt.Errorf("dynamo: init: table %s is %s", c.name(), out.Table.TableStatus)
		}
		pause = min(2*pause, maxPoll)
		t.Reset(pause)
	}
}

// checkKey verifies that the table's key is the string partition key "id" alone.
func (c *Cache) checkKey(t *types.TableDescription) error {
	attrTypes := map[string]types.ScalarAttributeType{}
	for _, d := range t.AttributeDefinitions {
		attrTypes[aws.ToString(d.AttributeName)] = d.AttributeType
	}
	var have []string
	for _, k := range t.KeySchema {
		name := aws.ToString(k.AttributeName)
		have = append(have, fmt.Sprintf("%s (%s, type %s)", name, k.KeyType, attrTypes[name]))
	}
	if len(t.KeySchema) == 1 && aws.ToString(t.KeySchema[0].AttributeName) == attrID &&
		t.KeySchema[0].KeyType == types.KeyTypeHash && attrTypes[attrID] == types.ScalarAttributeTypeS {
		return nil
	}
	return fmt.Errorf("%w: %s has the key %s, want the partition key %s of type S alone; use another DynamoTable (set DynamoCreateTable = true, or create it with: %s)",
		ErrSchema, c.name(), strings.Join(have, " + "), attrID, strings.Join(c.CreateCommands(), " && "))
}

// timeToLive checks, and with CreateTable enables, the table's TTL on "expires", and
// returns what an operator should know. A refusal (no permission, or an emulator that
// lacks the operation) is a warning, not a failure: Get enforces the expiry anyway,
// and only the storage of expired items is at stake. An unreachable DynamoDB is an
// error, so Init is tried again.
func (c *Cache) timeToLive(ctx context.Context) ([]string, error) {
	out, err := c.admin.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(c.o.Table)})
	if err != nil {
		if !isAPIError(err) {
			return nil, fmt.Errorf("dynamo: init: describe the TTL of %s: %w", c.name(), err)
		}
		return c.ttlWarning(fmt.Sprintf("cannot read the TTL setting of table %s (%v)", c.name(), err)), nil
	}
	var (
		status types.TimeToLiveStatus
		attr   string
	)
	if d := out.TimeToLiveDescription; d != nil {
		status, attr = d.TimeToLiveStatus, aws.ToString(d.AttributeName)
	}
	on := status == types.TimeToLiveStatusEnabled || status == types.TimeToLiveStatusEnabling
	switch {
	case on && attr == attrExpires:
		return nil, nil
	case on || status == types.TimeToLiveStatusDisabling:
		// A table has one TTL attribute, and changing it takes up to an hour; the
		// table's owner decides.
		if c.o.TTL == 0 {
			return nil, nil
		}
		return []string{fmt.Sprintf("table %s has its TTL on the attribute %q, not %q: expired entries are not served but stay stored (and billed) until deleted", c.name(), attr, attrExpires)}, nil
	case !c.o.CreateTable:
		if c.o.TTL == 0 {
			return nil, nil
		}
		return c.ttlWarning(fmt.Sprintf("table %s has no TTL", c.name())), nil
	}
	_, err = c.admin.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(c.o.Table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(attrExpires), Enabled: aws.Bool(true)},
	})
	switch {
	case err == nil:
		if c.o.Logger != nil {
			c.o.Logger.Info("dynamo backend: enabled TTL on "+attrExpires+" for table "+c.name(), "backend", "dynamo")
		}
		return nil, nil
	case !isAPIError(err):
		return nil, fmt.Errorf("dynamo: init: enable the TTL of %s: %w", c.name(), err)
	case strings.Contains(err.Error(), "already enabled"): // another host was first
		return nil, nil
	}
	return c.ttlWarning(fmt.Sprintf("cannot enable the TTL of table %s (%v)", c.name(), err)), nil
}

// ttlWarning completes what went wrong with the TTL with its consequence, when
// entries expire, and the command that fixes it.
func (c *Cache) ttlWarning(what string) []string {
	if c.o.TTL == 0 {
		return []string{what + "; entries written with a CacheTTL later would stay stored until deleted; enable it with: " + c.ttlCommand()}
	}
	return []string{what + ": expired entries are not served but stay stored (and billed) until deleted; enable it with: " + c.ttlCommand()}
}

// CreateCommands are the AWS CLI commands that create the table as Init does with
// CreateTable: on-demand billing, then the TTL on "expires" once the table exists.
// They name the region and, when there is one, the endpoint override.
func (c *Cache) CreateCommands() []string {
	return []string{
		c.aws("create-table") + " --attribute-definitions AttributeName=" + attrID + ",AttributeType=S" +
			" --key-schema AttributeName=" + attrID + ",KeyType=HASH --billing-mode PAY_PER_REQUEST",
		c.aws("wait table-exists"),
		c.ttlCommand(),
	}
}

func (c *Cache) ttlCommand() string {
	return c.aws("update-time-to-live") + " --time-to-live-specification Enabled=true,AttributeName=" + attrExpires
}

// aws starts an AWS CLI command on the table.
func (c *Cache) aws(cmd string) string {
	s := "aws dynamodb " + cmd + " --region " + c.region
	if c.endpoint != "" {
		s += " --endpoint-url " + c.endpoint
	}
	return s + " --table-name " + c.o.Table
}
