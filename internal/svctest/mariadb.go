package svctest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"
)

// installTimeout bounds mariadb-install-db, which takes about a second on a fresh
// directory.
const installTimeout = 60 * time.Second

// mariadbTuning keeps a throwaway server small and quick to start: the default buffer
// pool and 96 MB redo log cost seconds and disk for data a test never has.
var mariadbTuning = []string{
	"--innodb-buffer-pool-size=32M",
	"--innodb-log-file-size=8M",
}

// StartMariaDB starts mariadbd with dir as its data directory, first installing the
// system tables there if dir holds none, and waits until root can log in over TCP with an
// empty password. Because the data lives in dir, it survives Stop, Kill and Restart.
// /etc/mysql is ignored (--no-defaults) so the machine's configuration cannot leak in.
func StartMariaDB(dir string) (*Proc, error) {
	bin, err := lookBin("mariadbd")
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("svctest: mariadb: %w", err)
	}
	if err := installMariaDB(dir); err != nil {
		return nil, err
	}
	socket := filepath.Join(dir, "mysql.sock")
	p := &Proc{
		Name: "mariadb",
		Dir:  dir,
		bin:  bin,
		argsFor: func(port int) []string {
			args := []string{
				"--no-defaults",
				"--datadir=" + dir,
				"--socket=" + socket,
				"--pid-file=" + filepath.Join(dir, "mariadb.pid"),
				"--port=" + strconv.Itoa(port),
				"--bind-address=127.0.0.1",
				"--skip-name-resolve",
				"--max-connections=1000",
			}
			args = append(args, mariadbTuning...)
			if isRoot() {
				args = append(args, "--user=root")
			}
			return args
		},
		probe: func(ctx context.Context, addr string, _ int) error {
			return probeMariaDB(ctx, addr, socket)
		},
		wait: 30 * time.Second,
	}
	if err := p.start(freePort); err != nil {
		return nil, err
	}
	return p, nil
}

// DSN returns a go-sql-driver/mysql DSN that logs in as root, with no password, to the
// database db on this server. It is empty for a Proc that is not MariaDB.
func (p *Proc) DSN(db string) string {
	if p.Name != "mariadb" {
		return ""
	}
	return fmt.Sprintf("root@tcp(%s)/%s?parseTime=true", p.Addr, db)
}

// installMariaDB creates the system tables in dir unless they are already there, so a
// restarted or reused data directory keeps its data.
func installMariaDB(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "mysql")); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("svctest: mariadb: %w", err)
	}
	bin, err := lookBin("mariadb-install-db")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("svctest: mariadb: %w", err)
	}
	args := []string{
		"--no-defaults",
		// "normal" gives root an empty password instead of socket-only login, and the
		// install creates root@127.0.0.1, which is what the TCP DSN logs in as.
		"--auth-root-authentication-method=normal",
		"--datadir=" + dir,
		"--skip-test-db",
	}
	args = append(args, mariadbTuning...)
	if isRoot() {
		args = append(args, "--user=root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	out := &Tail{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = waitDelay
	if err := runCmd(cmd); err != nil {
		return fmt.Errorf("svctest: mariadb: %s in %s: %w\n--- output tail ---\n%s", bin, dir, err, out)
	}
	return nil
}

// probeMariaDB checks that root can log in on addr and that the server is ours, by its
// socket path, rather than another test's server that took the port.
func probeMariaDB(ctx context.Context, addr, socket string) error {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "tcp"
	cfg.Addr = addr
	cfg.Timeout = probeTimeout
	// The driver logs every failed handshake; while the server starts up those are
	// expected and only noise.
	cfg.Logger = mysql.Logger(discardLogger{})
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	var got string
	if err := db.QueryRowContext(ctx, "SELECT @@socket").Scan(&got); err != nil {
		return err
	}
	if got != socket {
		return fmt.Errorf("%s is a server with socket %s, not %s", addr, got, socket)
	}
	return nil
}

type discardLogger struct{}

func (discardLogger) Print(...any) {}
