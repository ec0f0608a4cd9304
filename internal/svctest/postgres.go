package svctest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// postgresUser is the account Debian's postgresql package creates. initdb and postgres
// refuse to run as root, so as root the server runs as this user.
const postgresUser = "postgres"

// postgresSuperuser is the superuser initdb creates; it logs in without a password
// over TCP from the loopback address (trust authentication).
const postgresSuperuser = "postgres"

// maxSocketPath is the longest Unix socket path Linux accepts (sun_path, less its
// terminating NUL).
const maxSocketPath = 107

// postgresTuning keeps a throwaway server quick: nothing a test stores has to survive
// a power cut (no fsync), and the defaults' shared memory is more than a test needs.
// Commits are still written to the WAL before they return, so a killed server keeps
// them, as a crashed one would.
var postgresTuning = []string{
	"-c", "fsync=off",
	"-c", "full_page_writes=off",
	"-c", "shared_buffers=16MB",
	"-c", "max_connections=300",
	"-c", "logging_collector=off",
}

// StartPostgres starts PostgreSQL's postgres with dir as its data directory, first
// running initdb there if dir holds no cluster, and waits until the superuser
// "postgres" can log in over TCP without a password. Because the data lives in dir, it
// survives Stop, Kill and Restart. The binaries are Debian's, found under
// /usr/lib/postgresql/<version>/bin (the newest version) or else on PATH.
//
// initdb and postgres refuse to run as root; as root both run as the package's
// postgres user, dir is handed to that user, and the directories above dir that lie
// inside the system's temporary directory are made searchable (not readable) by
// others so that the user can reach it.
//
// The server listens on 127.0.0.1 and on a Unix socket in dir (when the path is short
// enough). Kill, Pause and Resume reach its backends too, not only the postmaster, and
// Stop asks for a fast shutdown, which does not wait for clients to disconnect.
func StartPostgres(dir string) (*Proc, error) {
	binDir, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("svctest: postgres: %w", err)
	}
	var cred *syscall.Credential
	if isRoot() {
		if cred, err = postgresCredential(); err != nil {
			return nil, err
		}
		if err := handOver(dir, cred); err != nil {
			return nil, err
		}
	}
	setup := func(cmd *exec.Cmd) {
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
	}
	if err := initPostgres(binDir, dir, setup); err != nil {
		return nil, err
	}
	// Without a socket directory of its own the server would try Debian's
	// /var/run/postgresql, which a test may not be able to write.
	sockets := dir
	if len(dir)+len("/.s.PGSQL.65535.lock") > maxSocketPath {
		sockets = "" // TCP only: the tests connect over TCP anyway
	}
	p := &Proc{
		Name: "postgres",
		Dir:  dir,
		bin:  filepath.Join(binDir, "postgres"),
		argsFor: func(port int) []string {
			return append([]string{
				"-D", dir,
				"-p", strconv.Itoa(port),
				"-c", "listen_addresses=127.0.0.1",
				"-c", "unix_socket_directories=" + sockets,
			}, postgresTuning...)
		},
		probe: func(ctx context.Context, addr string, _ int) error {
			return probePostgres(ctx, addr, dir)
		},
		wait:  30 * time.Second,
		setup: setup,
		// SIGTERM is a "smart" shutdown, which waits for every client to leave.
		stopSignal: syscall.SIGINT,
		tree:       true,
	}
	if err := p.start(freePort); err != nil {
		return nil, err
	}
	return p, nil
}

// ConnString returns a pgx connection string that logs in as the superuser, with no
// password, to the database db on this server. It is empty for a Proc that is not
// PostgreSQL.
func (p *Proc) ConnString(db string) string {
	if p.Name != "postgres" {
		return ""
	}
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", p.Port, postgresSuperuser, db)
}

// postgresBinDir finds the directory of initdb and postgres: the newest
// /usr/lib/postgresql/<version>/bin that has both, else the directory of a postgres on
// PATH (Debian puts only wrappers there, but other systems put the server itself).
func postgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		return n
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "postgres")) && isExecutable(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	if path, err := exec.LookPath("postgres"); err == nil && isExecutable(filepath.Join(filepath.Dir(path), "initdb")) {
		return filepath.Dir(path), nil
	}
	return "", errors.New("svctest: postgres and initdb not found under /usr/lib/postgresql/*/bin or on PATH (run scripts/deps.sh)")
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// postgresCredential is the postgres user's uid and gid.
func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup(postgresUser)
	if err != nil {
		return nil, fmt.Errorf("svctest: postgres: refuses to run as root and there is no %q user to run it as (run scripts/deps.sh): %w", postgresUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("svctest: postgres: uid of %q: %w", postgresUser, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("svctest: postgres: gid of %q: %w", postgresUser, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// handOver gives dir to the user of cred, creating it if needed with the mode 0700
// postgres demands of a data directory, and lets that user search the directories
// above it that lie inside the temporary directory (t.TempDir makes them 0700).
// Directories outside it are left alone: a data directory there must already be
// reachable.
func handOver(dir string, cred *syscall.Credential) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("svctest: postgres: %w", err)
	}
	if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("svctest: postgres: give %s to %s: %w", dir, postgresUser, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("svctest: postgres: %w", err)
	}
	tmp, err := filepath.Abs(os.TempDir())
	if err != nil {
		return fmt.Errorf("svctest: postgres: %w", err)
	}
	for d := filepath.Dir(dir); strings.HasPrefix(d, tmp+string(filepath.Separator)); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("svctest: postgres: %w", err)
		}
		if mode := fi.Mode().Perm(); mode&0o001 == 0 {
			if err := os.Chmod(d, mode|0o001); err != nil {
				return fmt.Errorf("svctest: postgres: let %s reach %s: %w", postgresUser, dir, err)
			}
		}
	}
	return nil
}

// initPostgres creates a cluster in dir unless one is already there, so a restarted or
// reused data directory keeps its data. The superuser is "postgres" with trust
// authentication, and the databases are UTF-8 with the C locale, as on RDS.
func initPostgres(binDir, dir string, setup func(*exec.Cmd)) error {
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("svctest: postgres: %w", err)
	}
	bin := filepath.Join(binDir, "initdb")
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"-D", dir,
		"-U", postgresSuperuser,
		"--auth=trust",
		"--encoding=UTF8",
		"--no-locale",
		"--no-sync",
	)
	cmd.Dir = dir
	out := &Tail{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = waitDelay
	setup(cmd)
	if err := runCmd(cmd); err != nil {
		return fmt.Errorf("svctest: postgres: %s in %s: %w\n--- output tail ---\n%s", bin, dir, err, out)
	}
	return nil
}

// probePostgres checks that the superuser can log in on addr and that the server is
// ours, by its data directory, rather than another test's server that took the port.
func probePostgres(ctx context.Context, addr, dir string) error {
	host, port, _ := strings.Cut(addr, ":")
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s dbname=postgres sslmode=disable", host, port, postgresSuperuser))
	if err != nil {
		return err
	}
	cfg.ConnectTimeout = probeTimeout
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var got string
	if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&got); err != nil {
		return err
	}
	if filepath.Clean(got) != dir {
		return fmt.Errorf("%s is a server with data directory %s, not %s", addr, got, dir)
	}
	return nil
}
