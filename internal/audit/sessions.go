package audit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	qCreateSession = query("create_session")
	qGetSession    = query("get_session")
	qRevokeSession = query("revoke_session")
)

// ErrNoSession is returned for a session token that is malformed, unknown, expired or revoked.
var ErrNoSession = errors.New("no such session: unknown, expired or revoked")

// sessionTokenBytes is the entropy of a session token.
const sessionTokenBytes = 32

// maxRemoteAddr bounds what a login records of its address.
const maxRemoteAddr = 128

// Session is one row of table sessions: a dashboard login. The token that opens it is never
// stored, only its SHA-256.
type Session struct {
	IDHash     string     `json:"id_sha256"`
	Who        string     `json:"who"`
	RemoteAddr string     `json:"remote_addr"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

// Actor names the session in what it does (dead_letters.acted_by, logs): "session:" and the first
// 8 hex digits of its id hash, enough to find the row, who logged in and from where.
func (s Session) Actor() string { return "session:" + s.IDHash[:8] }

// newToken returns a random token (32 bytes, base64url) and its stored id.
func newToken() (token, id string) {
	raw := make([]byte, sessionTokenBytes)
	rand.Read(raw) // never fails: crypto/rand aborts the program rather than return short
	token = base64.RawURLEncoding.EncodeToString(raw)
	id, _ = sessionID(token)
	return token, id
}

// sessionID returns the stored id of a token: the hex SHA-256 of its 32 bytes. API keys use it
// too, after their prefix.
func sessionID(token string) (string, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != sessionTokenBytes {
		return "", false
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), true
}

// CreateSession opens a session for who (the credential that logged in), from remoteAddr, valid for
// ttl. It returns the token for the cookie; only its hash is kept. Logins also prune rows that
// expired more than 90 days ago.
func (s *Store) CreateSession(ctx context.Context, who, remoteAddr string, ttl time.Duration) (string, Session, error) {
	token, id := newToken()
	if len(remoteAddr) > maxRemoteAddr {
		remoteAddr = remoteAddr[:maxRemoteAddr]
	}
	rows, err := s.pool.Query(ctx, qCreateSession, pgx.NamedArgs{
		"id_sha256": id, "who": who, "remote_addr": remoteAddr, "ttl_seconds": ttl.Seconds(),
	})
	if err != nil {
		return "", Session{}, fmt.Errorf("create session: %w", err)
	}
	sess, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[Session])
	if err != nil {
		return "", Session{}, fmt.Errorf("create session: %w", err)
	}
	return token, sess, nil
}

// SessionByToken returns the session a token opens, or ErrNoSession when it is malformed (checked
// before any query), unknown, expired or revoked.
func (s *Store) SessionByToken(ctx context.Context, token string) (Session, error) {
	id, ok := sessionID(token)
	if !ok {
		return Session{}, ErrNoSession
	}
	rows, err := s.pool.Query(ctx, qGetSession, pgx.NamedArgs{"id_sha256": id})
	if err != nil {
		return Session{}, fmt.Errorf("get session: %w", err)
	}
	sess, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[Session])
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, ErrNoSession
	}
	if err != nil {
		return Session{}, fmt.Errorf("get session: %w", err)
	}
	return sess, nil
}

// RevokeSession ends the session a token opens, at once and for good. ErrNoSession: there was no
// such session, or it was already revoked.
func (s *Store) RevokeSession(ctx context.Context, token string) error {
	id, ok := sessionID(token)
	if !ok {
		return ErrNoSession
	}
	tag, err := s.pool.Exec(ctx, qRevokeSession, pgx.NamedArgs{"id_sha256": id})
	if err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNoSession
	}
	return nil
}
