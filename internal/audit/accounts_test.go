package audit_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/audit"
)

func TestAccountsAndKeys(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	a, err := s.AddAccount(ctx, "alice", audit.RoleOperator, "correct horse battery", "cli:root")
	if err != nil || a.Role != audit.RoleOperator || !a.HasPass || a.CreatedBy != "cli:root" {
		t.Fatalf("add: %+v %v", a, err)
	}
	if _, err := s.AddAccount(ctx, "alice", audit.RoleAdmin, "", "cli:root"); !errors.Is(err, audit.ErrAccountExists) {
		t.Fatalf("second alice: %v", err)
	}
	for name, tc := range map[string][3]string{
		"bad name": {"Alice", audit.RoleViewer, ""}, "bad role": {"bob", "root", ""}, "short password": {"bob", audit.RoleViewer, "short"},
	} {
		var bad *audit.InvalidError
		if _, err := s.AddAccount(ctx, tc[0], tc[1], tc[2], "t"); !errors.As(err, &bad) {
			t.Errorf("%s: %v, want an InvalidError", name, err)
		}
	}
	if got, err := s.CheckPassword(ctx, "alice", "correct horse battery"); err != nil || got.Name != "alice" {
		t.Fatalf("right password: %+v %v", got, err)
	}
	for _, pw := range []string{"wrong horse battery", ""} {
		if _, err := s.CheckPassword(ctx, "alice", pw); !errors.Is(err, audit.ErrNoAccount) {
			t.Fatalf("password %q: %v", pw, err)
		}
	}
	if _, err := s.CheckPassword(ctx, "nobody", "correct horse battery"); !errors.Is(err, audit.ErrNoAccount) {
		t.Fatalf("unknown account: %v", err)
	}

	key, k, err := s.AddAPIKey(ctx, "alice", "account:alice")
	if err != nil || !strings.HasPrefix(key, audit.APIKeyPrefix) || !strings.HasPrefix(key, k.Prefix) || k.Account != "alice" {
		t.Fatalf("key %q %+v %v", key, k, err)
	}
	if got, gk, err := s.AccountByKey(ctx, key); err != nil || got.Name != "alice" || gk.LastUsed == nil || gk.Actor() != "key:"+k.Prefix+"@alice" {
		t.Fatalf("by key: %+v %+v %v", got, gk, err)
	}
	for _, bad := range []string{"", key[:len(key)-1], key + "x", strings.Replace(key, "ks_", "kx_", 1)} {
		if _, _, err := s.AccountByKey(ctx, bad); !errors.Is(err, audit.ErrNoAccount) {
			t.Fatalf("key %q: %v", bad, err)
		}
	}
	key2, k2, _ := s.AddAPIKey(ctx, "alice", "account:alice")
	if rk, err := s.RevokeAPIKey(ctx, k2.Prefix, "account:admin"); err != nil || rk.RevokedAt == nil || rk.RevokedBy == nil || *rk.RevokedBy != "account:admin" {
		t.Fatalf("revoke: %+v %v", rk, err)
	}
	if _, err := s.RevokeAPIKey(ctx, k2.Prefix, "account:admin"); !errors.Is(err, audit.ErrNoAccount) {
		t.Fatalf("revoking twice: %v", err)
	}
	if _, _, err := s.AccountByKey(ctx, key2); !errors.Is(err, audit.ErrNoAccount) {
		t.Fatalf("revoked key still works: %v", err)
	}
	if ks, _ := s.APIKeys(ctx, "alice"); len(ks) != 2 || ks[1].RevokedAt == nil {
		t.Fatalf("keys %+v", ks)
	}

	if _, _, err := s.CreateSession(ctx, "account:alice", "127.0.0.1", time.Hour); err != nil {
		t.Fatal(err)
	}
	if as, err := s.Accounts(ctx); err != nil || len(as) != 1 || as[0].LastLogin == nil || time.Since(*as[0].LastLogin) > time.Minute {
		t.Fatalf("accounts with their last login: %+v %v", as, err)
	}
	if err := s.DisableAccount(ctx, "alice", "account:admin"); err != nil {
		t.Fatal(err)
	}
	if a, err := s.Account(ctx, "alice"); err != nil || a.DisabledAt == nil || a.DisabledBy == nil || *a.DisabledBy != "account:admin" {
		t.Fatalf("disabled account: %+v %v", a, err)
	}
	if ks, _ := s.APIKeys(ctx, "alice"); ks[0].RevokedBy == nil || *ks[0].RevokedBy != "account:admin" {
		t.Fatalf("keys of a disabled account: %+v", ks)
	}
	if _, err := s.CheckPassword(ctx, "alice", "correct horse battery"); !errors.Is(err, audit.ErrNoAccount) {
		t.Fatalf("a disabled account logs in: %v", err)
	}
	if _, _, err := s.AccountByKey(ctx, key); !errors.Is(err, audit.ErrNoAccount) {
		t.Fatalf("a disabled account's key works: %v", err)
	}
	if _, _, err := s.AddAPIKey(ctx, "alice", "x"); !errors.Is(err, audit.ErrNoAccount) {
		t.Fatalf("a key for a disabled account: %v", err)
	}
	if !audit.RoleAllows(audit.RoleAdmin, audit.RoleOperator) || audit.RoleAllows(audit.RoleViewer, audit.RoleOperator) || audit.RoleAllows("", audit.RoleViewer) {
		t.Fatal("RoleAllows")
	}
}
