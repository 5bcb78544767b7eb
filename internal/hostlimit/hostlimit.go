// Package hostlimit bounds what all workers together do to one SFTP server: how many connections
// they hold open and how many jobs they download at once. The slots are PostgreSQL advisory locks,
// taken on one connection per worker: PostgreSQL frees them the moment a worker's connection ends,
// so a worker that crashes gives its slots back at once, with no lease to time out.
//
// A slot is lock (class, i) for i in 0..max-1, where class is a hash of the kind ("conn" or "job")
// and the server's address. A worker that loses its lock connection cannot know whether its slots
// survived, so every lease it holds reports Lost and the holder stops using the server.
package hostlimit

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Kinds of slot.
const (
	Conn = "conn"
	Job  = "job"
)

// Limits are the most slots of each kind on one server, across all workers; 0 means no limit.
type Limits struct {
	Connections int
	Jobs        int
}

// Limiter hands out the slots of one SFTP server. A nil *Limiter hands out nil leases: no limit.
type Limiter struct {
	dsn    string
	host   string
	limits Limits
	log    *slog.Logger

	mu    sync.Mutex
	conn  *pgx.Conn // nil until first used, and after it failed
	gen   int       // counts lock connections: a lease belongs to the one it was taken on
	held  map[slot]*Lease
	freed chan struct{} // closed (and replaced) when a slot of this worker is given back

	// turn lets one waiter per kind poll PostgreSQL; the others queue behind it in this process.
	turn      map[string]chan struct{}
	closed    bool
	closeOnce sync.Once

	stop chan struct{}
	done chan struct{}
}

type slot struct{ class, i int32 }

// Lease is one slot held. Release gives it back; Lost is closed if the slot may have been taken
// from this worker (its lock connection failed), after which the holder must stop using it.
type Lease struct {
	l    *Limiter
	s    slot
	gen  int
	lost chan struct{}
	once sync.Once
}

// queryTimeout bounds each statement on the lock connection. The caller's context is never used
// for them: pgx closes a connection whose query is cancelled, which would drop every slot.
const queryTimeout = 5 * time.Second

// New returns a limiter for the SFTP server host (its address), taking slots in the PostgreSQL
// database at dsn. It connects at first use and checks its connection every second while it holds
// slots. With no limit set it returns nil.
func New(dsn, host string, limits Limits, log *slog.Logger) *Limiter {
	if limits.Connections <= 0 && limits.Jobs <= 0 {
		return nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{dsn: dsn, host: host, limits: limits, log: log, held: map[slot]*Lease{},
		freed: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
		turn: map[string]chan struct{}{Conn: make(chan struct{}, 1), Job: make(chan struct{}, 1)}}
	go l.watch()
	return l
}

// Close releases every slot (by closing the lock connection) and stops the limiter. Later calls
// do nothing; a closed limiter hands out no slot.
func (l *Limiter) Close() {
	if l == nil {
		return
	}
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.done
		l.mu.Lock()
		defer l.mu.Unlock()
		l.closed = true
		l.dropLocked(nil)
	})
}

// Acquire waits for a slot of kind and returns it, or returns the context's error. While
// PostgreSQL cannot be reached it keeps waiting: no slot can be proven free.
func (l *Limiter) Acquire(ctx context.Context, kind string) (*Lease, error) {
	if l == nil || l.max(kind) <= 0 {
		return nil, nil
	}
	// Waiters take turns, so a worker with a hundred queued transfers still polls as one.
	select {
	case l.turn[kind] <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-l.turn[kind] }()
	logged := false
	for {
		l.mu.Lock()
		freed := l.freed
		lease, err := l.tryLocked(kind, 0)
		l.mu.Unlock()
		if lease != nil {
			return lease, nil
		}
		if err != nil && !logged {
			l.log.Warn("host limit: cannot take a slot, waiting", "host", l.host, "kind", kind, "err", err)
			logged = true
		}
		// Slots freed by this worker wake the waiters at once; those freed elsewhere are seen at
		// the next poll. The jitter keeps the workers' polls apart.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-freed:
		case <-time.After(100*time.Millisecond + rand.N(200*time.Millisecond)):
		}
	}
}

// TryAcquire returns a slot of kind if one is free now, else nil. With no limit on kind it returns
// a nil lease and true.
func (l *Limiter) TryAcquire(kind string) (*Lease, bool) {
	return l.try(kind, 0)
}

// TryAcquireSpare is TryAcquire that leaves a reserve free: an eighth of the slots, at least one.
// A download takes its extra connections this way, so a new job's Stat and first connection
// find a slot even while running downloads would take them all.
func (l *Limiter) TryAcquireSpare(kind string) (*Lease, bool) {
	if l == nil {
		return nil, true
	}
	return l.try(kind, max(1, l.max(kind)/8))
}

func (l *Limiter) try(kind string, reserve int) (*Lease, bool) {
	if l == nil || l.max(kind) <= 0 {
		return nil, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lease, _ := l.tryLocked(kind, reserve)
	return lease, lease != nil
}

// Held returns how many slots of kind this worker holds.
func (l *Limiter) Held(kind string) int {
	if l == nil {
		return 0
	}
	class := l.class(kind)
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for s := range l.held {
		if s.class == class {
			n++
		}
	}
	return n
}

func (l *Limiter) max(kind string) int {
	if kind == Job {
		return l.limits.Jobs
	}
	return l.limits.Connections
}

// class is the first lock key of kind's slots on this server.
func (l *Limiter) class(kind string) int32 {
	h := fnv.New32a()
	fmt.Fprintf(h, "kafkasync/%s/%s", kind, l.host)
	return int32(h.Sum32())
}

// tryLocked takes a free slot of kind, from a random one on; with reserve > 0 only while more than
// reserve slots are free. It reads which slots are taken (pg_locks) and tries the others, one
// pg_try_advisory_lock each, so a busy server costs two statements rather than one per slot. The
// slots this worker holds count as taken: advisory locks stack within a session, so taking one
// twice would count one slot for two users.
func (l *Limiter) tryLocked(kind string, reserve int) (*Lease, error) {
	if l.closed {
		return nil, errors.New("host limit: closed")
	}
	if l.conn == nil {
		if err := l.connectLocked(); err != nil {
			return nil, err
		}
	}
	n := l.max(kind)
	class := l.class(kind)
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	taken := map[int32]bool{}
	for s := range l.held {
		if s.class == class {
			taken[s.i] = true
		}
	}
	rows, err := l.conn.Query(ctx, `SELECT objid::bigint FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid::bigint = $1`, int64(uint32(class)))
	if err == nil {
		for rows.Next() {
			var i int64
			if err = rows.Scan(&i); err != nil {
				break
			}
			taken[int32(i)] = true
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		l.dropLocked(err)
		return nil, err
	}
	if n-len(taken) <= reserve {
		return nil, nil
	}
	first := rand.N(n)
	for k := range n {
		s := slot{class, int32((first + k) % n)}
		if taken[s.i] {
			continue
		}
		var ok bool
		if err := l.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1::int4, $2::int4)", s.class, s.i).Scan(&ok); err != nil {
			l.dropLocked(err)
			return nil, err
		}
		if ok {
			lease := &Lease{l: l, s: s, gen: l.gen, lost: make(chan struct{})}
			l.held[s] = lease
			return lease, nil
		}
	}
	return nil, nil // taken meanwhile by other workers
}

// connectLocked opens the limiter's lock connection.
func (l *Limiter) connectLocked() error {
	c, err := ConnectForLocks(l.dsn, l.log)
	if err != nil {
		return err
	}
	l.conn = c
	l.gen++
	return nil
}

// ConnectForLocks opens a connection to hold advisory locks on, and asks PostgreSQL to notice a
// dead client host within about half a minute (TCP keepalives and a user timeout): locks of a
// process that dies go at once, but those of a machine that vanishes go only when its connection
// is found dead. It is bounded by queryTimeout, never by a caller's context.
func ConnectForLocks(dsn string, log *slog.Logger) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("lock connection: %w", err)
	}
	if _, err := c.Exec(ctx, `SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5;
		SET tcp_keepalives_count = 3; SET tcp_user_timeout = 30000`); err != nil {
		log.Warn("cannot shorten the lock connection's keepalives", "err", err)
	}
	return c, nil
}

// dropLocked closes the lock connection after a failure (cause) or at Close (nil): PostgreSQL
// frees its locks, and every lease taken on it is lost.
func (l *Limiter) dropLocked(cause error) {
	if l.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = l.conn.Close(ctx)
	cancel()
	l.conn = nil
	if cause != nil && len(l.held) > 0 {
		l.log.Warn("host limit: lock connection lost; the transfers holding its slots stop", "host", l.host,
			"slots", len(l.held), "err", cause)
	}
	for s, lease := range l.held {
		close(lease.lost)
		delete(l.held, s)
	}
	l.wake()
}

func (l *Limiter) wake() {
	close(l.freed)
	l.freed = make(chan struct{})
}

// watch checks the lock connection every second while slots are held, so a lost connection is
// noticed (and its leases stopped) before another worker can take the freed slots for long.
func (l *Limiter) watch() {
	defer close(l.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		if l.conn != nil && len(l.held) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
			if err := l.conn.Ping(ctx); err != nil {
				l.dropLocked(err)
			}
			cancel()
		}
		l.mu.Unlock()
	}
}

// Release gives the slot back. It is safe to call more than once, and on a nil lease.
func (s *Lease) Release() {
	if s == nil {
		return
	}
	s.once.Do(func() {
		l := s.l
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.held[s.s] != s || s.gen != l.gen || l.conn == nil {
			return // lost with its connection: already free
		}
		delete(l.held, s.s)
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		var ok bool
		if err := l.conn.QueryRow(ctx, "SELECT pg_advisory_unlock($1::int4, $2::int4)", s.s.class, s.s.i).Scan(&ok); err != nil || !ok {
			// Not sure the lock is gone: dropping the connection makes sure.
			l.dropLocked(errors.Join(errors.New("unlock failed"), err))
		}
		l.wake()
	})
}

// Lost is closed when the slot may no longer be this worker's. A nil lease is never lost.
func (s *Lease) Lost() <-chan struct{} {
	if s == nil {
		return nil
	}
	return s.lost
}

// ErrLost is the cause a transfer stops with when its slot was lost.
var ErrLost = errors.New("host limit slot lost with the lock connection")
