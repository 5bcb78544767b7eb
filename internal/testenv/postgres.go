package testenv

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/devstack"
)

// StartStore starts PostgreSQL alone (data in a temporary folder) and returns a migrated audit store
// on it, for tests that need no other server of the stack; both are stopped in t.Cleanup.
func StartStore(t testing.TB) *audit.Store {
	t.Helper()
	// Not t.TempDir: PostgreSQL runs as the postgres user when tests run as root, and must reach it.
	dir, err := os.MkdirTemp("", "kafkasync-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg, err := devstack.StartPostgres(ctx, filepath.Join(dir, "pg"), 0, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Stop)
	s, err := audit.OpenMigrated(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}
