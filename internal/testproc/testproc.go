// Package testproc lets a test binary double as a kafkasync worker or bridge process, so tests can
// SIGKILL a real process in the middle of its work. A test package calls Main from its TestMain;
// Start re-executes the test binary in the given role with the test's configuration.
package testproc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/kafkaconn"
	"github.com/kafkasync/kafkasync/starter"
	"github.com/kafkasync/kafkasync/workers"
)

const roleEnv = "KAFKASYNC_TEST_ROLE"

// Roles.
const (
	Worker = "worker"
	Bridge = "bridge"
)

// Main runs the role named by the environment, or the tests.
func Main(m *testing.M) {
	if code, ok := Child(); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// Child runs the role named by the environment, if any, and returns its exit code and true; in the
// test process itself it returns false at once.
func Child() (int, bool) {
	role := os.Getenv(roleEnv)
	if role == "" {
		return 0, false
	}
	return run(role), true
}

func run(role string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := config.Load("", os.Environ())
	if err != nil {
		fmt.Fprintln(os.Stderr, role, "config:", err)
		return 2
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).With("role", role, "pid", os.Getpid())
	c, err := workers.Dial(ctx, cfg.Temporal, log)
	if err != nil {
		log.Error("temporal", "err", err)
		return 1
	}
	defer c.Close()
	switch role {
	case Worker:
		tr, closeT, err := workers.NewTransfer(ctx, cfg, log)
		if err != nil {
			log.Error("worker", "err", err)
			return 1
		}
		defer closeT()
		err = workers.Run(ctx, c, cfg.Temporal.TaskQueue, tr, 5*time.Second)
		if err != nil {
			log.Error("worker", "err", err)
			return 1
		}
	case Bridge:
		prod, err := kafkaconn.NewProducer(cfg.Kafka, 0)
		if err != nil {
			log.Error("bridge", "err", err)
			return 1
		}
		defer prod.Close()
		store, err := audit.OpenMigrated(ctx, cfg.Postgres.DSN.Reveal())
		if err != nil {
			log.Error("bridge", "err", err)
			return 1
		}
		defer store.Close()
		b := starter.New(cfg, c, prod, log)
		b.Backoff = time.Second
		b.Audit = store
		if err := starter.RunConfig(ctx, cfg, b); err != nil {
			log.Error("bridge", "err", err)
			return 1
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown role", role)
		return 2
	}
	return 0
}

// Proc is a running worker or bridge process.
type Proc struct {
	Cmd  *exec.Cmd
	done chan struct{}
}

// Start runs role with cfg; its log lines (JSON) go to logw. The process is stopped (SIGTERM) when
// the test ends, if it still runs.
func Start(t testing.TB, role string, cfg config.Config, logw io.Writer) *Proc {
	t.Helper()
	p, err := Spawn(role, cfg, logw, "-test.run=^$")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(10 * time.Second) })
	return p
}

// Spawn re-executes this program in role with cfg (a program other than a test binary calls Child
// first thing in main). args are passed on the command line.
func Spawn(role string, cfg config.Config, logw io.Writer, args ...string) (*Proc, error) {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), cfg.Environ()...), roleEnv+"="+role)
	cmd.Stdout, cmd.Stderr = logw, logw
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to grace, then kills.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
