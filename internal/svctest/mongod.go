package svctest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// StartMongod starts the MongoDB server bin (a mongod, which Debian does not package)
// with dir as its data directory on a free loopback port, without access control, and
// waits until it answers. Because the data lives in dir, it survives Stop, Kill and
// Restart.
func StartMongod(bin, dir string) (*Proc, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("svctest: mongod: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("svctest: mongod: %w", err)
	}
	p := &Proc{
		Name: "mongod",
		Dir:  dir,
		bin:  bin,
		argsFor: func(port int) []string {
			return []string{
				"--dbpath", dir,
				"--port", strconv.Itoa(port),
				"--bind_ip", "127.0.0.1",
				"--nounixsocket",
				"--quiet",
				// The default cache is half the machine's memory.
				"--wiredTigerCacheSizeGB", "0.25",
			}
		},
		probe: probeMongod,
		wait:  60 * time.Second, // a first start creates the storage files
	}
	if err := p.start(freePort); err != nil {
		return nil, err
	}
	return p, nil
}

// probeMongod checks that the server on addr answers and is the process with the given
// pid.
func probeMongod(ctx context.Context, addr string, pid int) error {
	client, err := mongo.Connect(options.Client().
		ApplyURI("mongodb://" + addr + "/?directConnection=true").
		SetConnectTimeout(probeTimeout).
		SetServerSelectionTimeout(probeTimeout))
	if err != nil {
		return err
	}
	defer client.Disconnect(context.WithoutCancel(ctx))
	var status struct {
		Pid int64 `bson:"pid"`
	}
	if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "serverStatus", Value: 1}}).Decode(&status); err != nil {
		return err
	}
	if status.Pid != int64(pid) {
		return fmt.Errorf("%s is served by process %d, not %d", addr, status.Pid, pid)
	}
	return nil
}
