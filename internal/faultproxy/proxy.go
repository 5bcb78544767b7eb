// Package faultproxy is a TCP proxy for fault tests: it forwards connections to a target and, on
// command, resets every connection, stalls them (sockets stay open, no bytes move), or caps the
// bandwidth from the target.
package faultproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Proxy forwards 127.0.0.1:<port> to a target address.
type Proxy struct {
	Addr   string
	target string
	ln     net.Listener

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	stalled chan struct{} // closed while not stalled; replaced by an open one while stalled
	limit   *rate.Limiter // bytes per second each way, nil: unlimited
	delay   time.Duration // added to each direction: a round trip gains twice this

	Accepted atomic.Int64
	Resets   atomic.Int64
	// FromTarget counts the bytes the target sent through the proxy.
	FromTarget atomic.Int64
	// corruptIn counts down the bytes towards the target until one is flipped (0: none armed).
	corruptIn atomic.Int64
	// Corrupted counts the bytes flipped.
	Corrupted atomic.Int64
}

// CorruptOnce flips one bit of the byte that is after bytes further on the way to the target,
// over all connections: a body damaged on the wire.
func (p *Proxy) CorruptOnce(after int64) { p.corruptIn.Store(after + 1) }

// corrupt flips the armed byte if it is in b, which is about to go to the target.
func (p *Proxy) corrupt(b []byte) {
	left := p.corruptIn.Load()
	if left <= 0 {
		return
	}
	if left > int64(len(b)) {
		p.corruptIn.Add(-int64(len(b)))
		return
	}
	if p.corruptIn.CompareAndSwap(left, 0) {
		b[left-1] ^= 0x01
		p.Corrupted.Add(1)
	}
}

// New listens on a free loopback port and forwards to target.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}, stalled: make(chan struct{})}
	close(p.stalled)
	go p.serve()
	return p, nil
}

// Close stops accepting and closes every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Reset()
	p.Resume()
}

// Reset closes every open connection abruptly (RST where the OS allows it).
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
		p.Resets.Add(1)
	}
	clear(p.conns)
}

// Stall stops moving bytes on every connection, open or new, until Resume; sockets stay open.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stalled:
		p.stalled = make(chan struct{})
	default:
	}
}

// Resume ends a stall.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stalled:
	default:
		close(p.stalled)
	}
}

// Limit caps the bytes per second in each direction (0: no cap).
func (p *Proxy) Limit(bytesPerSec int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if bytesPerSec <= 0 {
		p.limit = nil
		return
	}
	p.limit = rate.NewLimiter(rate.Limit(bytesPerSec), 32<<10)
}

// Delay adds d to each direction, so a round trip through the proxy takes 2d longer. Bytes are
// queued, not throttled: the delay costs latency, not bandwidth, like a long link.
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

func (p *Proxy) gate() (chan struct{}, *rate.Limiter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stalled, p.limit
}

func (p *Proxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *Proxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.Accepted.Add(1)
		go p.handle(in)
	}
}

func (p *Proxy) handle(in net.Conn) {
	out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		in.Close()
		return
	}
	p.track(in, true)
	p.track(out, true)
	defer func() {
		p.track(in, false)
		p.track(out, false)
		in.Close()
		out.Close()
	}()
	p.mu.Lock()
	delay := p.delay
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	if delay > 0 {
		go func() { delayLine(out, in, delay, nil); done <- struct{}{} }()
		go func() { delayLine(in, out, delay, &p.FromTarget); done <- struct{}{} }()
	} else {
		go func() { p.pipe(out, in, nil); done <- struct{}{} }()
		go func() { p.pipe(in, out, &p.FromTarget); done <- struct{}{} }()
	}
	<-done
}

// pipe copies src to dst in small chunks, waiting out stalls and the bandwidth cap.
func (p *Proxy) pipe(dst, src net.Conn, count *atomic.Int64) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			stalled, limit := p.gate()
			<-stalled
			if limit != nil {
				_ = limit.WaitN(context.Background(), min(n, limit.Burst()))
			}
			if count == nil {
				p.corrupt(buf[:n])
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			if count != nil {
				count.Add(int64(n))
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}

type chunk struct {
	b  []byte
	at time.Time
}

// delayLine copies src to dst, each chunk leaving delay after it arrived. Up to 64 MiB wait in the
// line; beyond that the reader stops, as a full link would.
func delayLine(dst, src net.Conn, delay time.Duration, count *atomic.Int64) {
	q := make(chan chunk, 4096)
	var queued atomic.Int64
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 64<<10)
			n, err := src.Read(buf)
			if n > 0 {
				for queued.Load() > 64<<20 {
					time.Sleep(time.Millisecond)
				}
				queued.Add(int64(n))
				q <- chunk{b: buf[:n], at: time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		if w := time.Until(c.at); w > 0 {
			time.Sleep(w)
		}
		queued.Add(-int64(len(c.b)))
		if count != nil {
			count.Add(int64(len(c.b)))
		}
		if _, err := dst.Write(c.b); err != nil {
			src.Close()
			for range q {
			}
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}
