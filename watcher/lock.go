package watcher

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kafkasync/kafkasync/internal/hostlimit"
)

// queryTimeout bounds each statement on a lock connection. The round's context is never used for
// them: pgx closes a connection whose query is cancelled, which would drop the lock.
const queryTimeout = 5 * time.Second

// sourceLock is the advisory lock of one source, held on a connection of its own for one round.
// PostgreSQL frees it when that connection ends, so a watcher that dies frees its sources at once.
type sourceLock struct{ conn *pgx.Conn }

// lockKeys are the two keys of a source's advisory lock: a class for the watcher (hostlimit's
// slots hash other names into theirs) and a hash of the source's name.
func lockKeys(source string) (int32, int32) {
	hash := func(s string) int32 {
		h := fnv.New32a()
		h.Write([]byte(s))
		return int32(h.Sum32())
	}
	return hash("kafkasync/watch"), hash(source)
}

// lockSource takes the source's lock, or returns nil when another watcher holds it.
func lockSource(dsn, source string, log *slog.Logger) (*sourceLock, error) {
	c, err := hostlimit.ConnectForLocks(dsn, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	class, key := lockKeys(source)
	var ok bool
	if err := c.QueryRow(ctx, "SELECT pg_try_advisory_lock($1::int4, $2::int4)", class, key).Scan(&ok); err != nil || !ok {
		c.Close(ctx)
		if err != nil {
			return nil, fmt.Errorf("take the source's lock: %w", err)
		}
		return nil, nil
	}
	return &sourceLock{conn: c}, nil
}

// held checks the lock connection still answers, before files are announced under it.
func (l *sourceLock) held() error {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	if err := l.conn.Ping(ctx); err != nil {
		return fmt.Errorf("the source's lock connection failed, another watcher may list it now: %w", err)
	}
	return nil
}

// release frees the lock by ending its connection.
func (l *sourceLock) release() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.conn.Close(ctx)
}
