// Package devstack starts the real servers kafkasync needs, on loopback, for `kafkasync dev` and for
// the tests: Apache Kafka (one KRaft node) or an in-process Kafka-protocol broker, the Temporal dev server, an SFTP
// server (pkg/sftp, in process), an S3-API server (versitygw) and PostgreSQL (initdb + postgres).
// Every server it starts, it stops: child processes get their own process group and are killed
// with the parent.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// proc is a child server process.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProc(name string, log io.Writer, cred *syscall.Credential, bin string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the process group, waits up to grace, then kills it.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p == nil || p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// waitFor polls check until it succeeds, the process exits, or the timeout passes.
func waitFor(ctx context.Context, p *proc, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if p != nil && p.exited() {
			return fmt.Errorf("%s %w: %v (last check: %v)", p.name, errExited, p.err, last)
		}
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", nameOf(p), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func nameOf(p *proc) string {
	if p == nil {
		return "server"
	}
	return p.name
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. Like the Temporal dev server's
// own port picker, it leaves the port in TIME_WAIT (a connection closed from the listening side), so
// the kernel does not hand it out again to another bind(:0) for a while; servers that set
// SO_REUSEADDR (Go, PostgreSQL) can still listen on it.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	addr := l.Addr().(*net.TCPAddr)
	c, err := net.DialTCP("tcp", nil, addr)
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer c.Close()
	s, err := l.Accept()
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	s.Close() // the listening side closes first and keeps the TIME_WAIT
	return addr.Port, nil
}

func portOrFree(p int) (int, error) {
	if p > 0 {
		return p, nil
	}
	return FreePort()
}

func tcpReady(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// FindBin locates a helper binary: in binDir if given, else next to the running executable, else in
// ./bin of the current directory or any parent (the repository's bin/ from inside a test), else PATH.
func FindBin(binDir, name string) (string, error) {
	dirs := binDirs(binDir)
	for _, d := range dirs {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found in %s or PATH: run `make tools`", name, strings.Join(dirs[:min(len(dirs), 3)], ", "))
}

// binDirs are the folders FindBin searches, in order.
func binDirs(binDir string) []string {
	var dirs []string
	if binDir != "" {
		dirs = append(dirs, binDir)
	}
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			dirs = append(dirs, filepath.Join(d, "bin"))
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return dirs
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// startAgain runs start until it succeeds or fails otherwise than by the server exiting while it
// started, at most three times: a port free a moment ago can be taken before the server binds it,
// and start picks fresh ones (ports the caller chose are kept).
func startAgain[T any](ctx context.Context, log io.Writer, name string, start func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := start()
		if err == nil || !errors.Is(err, errExited) || attempt == 3 || ctx.Err() != nil {
			return v, err
		}
		if log != nil {
			fmt.Fprintf(log, "devstack: %s exited while starting (%v); starting it again on fresh ports\n", name, err)
		}
	}
}

// errExited marks a server that ended before it was ready.
var errExited = errors.New("exited")
