package sftpdial

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"
)

// ErrNoSlot is what a SlotFunc returns when it was told not to wait and no slot is free.
var ErrNoSlot = errors.New("no free connection slot")

// SlotFunc takes a slot of the server's connection limit before the pool dials: it waits while ctx
// allows when wait is true, else returns ErrNoSlot at once. release gives the slot back when the
// connection closes; when lost is closed the slot is no longer held, and the connection is dropped.
type SlotFunc func(ctx context.Context, wait bool) (release func(), lost <-chan struct{}, err error)

// Pool shares a few SSH connections among short SFTP operations: stats and small files. An SSH
// handshake costs far more than such an operation (on loopback against OpenSSH, about 80 ms and
// 20 ms of CPU, against 0.1 ms for a stat on an open session), and pkg/sftp runs concurrent
// requests on one session. A connection is dialed only when every open one already serves
// PerConn operations and fewer than Size are open; it is closed after Idle without use, or as
// soon as it fails. Safe for concurrent use.
type Pool struct {
	d       *Dialer
	size    int
	perConn int
	idle    time.Duration
	slot    SlotFunc

	mu      sync.Mutex
	conns   []*pooled
	dialing int
	changed chan struct{} // closed and replaced when a dial ends
	// noSlotUntil: the last try for a slot found none; open connections are shared until then.
	noSlotUntil time.Time
	closed      bool
	stop        chan struct{}
}

type pooled struct {
	c       *Client
	users   int
	last    time.Time
	dead    bool
	release func()
	gone    chan struct{} // closed when retired
}

// NewPool returns a pool of at most size connections (at least 1), each shared by up to perConn
// operations before another is dialed, closed after idle unused. slot may be nil (no limit).
func NewPool(d *Dialer, size, perConn int, idle time.Duration, slot SlotFunc) *Pool {
	p := &Pool{d: d, size: max(size, 1), perConn: max(perConn, 1), idle: idle, slot: slot, stop: make(chan struct{}), changed: make(chan struct{})}
	if idle > 0 {
		go p.reap()
	}
	return p
}

// Get returns a connection to use and the function to call when done with it, with the error the
// operation ended with: an error that says the connection is gone (ConnectionLost) retires it;
// others (no such file, a cancelled caller, a local disk error) leave it to the next user. The
// caller must not Close the connection; Abort is allowed for a stalled server.
func (p *Pool) Get(ctx context.Context) (*Client, func(error), error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, nil, errors.New("sftp pool closed")
		}
		best := p.leastUsed()
		if best != nil && (best.users < p.perConn || len(p.conns)+p.dialing >= p.size || time.Now().Before(p.noSlotUntil)) {
			return p.use(best)
		}
		if best == nil && p.dialing > 0 {
			// The first connection is on its way: wait for it rather than dial another.
			changed := p.changed
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-changed:
			}
			continue
		}
		p.dialing++
		p.mu.Unlock()
		c, done, err := p.dial(ctx, best != nil)
		if !errors.Is(err, ErrNoSlot) {
			return c, done, err
		}
		// No slot for another connection: share an open one, and do not ask for a slot again for
		// a second (each ask may be a query to the limiter's database).
		p.mu.Lock()
		p.noSlotUntil = time.Now().Add(time.Second)
		if best = p.leastUsed(); best != nil {
			return p.use(best)
		}
		p.mu.Unlock()
	}
}

// use hands pc to one more user. p.mu is held; use unlocks it.
func (p *Pool) use(pc *pooled) (*Client, func(error), error) {
	pc.users++
	p.mu.Unlock()
	return pc.c, p.done(pc), nil
}

// dial opens a connection for Get, with a slot of the server's limit: while another connection is
// open (busy), it does not wait for one. p.dialing was counted up by the caller.
func (p *Pool) dial(ctx context.Context, busy bool) (*Client, func(error), error) {
	finished := func() {
		p.dialing--
		close(p.changed)
		p.changed = make(chan struct{})
	}
	release := func() {}
	var lost <-chan struct{}
	if p.slot != nil {
		r, l, err := p.slot(ctx, !busy)
		if err != nil {
			p.mu.Lock()
			finished()
			p.mu.Unlock()
			return nil, nil, err
		}
		release, lost = r, l
	}
	c, err := p.d.DialRetry(ctx)
	p.mu.Lock()
	finished()
	if err != nil {
		p.mu.Unlock()
		release()
		return nil, nil, err
	}
	if p.closed {
		p.mu.Unlock()
		c.Abort()
		release()
		return nil, nil, errors.New("sftp pool closed")
	}
	pc := &pooled{c: c, users: 1, last: time.Now(), release: release, gone: make(chan struct{})}
	p.conns = append(p.conns, pc)
	p.mu.Unlock()
	// A connection that ends (server gone, Abort) is retired at once, not handed out again.
	go func() {
		c.conn.Wait()
		p.mu.Lock()
		pc.dead = true
		p.retire()
		p.mu.Unlock()
	}()
	if lost != nil {
		go func() {
			select {
			case <-lost:
				c.Abort() // the watcher above retires it
			case <-pc.gone:
			}
		}()
	}
	return c, p.done(pc), nil
}

// leastUsed is the live connection with the fewest users, or nil. p.mu is held.
func (p *Pool) leastUsed() *pooled {
	var best *pooled
	for _, pc := range p.conns {
		if !pc.dead && (best == nil || pc.users < best.users) {
			best = pc
		}
	}
	return best
}

func (p *Pool) done(pc *pooled) func(error) {
	var once sync.Once
	return func(err error) {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			pc.users--
			pc.last = time.Now()
			if ConnectionLost(err) {
				pc.dead = true
			}
			p.retire()
		})
	}
}

// retire closes dead connections nobody uses any more. p.mu is held.
func (p *Pool) retire() {
	kept := p.conns[:0]
	for _, pc := range p.conns {
		if pc.dead && pc.users == 0 {
			close(pc.gone)
			go func() {
				pc.c.Abort()
				pc.release()
			}()
			continue
		}
		kept = append(kept, pc)
	}
	clear(p.conns[len(kept):])
	p.conns = kept
}

func (p *Pool) reap() {
	t := time.NewTicker(max(p.idle/2, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.mu.Lock()
			for _, pc := range p.conns {
				if pc.users == 0 && now.Sub(pc.last) >= p.idle {
					pc.dead = true
				}
			}
			p.retire()
			p.mu.Unlock()
		}
	}
}

// Open is how many connections the pool holds open.
func (p *Pool) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, pc := range p.conns {
		if !pc.dead {
			n++
		}
	}
	return n
}

// Close closes every connection; operations still running on one fail.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.stop)
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, pc := range conns {
		close(pc.gone)
		pc.c.Abort() // Close would wait on a server that stopped answering
		pc.release()
	}
}

// ConnectionLost reports an error that means the SSH connection or the SFTP session is gone.
func ConnectionLost(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	return errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.As(err, &ne)
}
