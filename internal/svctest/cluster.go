package svctest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

const (
	// clusterCreateTimeout bounds redis-cli --cluster create, which assigns slots and
	// waits for the nodes to meet.
	clusterCreateTimeout = 30 * time.Second
	// clusterOKTimeout bounds the wait for every node to see all slots covered, which
	// the nodes learn by gossip after the create.
	clusterOKTimeout = 20 * time.Second
	// clusterBusOffset is the fixed distance from a node's client port to its cluster
	// bus port, so both must be free.
	clusterBusOffset = 10000
)

// Cluster is a Redis Cluster of masters without replicas, each node a Proc.
type Cluster struct {
	Nodes []*Proc
	Addrs []string // the nodes' client addresses, in Nodes order
}

// StartRedisCluster starts masters redis-server nodes, each in dir/node-N, joins them
// with redis-cli --cluster create and no replicas, and waits until every node reports
// cluster_state:ok. Redis Cluster needs at least three masters.
func StartRedisCluster(dir string, masters int) (_ *Cluster, err error) {
	if masters < 3 {
		return nil, fmt.Errorf("svctest: redis cluster needs at least 3 masters, not %d", masters)
	}
	cli, err := lookBin("redis-cli")
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	defer func() {
		if err != nil { // stop the nodes started so far
			_ = c.Stop()
		}
	}()
	for i := range masters {
		nodeDir := filepath.Join(dir, fmt.Sprintf("node-%d", i))
		if err := os.MkdirAll(nodeDir, 0o755); err != nil {
			return nil, fmt.Errorf("svctest: redis cluster: %w", err)
		}
		p, err := startRedis(nodeDir, freeClusterPort, []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
		})
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, p)
		c.Addrs = append(c.Addrs, p.Addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterCreateTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cmd := exec.CommandContext(ctx, cli, args...)
	out := &Tail{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = waitDelay
	if err := runCmd(cmd); err != nil {
		return nil, fmt.Errorf("svctest: redis cluster: %s --cluster create %v: %w\n--- output tail ---\n%s", cli, c.Addrs, err, out)
	}
	if err := c.waitOK(); err != nil {
		return nil, err
	}
	return c, nil
}

// Stop stops every node, reporting all failures.
func (c *Cluster) Stop() error {
	var errs []error
	for _, p := range c.Nodes {
		errs = append(errs, p.Stop())
	}
	return errors.Join(errs...)
}

// waitOK polls CLUSTER INFO on every node until all say cluster_state:ok; a node that
// has not yet heard about every slot says fail, and clients would see errors.
func (c *Cluster) waitOK() error {
	ctx, cancel := context.WithTimeout(context.Background(), clusterOKTimeout)
	defer cancel()
	t := time.NewTimer(0)
	defer t.Stop()
	var last error
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("svctest: redis cluster %v not ok within %v: %w", c.Addrs, clusterOKTimeout, last)
		case <-t.C:
		}
		last = c.allOK(ctx)
		if last == nil {
			return nil
		}
		t.Reset(100 * time.Millisecond)
	}
}

func (c *Cluster) allOK(ctx context.Context) error {
	for _, p := range c.Nodes {
		if err := clusterOK(ctx, p.Addr); err != nil {
			return err
		}
	}
	return nil
}

// clusterOK asks the node at addr for CLUSTER INFO, within probeTimeout, and
// reports an error unless it says cluster_state:ok.
func clusterOK(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	rdb := redisClient(addr, nil)
	defer rdb.Close()
	info, err := rdb.ClusterInfo(ctx).Result()
	if err != nil {
		return fmt.Errorf("CLUSTER INFO on %s: %w", addr, err)
	}
	if state := infoField(info, "cluster_state"); state != "ok" {
		return fmt.Errorf("%s: cluster_state:%s", addr, state)
	}
	return nil
}

// freeClusterPort returns a free port whose cluster bus port, 10000 higher, is free too
// and still a valid port.
func freeClusterPort() (int, error) {
	for range 100 {
		port, err := freePort()
		if err != nil {
			return 0, err
		}
		if port+clusterBusOffset > 65535 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+clusterBusOffset)))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, errors.New("no free port whose cluster bus port is free too")
}
