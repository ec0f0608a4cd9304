package bench

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// database is the MariaDB database the mysql strategy's calcserver uses.
const database = "unicorn"

// startService starts a service with svctest in dir.
func startService(service, dir string) (*svctest.Proc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	switch service {
	case Redis:
		return svctest.StartRedis(dir)
	case Memcached:
		return svctest.StartMemcached(dir)
	case MariaDB:
		return svctest.StartMariaDB(dir)
	}
	return nil, fmt.Errorf("unknown service %q", service)
}

// serviceConfig prepares a started service for calcserver and returns the server.ini
// lines that point calcserver at it.
func serviceConfig(ctx context.Context, service string, p *svctest.Proc) (string, error) {
	switch service {
	case Redis:
		return fmt.Sprintf("RedisHost = 127.0.0.1\nRedisPort = %d\n", p.Port), nil
	case Memcached:
		return fmt.Sprintf("MemcacheHost = 127.0.0.1\nMemcachePort = %d\n", p.Port), nil
	case MariaDB:
		if err := createDatabase(ctx, p.Addr); err != nil {
			return "", err
		}
		// MysqlCreateTable: calcserver creates the contest's table with a unique index
		// on requestid, so lookups do not scan the table.
		return fmt.Sprintf("MysqlHost = 127.0.0.1\nMysqlPort = %d\nMysqlUser = root\nMysqlDb = %s\nMysqlCreateTable = true\n",
			p.Port, database), nil
	}
	return "", fmt.Errorf("unknown service %q", service)
}

// createDatabase creates the database on the MariaDB at addr, as root with no password
// (how svctest installs it).
func createDatabase(ctx context.Context, addr string) error {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "tcp", addr
	cfg.Timeout = 5 * time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+database); err != nil {
		return fmt.Errorf("create database %s: %w", database, err)
	}
	return nil
}
