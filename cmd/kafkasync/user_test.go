package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/testenv"
)

// runIn runs kafkasync with args and in as its standard input.
func runIn(t *testing.T, in io.Reader, args ...string) (string, string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	root := newRoot()
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(&out)
	root.SetErr(&errw)
	err := root.ExecuteContext(context.Background())
	return out.String(), errw.String(), err
}

// `kafkasync user` against the audit database: an account added with a password from stdin logs
// in with it, a key printed once authenticates as the account and is listed by its prefix only,
// revoking or disabling ends what they allowed, and every change names the system user who ran it.
func TestUserCommand(t *testing.T) {
	store := testenv.StartStore(t)
	ctx := context.Background()
	t.Setenv("KAFKASYNC_CONFIG", "")
	t.Setenv("KAFKASYNC_POSTGRES_DSN", store.Pool().Config().ConnString())
	const pw = "a long enough password"

	if out, errw, err := runIn(t, strings.NewReader(pw+"\n"), "user", "add", "alice", "--role", "operator", "--password-stdin"); err != nil ||
		out != "added alice (operator)\n" {
		t.Fatalf("add: %v %q %q", err, out, errw)
	}
	if a, err := store.CheckPassword(ctx, "alice", pw); err != nil || a.Role != audit.RoleOperator || a.CreatedBy != cliActor() {
		t.Fatalf("alice's password: %+v %v", a, err)
	}
	if _, _, err := runIn(t, strings.NewReader("short\n"), "user", "add", "bob", "--role", "viewer", "--password-stdin"); err == nil {
		t.Fatal("a 5-byte password was accepted")
	}
	if _, _, err := runIn(t, strings.NewReader(pw+"\n"), "user", "add", "carol", "--role", "root", "--password-stdin"); err == nil {
		t.Fatal("role root was accepted")
	}
	if _, _, err := runIn(t, strings.NewReader(pw+"\n"), "user", "add", "alice", "--role", "viewer", "--password-stdin"); !errors.Is(err, audit.ErrAccountExists) {
		t.Fatalf("alice added twice: %v", err)
	}
	if _, _, err := run(t, "user", "add", "deploy-bot", "--role", "viewer", "--no-password"); err != nil {
		t.Fatal(err)
	}

	keyOut, errw, err := run(t, "user", "key", "alice")
	key := strings.TrimSpace(keyOut)
	if err != nil || !strings.HasPrefix(key, audit.APIKeyPrefix) || !strings.Contains(errw, "not shown again") {
		t.Fatalf("key: %v %q %q", err, keyOut, errw)
	}
	if a, _, err := store.AccountByKey(ctx, key); err != nil || a.Name != "alice" {
		t.Fatalf("alice's key: %+v %v", a, err)
	}
	botKey, _, err := run(t, "user", "key", "deploy-bot")
	if err != nil {
		t.Fatal(err)
	}
	botKey = strings.TrimSpace(botKey)

	prefix := func(k string) string { return k[:len(audit.APIKeyPrefix)+8] }
	list, _, err := run(t, "user", "list")
	if err != nil || !strings.Contains(list, "alice") || !strings.Contains(list, "deploy-bot") || strings.Contains(list, key) ||
		!strings.Contains(list, prefix(key)+"…") {
		t.Fatalf("list: %v\n%s", err, list)
	}

	if _, _, err := run(t, "user", "revoke-key", prefix(botKey)+"…"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.AccountByKey(ctx, botKey); !errors.Is(err, audit.ErrNoAccount) {
		t.Fatalf("a revoked key still authenticates: %v", err)
	}
	if out, _, err := run(t, "user", "disable", "alice"); err != nil || out != "disabled alice\n" {
		t.Fatalf("disable: %v %q", err, out)
	}
	if _, _, err := store.AccountByKey(ctx, key); !errors.Is(err, audit.ErrNoAccount) {
		t.Fatalf("a disabled account's key still authenticates: %v", err)
	}
	if _, err := store.CheckPassword(ctx, "alice", pw); !errors.Is(err, audit.ErrNoAccount) {
		t.Fatalf("a disabled account still logs in: %v", err)
	}
	if a, err := store.Account(ctx, "alice"); err != nil || a.DisabledBy == nil || *a.DisabledBy != cliActor() {
		t.Fatalf("who disabled alice: %+v %v", a, err)
	}
}

// kafkasync dev makes the first admin once, with a random password kept in a 0600 file, and gives
// the same password at every later start.
func TestDevMakesTheFirstAdminOnce(t *testing.T) {
	store := testenv.StartStore(t)
	ctx := context.Background()
	cfg := config.Default()
	cfg.Postgres.DSN = config.Secret(store.Pool().Config().ConnString())
	file := filepath.Join(t.TempDir(), "dashboard.admin")
	pw, err := devAdmin(ctx, cfg, file)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := store.CheckPassword(ctx, "admin", pw); err != nil || a.Role != audit.RoleAdmin {
		t.Fatalf("the dev admin's password: %+v %v", a, err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v", fi, err)
	}
	if again, err := devAdmin(ctx, cfg, file); err != nil || again != pw {
		t.Fatalf("second start: %q %v, want the same password", again, err)
	}
}
