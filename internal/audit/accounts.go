package audit

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/crypto/bcrypt"
)

// Roles, each allowed what the one before it is and more: a viewer reads pages and the API, an
// operator also submits, replays and discards, an admin also deletes objects and manages accounts
// and keys.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

// RoleAllows says whether role may do what needs at least role need.
func RoleAllows(role, need string) bool {
	return roleRank[role] >= roleRank[need] && roleRank[need] > 0
}

var roleRank = map[string]int{RoleViewer: 1, RoleOperator: 2, RoleAdmin: 3}

// ErrNoAccount: unknown, disabled, or the password or key is wrong; callers are told no more.
var ErrNoAccount = errors.New("no such account, or wrong credentials")

// ErrAccountExists is returned when adding an account under a name already taken.
var ErrAccountExists = errors.New("an account of that name exists")

// InvalidError is a name, role or password the store refuses; its message says what is wanted, for
// the command line and the dashboard alike.
type InvalidError struct{ msg string }

func (e *InvalidError) Error() string { return e.msg }

func invalid(format string, args ...any) error {
	return &InvalidError{msg: fmt.Sprintf(format, args...)}
}

var accountName = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{0,63}$`)

// APIKeyPrefix starts every account key, so a key is told from the old shared ui.api_key at a glance.
const APIKeyPrefix = "ks_"

// Passwords: bcrypt's limit is 72 bytes; shorter than 12 characters is refused.
const (
	minPassword = 12
	maxPassword = 72
)

// Account is one row of table accounts.
type Account struct {
	Name       string     `json:"name"`
	Role       string     `json:"role"`
	HasPass    bool       `json:"has_password"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by"`
	DisabledAt *time.Time `json:"disabled_at"`
	DisabledBy *string    `json:"disabled_by"`
	// LastLogin is when its latest session opened, while table sessions keeps that row (90 days
	// past its expiry); only Accounts fills it in.
	LastLogin *time.Time `json:"last_login" db:"-"`
}

// Actor names the account in what it does (audit rows, logs).
func (a Account) Actor() string { return "account:" + a.Name }

// AddAccount creates an account; password may be empty (keys only). by is who added it.
func (s *Store) AddAccount(ctx context.Context, name, role, password, by string) (Account, error) {
	if !accountName.MatchString(name) {
		return Account{}, invalid("account name %q: lower-case letters, digits and . _ @ -, at most 64", name)
	}
	if roleRank[role] == 0 {
		return Account{}, invalid("role %q is not viewer, operator or admin", role)
	}
	var hash *string
	if password != "" {
		if len(password) < minPassword || len(password) > maxPassword {
			return Account{}, invalid("password: %d to %d bytes", minPassword, maxPassword)
		}
		h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
		if err != nil {
			return Account{}, err
		}
		hs := string(h)
		hash = &hs
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO accounts (name, role, password_hash, created_by) VALUES ($1, $2, $3, $4)`, name, role, hash, by)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return Account{}, ErrAccountExists
	}
	if err != nil {
		return Account{}, fmt.Errorf("add account %s: %w", name, err)
	}
	return s.Account(ctx, name)
}

const accountColumns = `name, role, password_hash IS NOT NULL, created_at, created_by, disabled_at, disabled_by`

// Account returns one account, disabled or not, or ErrNoAccount.
func (s *Store) Account(ctx context.Context, name string) (Account, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+accountColumns+` FROM accounts WHERE name = $1`, name)
	if err != nil {
		return Account{}, fmt.Errorf("get account: %w", err)
	}
	a, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[Account])
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, ErrNoAccount
	}
	return a, err
}

// Accounts lists every account by name, with its last login.
func (s *Store) Accounts(ctx context.Context) ([]Account, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+accountColumns+` FROM accounts ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	accts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Account])
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	last, err := s.lastLogins(ctx)
	if err != nil {
		return nil, err
	}
	for i := range accts {
		if at, ok := last[accts[i].Name]; ok {
			accts[i].LastLogin = &at
		}
	}
	return accts, nil
}

// lastLogins reads when each account last opened a session. It is a query of its own, not a column
// of accountColumns, so the account lookup of every logged-in request stays one primary-key read.
func (s *Store) lastLogins(ctx context.Context) (map[string]time.Time, error) {
	rows, err := s.pool.Query(ctx, `SELECT substr(who, 9), max(created_at) FROM sessions WHERE who LIKE 'account:%' GROUP BY who`)
	if err != nil {
		return nil, fmt.Errorf("last logins: %w", err)
	}
	last := map[string]time.Time{}
	var name string
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&name, &at}, func() error { last[name] = at; return nil })
	if err != nil {
		return nil, fmt.Errorf("last logins: %w", err)
	}
	return last, nil
}

// DisableAccount disables an account and revokes its keys; its sessions end at their next request.
func (s *Store) DisableAccount(ctx context.Context, name, by string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE accounts SET disabled_at = now(), disabled_by = $2 WHERE name = $1 AND disabled_at IS NULL`, name, by)
		if err != nil {
			return fmt.Errorf("disable account %s: %w", name, err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNoAccount
		}
		_, err = tx.Exec(ctx, `UPDATE api_keys SET revoked_at = now(), revoked_by = $2 WHERE account = $1 AND revoked_at IS NULL`, name, by)
		return err
	})
}

// CheckPassword returns the enabled account whose password this is, or ErrNoAccount.
func (s *Store) CheckPassword(ctx context.Context, name, password string) (Account, error) {
	var hash *string
	err := s.pool.QueryRow(ctx, `SELECT password_hash FROM accounts WHERE name = $1 AND disabled_at IS NULL`, name).Scan(&hash)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && hash == nil {
		// The same work as a real check, so a name's existence does not show in the time taken.
		bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return Account{}, ErrNoAccount
	}
	if err != nil {
		return Account{}, fmt.Errorf("check password: %w", err)
	}
	if bcrypt.CompareHashAndPassword([]byte(*hash), []byte(password)) != nil {
		return Account{}, ErrNoAccount
	}
	return s.Account(ctx, name)
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("kafkasync-no-such-account"), bcrypt.DefaultCost)

// APIKey is one row of table api_keys; the key itself is never stored.
type APIKey struct {
	Prefix    string     `json:"prefix"`
	Account   string     `json:"account"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	RevokedAt *time.Time `json:"revoked_at"`
	RevokedBy *string    `json:"revoked_by"`
	LastUsed  *time.Time `json:"last_used"`
}

const keyColumns = `prefix, account, created_at, created_by, revoked_at, revoked_by, last_used`

// Actor names a key in what it does: "key:" its prefix, "@" its account.
func (k APIKey) Actor() string { return "key:" + k.Prefix + "@" + k.Account }

func keyID(key string) (string, bool) {
	token, ok := strings.CutPrefix(key, APIKeyPrefix)
	if !ok {
		return "", false
	}
	return sessionID(token)
}

// AddAPIKey makes a new key for an enabled account and returns it: the only time it is shown.
func (s *Store) AddAPIKey(ctx context.Context, account, by string) (string, APIKey, error) {
	token, id := newToken()
	key := APIKeyPrefix + token
	rows, err := s.pool.Query(ctx, `INSERT INTO api_keys (id_sha256, prefix, account, created_by)
		SELECT $1, $2, name, $3 FROM accounts WHERE name = $4 AND disabled_at IS NULL
		RETURNING `+keyColumns, id, key[:len(APIKeyPrefix)+8], by, account)
	if err != nil {
		return "", APIKey{}, fmt.Errorf("add key for %s: %w", account, err)
	}
	k, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[APIKey])
	if errors.Is(err, pgx.ErrNoRows) {
		return "", APIKey{}, ErrNoAccount
	}
	return key, k, err
}

// AccountByKey returns the enabled account a live key belongs to, and the key; ErrNoAccount when
// the key is malformed (checked before any query), unknown, revoked or its account disabled.
func (s *Store) AccountByKey(ctx context.Context, key string) (Account, APIKey, error) {
	id, ok := keyID(key)
	if !ok {
		return Account{}, APIKey{}, ErrNoAccount
	}
	// One round trip per API request: the key's use is noted and its account read together.
	var k APIKey
	var a Account
	err := s.pool.QueryRow(ctx, `UPDATE api_keys k SET last_used = now() FROM accounts a
		WHERE k.id_sha256 = $1 AND k.revoked_at IS NULL AND a.name = k.account AND a.disabled_at IS NULL
		RETURNING k.prefix, k.account, k.created_at, k.created_by, k.revoked_at, k.revoked_by, k.last_used,
		          a.name, a.role, a.password_hash IS NOT NULL, a.created_at, a.created_by, a.disabled_at, a.disabled_by`, id).
		Scan(&k.Prefix, &k.Account, &k.CreatedAt, &k.CreatedBy, &k.RevokedAt, &k.RevokedBy, &k.LastUsed,
			&a.Name, &a.Role, &a.HasPass, &a.CreatedAt, &a.CreatedBy, &a.DisabledAt, &a.DisabledBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, APIKey{}, ErrNoAccount
	}
	if err != nil {
		return Account{}, APIKey{}, fmt.Errorf("look up key: %w", err)
	}
	return a, k, nil
}

// APIKeys lists an account's keys ("" lists every account's).
func (s *Store) APIKeys(ctx context.Context, account string) ([]APIKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyColumns+` FROM api_keys
		WHERE $1 = '' OR account = $1 ORDER BY account, created_at`, account)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[APIKey])
}

// RevokeAPIKey revokes the key with this prefix and returns it; ErrNoAccount when no live key has it.
func (s *Store) RevokeAPIKey(ctx context.Context, prefix, by string) (APIKey, error) {
	rows, err := s.pool.Query(ctx, `UPDATE api_keys SET revoked_at = now(), revoked_by = $2 WHERE prefix = $1 AND revoked_at IS NULL
		RETURNING `+keyColumns, prefix, by)
	if err != nil {
		return APIKey{}, fmt.Errorf("revoke key %s: %w", prefix, err)
	}
	k, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[APIKey])
	if errors.Is(err, pgx.ErrNoRows) {
		return APIKey{}, ErrNoAccount
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("revoke key %s: %w", prefix, err)
	}
	return k, nil
}
