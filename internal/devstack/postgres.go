package devstack

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a throw-away PostgreSQL cluster made with initdb, run as a child process.
type Postgres struct {
	// DSN reaches database kafkasync as user postgres, without a password, over TCP on loopback.
	DSN  string
	Port int
	Dir  string
	proc *proc
}

// pgBin finds a PostgreSQL server binary: on PATH, else the newest /usr/lib/postgresql/*/bin.
func pgBin(name string) (string, error) {
	if dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin"); len(dirs) > 0 {
		sort.Slice(dirs, func(i, j int) bool { return pgVer(dirs[i]) > pgVer(dirs[j]) })
		for _, d := range dirs {
			if p := filepath.Join(d, name); fileExists(p) {
				return p, nil
			}
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found: install PostgreSQL (Debian: apt-get install postgresql), or run `make tools`", name)
}

func pgVer(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// pgCredential returns the credential to run PostgreSQL with: the postgres user when we are root
// (PostgreSQL refuses to run as root), else nil (ourselves).
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL needs the postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// StartPostgres initialises dir (if it holds no cluster yet) and starts PostgreSQL on 127.0.0.1:port
// (0: a free port). dir must be reachable by the postgres user when running as root.
func StartPostgres(ctx context.Context, dir string, port int, log io.Writer) (*Postgres, error) {
	return startPostgres(ctx, dir, port, log, nil)
}

// PostgresTLS is a server certificate and its key (PEM files) for StartPostgresTLS.
type PostgresTLS struct{ CertFile, KeyFile string }

// StartPostgresTLS is StartPostgres with TLS on: the certificate and key are copied into the
// cluster's folder (PostgreSQL wants its key private to it). Clients may still connect in clear
// unless their DSN says sslmode=require or stronger; DSN keeps sslmode=disable.
func StartPostgresTLS(ctx context.Context, dir string, port int, log io.Writer, t PostgresTLS) (*Postgres, error) {
	return startPostgres(ctx, dir, port, log, &t)
}

func startPostgres(ctx context.Context, dir string, port int, log io.Writer, tlsFiles *PostgresTLS) (*Postgres, error) {
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	initdb, err := pgBin("initdb")
	if err != nil {
		return nil, err
	}
	postgres, err := pgBin("postgres")
	if err != nil {
		return nil, err
	}
	if port, err = portOrFree(port); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	if !fileExists(filepath.Join(dir, "PG_VERSION")) {
		p, err := startProc("initdb", log, cred, initdb, "-D", dir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
		if err != nil {
			return nil, err
		}
		<-p.done
		if p.err != nil {
			return nil, fmt.Errorf("initdb %s: %w (is the folder reachable by the postgres user?)", dir, p.err)
		}
	}
	_ = os.Remove(filepath.Join(dir, "postmaster.pid")) // left by a killed run; we own this cluster
	args := []string{"-D", dir, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "fsync=on",
		"-c", "max_connections=200", "-c", "shared_buffers=64MB"}
	if tlsFiles != nil {
		for _, f := range [][2]string{{tlsFiles.CertFile, "server.crt"}, {tlsFiles.KeyFile, "server.key"}} {
			b, err := os.ReadFile(f[0])
			if err != nil {
				return nil, err
			}
			to := filepath.Join(dir, f[1])
			if err := os.WriteFile(to, b, 0o600); err != nil {
				return nil, err
			}
			if cred != nil {
				if err := os.Chown(to, int(cred.Uid), int(cred.Gid)); err != nil {
					return nil, err
				}
			}
		}
		args = append(args, "-c", "ssl=on", "-c", "ssl_cert_file=server.crt", "-c", "ssl_key_file=server.key")
	}
	p, err := startProc("postgres", log, cred, postgres, args...)
	if err != nil {
		return nil, err
	}
	pg := &Postgres{Port: port, Dir: dir, proc: p,
		DSN: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/kafkasync?sslmode=disable", port)}
	admin := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	err = waitFor(ctx, p, 30*time.Second, func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		var exists bool
		if err := c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'kafkasync')`).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			_, err = c.Exec(ctx, `CREATE DATABASE kafkasync`)
		}
		return err
	})
	if err != nil {
		p.stop(syscall.SIGINT, 5*time.Second)
		return nil, err
	}
	return pg, nil
}

// Stop shuts PostgreSQL down (fast mode) and waits for it.
func (p *Postgres) Stop() {
	if p != nil {
		p.proc.stop(syscall.SIGINT, 10*time.Second)
	}
}

// PostgresDir returns a folder for a cluster under want, or, when running as root and the postgres
// user cannot reach want, a folder under /var/tmp named after it, so `kafkasync dev` works from a
// checkout in /root too.
func PostgresDir(want string) (string, error) {
	abs, err := filepath.Abs(want)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return "", err
	}
	if os.Geteuid() != 0 || reachableByOthers(filepath.Dir(abs)) {
		return abs, nil
	}
	h := fnv.New32a()
	h.Write([]byte(abs))
	return filepath.Join("/var/tmp", fmt.Sprintf("kafkasync-postgres-%08x", h.Sum32())), nil
}

func reachableByOthers(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if filepath.Dir(d) == d {
			return true
		}
	}
}
