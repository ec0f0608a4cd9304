package bench

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/unicorn-rentals/unicorn/internal/svctest"
)

// database is the MariaDB and PostgreSQL database, and the MongoDB database, the
// calcservers of the mysql, pgsql and mongodb strategies use.
const database = "unicorn"

// dynamoTable is the DynamoDB table of the dynamodb strategy.
const dynamoTable = "unicorntable"

// mongodMissing is why the mongodb strategy is skipped without a mongod on PATH:
// Debian does not package MongoDB, and the bench never stands FerretDB in for it.
const mongodMissing = "mongod not found: install MongoDB or run it yourself " +
	"(a calcserver with MongoDbHost pointing at it, measured with gameday run)"

// notInstalled is a service whose program is not installed: the strategy is skipped
// with this reason alone, not as a service that did not start.
type notInstalled struct{ reason string }

func (e *notInstalled) Error() string { return e.reason }

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
	case Postgres:
		return svctest.StartPostgres(dir)
	case Mongod:
		bin, err := exec.LookPath("mongod")
		if err != nil {
			return nil, &notInstalled{mongodMissing}
		}
		return svctest.StartMongod(bin, dir)
	case Dynalite:
		d, err := svctest.StartDynalite(dir)
		if err != nil {
			return nil, err
		}
		return d.Proc, nil
	}
	return nil, fmt.Errorf("unknown service %q", service)
}

// serviceConfig prepares a started service for calcserver and returns the server.ini
// lines that point calcserver at it, and the variables to add to calcserver's
// environment.
func serviceConfig(ctx context.Context, service string, p *svctest.Proc) (ini string, env []string, err error) {
	switch service {
	case Redis:
		return fmt.Sprintf("RedisHost = 127.0.0.1\nRedisPort = %d\n", p.Port), nil, nil
	case Memcached:
		return fmt.Sprintf("MemcacheHost = 127.0.0.1\nMemcachePort = %d\n", p.Port), nil, nil
	case MariaDB:
		if err := createDatabase(ctx, p.Addr); err != nil {
			return "", nil, err
		}
		// MysqlCreateTable: calcserver creates the contest's table with a unique index
		// on requestid, so lookups do not scan the table.
		return fmt.Sprintf("MysqlHost = 127.0.0.1\nMysqlPort = %d\nMysqlUser = root\nMysqlDb = %s\nMysqlCreateTable = true\n",
			p.Port, database), nil, nil
	case Postgres:
		if err := createPgDatabase(ctx, p); err != nil {
			return "", nil, err
		}
		// PgsqlCreateTable: calcserver creates the contest's table (and its index).
		return fmt.Sprintf("PgsqlHost = 127.0.0.1\nPgsqlPort = %d\nPgsqlUser = postgres\nPgsqlDb = %s\nPgsqlSSLMode = disable\nPgsqlCreateTable = true\n",
			p.Port, database), nil, nil
	case Mongod:
		return fmt.Sprintf("MongoDbHost = 127.0.0.1\nMongoDbPort = %d\nMongoDbDatabase = %s\n", p.Port, database), nil, nil
	case Dynalite:
		// The endpoint, region and fake credentials reach calcserver's AWS SDK through
		// its environment, as AWS_ENDPOINT_URL_DYNAMODB and the rest would on a laptop.
		d := &svctest.Dynamo{Proc: p, URL: "http://" + p.Addr}
		return fmt.Sprintf("DynamoTable = %s\nDynamoCreateTable = true\n", dynamoTable), d.Env(), nil
	}
	return "", nil, fmt.Errorf("unknown service %q", service)
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

// createPgDatabase creates the database on the PostgreSQL p, as the superuser with no
// password (how svctest starts it). PostgreSQL has no CREATE DATABASE IF NOT EXISTS,
// and p is fresh.
func createPgDatabase(ctx context.Context, p *svctest.Proc) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.ConnString("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+database); err != nil {
		return fmt.Errorf("create database %s: %w", database, err)
	}
	return nil
}
