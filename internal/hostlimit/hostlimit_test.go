package hostlimit_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/hostlimit"
)

func startPG(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kafkasync-hostlimit-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log, _ := os.Create(filepath.Join(dir, "pg.log"))
	t.Cleanup(func() { log.Close() })
	pg, err := devstack.StartPostgres(ctx, filepath.Join(dir, "pg"), 0, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Stop)
	return pg.DSN
}

// Three workers share four connection slots and two job slots: concurrent holders never exceed
// the limit, a slot given back is taken by a waiter, and a worker whose lock connection dies loses
// its leases while its slots go to the others.
func TestLimitsHoldAcrossWorkers(t *testing.T) {
	dsn := startPG(t)
	ctx := context.Background()
	var ls []*hostlimit.Limiter
	for range 3 {
		l := hostlimit.New(dsn, "sftp.example:22", hostlimit.Limits{Connections: 4, Jobs: 2}, slog.New(slog.NewTextHandler(os.Stderr, nil)))
		t.Cleanup(l.Close)
		ls = append(ls, l)
	}
	if l := hostlimit.New(dsn, "x:22", hostlimit.Limits{}, nil); l != nil {
		t.Fatal("no limits: want a nil limiter")
	}

	// 24 users over 3 workers, each holding a connection slot for a moment.
	var cur, peak atomic.Int32
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			lease, err := ls[i%3].Acquire(ctx, hostlimit.Conn)
			if err != nil || lease == nil {
				t.Errorf("acquire: %v %v", lease, err)
				return
			}
			n := cur.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(20 * time.Millisecond)
			cur.Add(-1)
			lease.Release()
		})
	}
	wg.Wait()
	t.Logf("24 holders over 3 workers: at most %d at once (limit 4)", peak.Load())
	if peak.Load() > 4 || peak.Load() < 2 {
		t.Fatalf("peak %d holders, limit 4", peak.Load())
	}

	// Jobs: two slots. Worker 0 takes one twice (no stacking), worker 1 finds none.
	a, ok := ls[0].TryAcquire(hostlimit.Job)
	b, ok2 := ls[0].TryAcquire(hostlimit.Job)
	if !ok || !ok2 || a == nil || b == nil {
		t.Fatalf("worker 0 should get both job slots: %v %v", ok, ok2)
	}
	if _, ok := ls[1].TryAcquire(hostlimit.Job); ok {
		t.Fatal("a third job slot was handed out")
	}
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var locks int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted`).Scan(&locks); err != nil || locks != 2 {
		rows, _ := admin.Query(ctx, `SELECT pid, classid::bigint, objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted`)
		for rows.Next() {
			var a, b, c int64
			rows.Scan(&a, &b, &c)
			t.Log(a, b, c)
		}
		t.Fatalf("%d advisory locks held (%v), want exactly the 2 job slots", locks, err)
	}
	if _, ok := ls[0].TryAcquire(hostlimit.Job); ok {
		t.Fatal("worker 0 took a slot it already holds")
	}
	got := make(chan *hostlimit.Lease)
	go func() {
		l, err := ls[1].Acquire(ctx, hostlimit.Job)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	time.Sleep(300 * time.Millisecond)
	a.Release()
	a.Release() // twice is harmless
	var c *hostlimit.Lease
	select {
	case c = <-got:
	case <-time.After(3 * time.Second):
		t.Fatal("the freed job slot did not reach the waiting worker")
	}

	// Kill one worker's lock connection: its lease is lost, and worker 2 can take the slot.
	var killed bool
	if err := admin.QueryRow(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND granted LIMIT 1`).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate a lock connection: %v %v", killed, err)
	}
	lost := time.Now()
	select {
	case <-b.Lost():
		t.Logf("lease lost %s after its connection was terminated", time.Since(lost).Round(time.Millisecond))
	case <-c.Lost():
		// It was worker 1's connection (each holds one slot): the same check.
		c, b = b, c
		t.Logf("lease lost %s after its connection was terminated", time.Since(lost).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("the lease was not reported lost")
	}
	select {
	case <-c.Lost():
		t.Fatal("the other worker's lease was lost too")
	default:
	}
	d, ok := ls[2].TryAcquire(hostlimit.Job)
	if !ok {
		t.Fatal("the lost slot was not free for another worker")
	}
	if ls[2].Held(hostlimit.Job) != 1 {
		t.Fatalf("worker 2 holds %d job slots", ls[2].Held(hostlimit.Job))
	}
	d.Release()
	c.Release()
	b.Release() // lost: a no-op

	// Spare slots: of 4 connection slots, TryAcquireSpare leaves one free; TryAcquire takes it.
	var spare []*hostlimit.Lease
	for {
		l, ok := ls[0].TryAcquireSpare(hostlimit.Conn)
		if !ok {
			break
		}
		spare = append(spare, l)
	}
	last, ok := ls[1].TryAcquire(hostlimit.Conn)
	if len(spare) != 3 || !ok {
		t.Fatalf("took %d spare slots (want 3), then the reserve: %v", len(spare), ok)
	}
	if _, ok := ls[2].TryAcquire(hostlimit.Conn); ok {
		t.Fatal("a fifth connection slot was handed out")
	}
	last.Release()
	for _, l := range spare {
		l.Release()
	}
	ls[2].Close()
	if _, ok := ls[2].TryAcquire(hostlimit.Conn); ok {
		t.Fatal("a closed limiter handed out a slot")
	}
}
