package audit_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/testenv"
)

// open starts a real PostgreSQL and a migrated store on it.
func open(t *testing.T) *audit.Store {
	t.Helper()
	return testenv.StartStore(t)
}

func TestSessions(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	token, sess, err := s.CreateSession(ctx, "api-key:0123abcd", "192.0.2.7", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	sum := sha256.Sum256(raw)
	if err != nil || len(raw) != 32 || sess.IDHash != hex.EncodeToString(sum[:]) {
		t.Fatalf("token %q, id %s: the id must be the SHA-256 of the token's 32 bytes", token, sess.IDHash)
	}
	if sess.Actor() != "session:"+sess.IDHash[:8] || sess.Who != "api-key:0123abcd" || sess.RemoteAddr != "192.0.2.7" {
		t.Fatalf("session %+v", sess)
	}
	got, err := s.SessionByToken(ctx, token)
	if err != nil || got.IDHash != sess.IDHash || time.Until(got.ExpiresAt) < 59*time.Minute {
		t.Fatalf("session by token: %+v %v", got, err)
	}
	for _, bad := range []string{"", "x", sess.IDHash, token[:42], token + "A"} {
		if _, err := s.SessionByToken(ctx, bad); !errors.Is(err, audit.ErrNoSession) {
			t.Errorf("token %q: %v, want ErrNoSession", bad, err)
		}
	}
	if err := s.RevokeSession(ctx, token); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SessionByToken(ctx, token); !errors.Is(err, audit.ErrNoSession) {
		t.Fatalf("revoked session: %v, want ErrNoSession", err)
	}
	if err := s.RevokeSession(ctx, token); !errors.Is(err, audit.ErrNoSession) {
		t.Fatalf("revoking twice: %v, want ErrNoSession", err)
	}

	expired, _, err := s.CreateSession(ctx, "api-key:0123abcd", "192.0.2.7", -time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SessionByToken(ctx, expired); !errors.Is(err, audit.ErrNoSession) {
		t.Fatalf("expired session: %v, want ErrNoSession", err)
	}
}

func TestSessionsPrunedLongAfterExpiry(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	old, oldSess, _ := s.CreateSession(ctx, "api-key:0123abcd", "192.0.2.7", time.Hour)
	recent, recentSess, _ := s.CreateSession(ctx, "api-key:0123abcd", "192.0.2.7", time.Hour)
	_, err := s.Pool().Exec(ctx, `UPDATE sessions SET expires_at = now() - CASE id_sha256 WHEN $1 THEN interval '91 days' ELSE interval '89 days' END
		WHERE id_sha256 IN ($1, $2)`, oldSess.IDHash, recentSess.IDHash)
	if err != nil || old == recent {
		t.Fatal(err)
	}
	if _, _, err := s.CreateSession(ctx, "api-key:0123abcd", "192.0.2.8", time.Hour); err != nil {
		t.Fatal(err)
	}
	var ids []string
	rows, _ := s.Pool().Query(ctx, `SELECT id_sha256 FROM sessions WHERE id_sha256 IN ($1, $2)`, oldSess.IDHash, recentSess.IDHash)
	for rows.Next() {
		var id string
		rows.Scan(&id)
		ids = append(ids, id)
	}
	if rows.Err() != nil || len(ids) != 1 || ids[0] != recentSess.IDHash {
		t.Fatalf("left after a login: %v (%v), want only the session expired 89 days ago", ids, rows.Err())
	}
}
