package sftpdial_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/sftpdial"
)

func server(t *testing.T) (*devstack.SFTP, *sftpdial.Dialer) {
	t.Helper()
	dir := t.TempDir()
	srv, err := devstack.StartSFTP(devstack.SFTPOptions{Dir: filepath.Join(dir, "keys"), Root: filepath.Join(dir, "root")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	if err := os.WriteFile(filepath.Join(srv.Root, "f"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := sftpdial.New(config.Source{Addr: srv.Addr, User: srv.User, KeyFile: srv.KeyFile, KnownHosts: srv.KnownHosts,
		DialTimeout: config.Duration(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	return srv, d
}

// slots is a connection limit of n slots that counts what it hands out.
type slots struct {
	mu              sync.Mutex
	n, held, peak   int
	taken, returned atomic.Int64
}

func (s *slots) fn(ctx context.Context, wait bool) (func(), <-chan struct{}, error) {
	for {
		s.mu.Lock()
		if s.held < s.n {
			s.held++
			s.peak = max(s.peak, s.held)
			s.mu.Unlock()
			s.taken.Add(1)
			return func() { s.mu.Lock(); s.held--; s.mu.Unlock(); s.returned.Add(1) }, nil, nil
		}
		s.mu.Unlock()
		if !wait {
			return nil, nil, sftpdial.ErrNoSlot
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// stats runs n stats at once through the pool and fails the test on any error.
func stats(t *testing.T, p *sftpdial.Pool, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			c, done, err := p.Get(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			fi, err := c.Stat("/f")
			done(err)
			if err != nil || fi.Size() != 5 {
				t.Errorf("stat: %v %v", fi, err)
			}
		})
	}
	wg.Wait()
}

// Many stats at once share a few connections; a connection opens only when the open ones are
// busy, each holds a slot, and an idle one closes and gives its slot back.
func TestPoolSharesConnections(t *testing.T) {
	srv, d := server(t)
	s := &slots{n: 10}
	p := sftpdial.NewPool(d, 3, 4, 200*time.Millisecond, s.fn)
	defer p.Close()
	for range 5 {
		stats(t, p, 40)
	}
	if n := srv.Server.Connections(); n < 1 || n > 3 {
		t.Fatalf("200 stats used %d connections, want 1 to 3", n)
	}
	if int64(s.peak) != srv.Server.Connections() || s.taken.Load() != srv.Server.Connections() {
		t.Fatalf("%d connections, %d slots taken (peak %d)", srv.Server.Connections(), s.taken.Load(), s.peak)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Open() > 0 || s.returned.Load() != s.taken.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("after idling: %d open, %d of %d slots returned", p.Open(), s.returned.Load(), s.taken.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With one slot free, the pool shares its one connection rather than waiting for another.
func TestPoolSharesWhenNoSlot(t *testing.T) {
	srv, d := server(t)
	s := &slots{n: 1}
	p := sftpdial.NewPool(d, 4, 1, time.Minute, s.fn)
	defer p.Close()
	stats(t, p, 30)
	if n := srv.Server.Connections(); n != 1 {
		t.Fatalf("%d connections with one slot", n)
	}
	p.Close()
	if s.returned.Load() != 1 {
		t.Fatalf("Close returned %d slots, want 1", s.returned.Load())
	}
}

// A connection the server drops is retired, its slot returned, and the next operation gets a new one.
func TestPoolRetiresDroppedConnection(t *testing.T) {
	srv, d := server(t)
	s := &slots{n: 1}
	p := sftpdial.NewPool(d, 1, 8, time.Minute, s.fn)
	defer p.Close()
	stats(t, p, 5)
	// An error of the file, not of the connection, keeps the connection.
	c, done, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Stat("/no-such-file")
	done(err)
	if err == nil || p.Open() != 1 || srv.Server.Connections() != 1 {
		t.Fatalf("after a stat of a missing file (%v): %d open, %d dialed", err, p.Open(), srv.Server.Connections())
	}
	srv.Server.DropConnections()
	deadline := time.Now().Add(5 * time.Second)
	for p.Open() > 0 || s.returned.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("dropped connection still open (%d) or its slot held (%d returned)", p.Open(), s.returned.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stats(t, p, 5)
	if n := srv.Server.Connections(); n != 2 {
		t.Fatalf("%d connections, want 2 (one before the drop, one after)", n)
	}
}
