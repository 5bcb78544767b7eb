package activities

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/pkg/sftp"
	"golang.org/x/sync/errgroup"

	"github.com/kafkasync/kafkasync/internal/hostlimit"
	"github.com/kafkasync/kafkasync/internal/metrics"
	"github.com/kafkasync/kafkasync/internal/sftpdial"
)

// slotSet is what an attempt holds of the SFTP server's limits: a job slot and a connection slot
// per connection of its own (none for a connection of the shared pool, which holds its own).
type slotSet struct {
	src    *Source
	job    *hostlimit.Lease
	conns  []*hostlimit.Lease
	shared bool
}

// takeSlots takes the job slot and the first connection's slot, waiting as long as ctx allows and
// heartbeating what earlier attempts finished meanwhile. They come before the staging file: a
// queued download holds no disk space. A file of at most one missing range uses the shared pool: it
// costs no handshake.
func (d *download) takeSlots(ctx context.Context) (*slotSet, error) {
	s := &slotSet{src: d.src, shared: d.src.Shared != nil && d.n-d.done.Len() <= 1}
	if d.src.Limits == nil {
		return s, nil
	}
	waiting := d.progress()
	details := func() any { return waiting }
	var err error
	if s.job, err = d.a.slot(ctx, d.src, d.in.JobID, hostlimit.Job, details); err != nil || s.shared {
		return s, err
	}
	l, err := d.a.slot(ctx, d.src, d.in.JobID, hostlimit.Conn, details)
	if err == nil {
		s.conns = append(s.conns, l)
	}
	return s, err
}

// takeSpare takes up to n more connection slots while they are free, leaving the reserve for new
// jobs, so a busy server gets fewer connections per download rather than a longer queue. It
// returns how many more connections the attempt may open.
func (s *slotSet) takeSpare(n int) int {
	if s.shared || n <= 0 {
		return 0
	}
	if s.src.Limits == nil {
		return n
	}
	k := 0
	for ; k < n; k++ {
		l, ok := s.src.Limits.TryAcquireSpare(hostlimit.Conn)
		if !ok {
			break
		}
		s.conns = append(s.conns, l)
	}
	return k
}

// watch ends the attempt when a slot is lost with the limiter's database connection: it may
// already be another worker's.
func (s *slotSet) watch(ctx context.Context, stop context.CancelCauseFunc) {
	for _, l := range append([]*hostlimit.Lease{s.job}, s.conns...) {
		if l == nil {
			continue
		}
		go func() {
			select {
			case <-l.Lost():
				stop(hostlimit.ErrLost)
			case <-ctx.Done():
			}
		}()
	}
}

// releaseConn gives back connection k's slot once that connection is closed.
func (s *slotSet) releaseConn(k int) {
	if k < len(s.conns) {
		s.conns[k].Release()
	}
}

func (s *slotSet) release() {
	s.job.Release()
	for _, l := range s.conns {
		l.Release()
	}
}

// connection is one SFTP connection of an attempt with the remote file open on it.
type connection struct {
	c      *sftpdial.Client
	rf     *sftp.File
	close  func()
	shared bool
}

// abortOn drops c when ctx ends (a shared one only if its operation hangs); stop disarms it.
func (c *connection) abortOn(ctx context.Context) (stop func()) {
	return abortOnEnd(ctx, c.c, c.shared)
}

// openFirst opens the attempt's first connection (the shared one, or one of its own) and the
// remote file on it, and checks the file against the plan. known, when not nil, is the file as a
// stat moments before saw it, taken instead of asking the server again.
func (d *download) openFirst(ctx context.Context, slots *slotSet, known *remoteState) (*connection, error) {
	var c *connection
	var err error
	if slots.shared {
		c, err = d.shared(ctx)
	} else {
		c, err = d.dial(ctx)
	}
	if err != nil {
		return nil, err
	}
	if known != nil {
		d.remote = *known
	} else if err := d.statOpened(ctx, c); err != nil {
		c.close()
		return nil, err
	}
	if !slots.shared {
		c.close = chain(c.close, func() { slots.releaseConn(0) })
	}
	return c, nil
}

// statOpened checks the opened file against the plan.
func (d *download) statOpened(ctx context.Context, c *connection) error {
	fi, err := c.rf.Stat()
	if err != nil {
		return err
	}
	return d.seeRemote(ctx, fi)
}

// shared opens the remote file on a connection of the shared pool.
func (d *download) shared(ctx context.Context) (*connection, error) {
	c, done, err := d.src.Shared.Get(ctx)
	if err != nil {
		return nil, err
	}
	stop := abortOnEnd(ctx, c, true)
	rf, err := c.Open(d.in.RemotePath)
	if err != nil {
		stop()
		done(err)
		return nil, err
	}
	return &connection{c: c, rf: rf, close: func() { rf.Close(); stop(); done(nil) }, shared: true}, nil
}

// dial opens a connection of the attempt's own and the remote file on it; ctx ending drops it.
func (d *download) dial(ctx context.Context) (*connection, error) {
	c, err := d.src.SFTP.DialRetry(ctx)
	if err != nil {
		return nil, err
	}
	metrics.SFTPConnections.Inc()
	stop := abortOnEnd(ctx, c, false) // unblock reads on cancel, even on a stalled connection
	closeConn := func() { stop(); c.Close(); metrics.SFTPConnections.Dec() }
	rf, err := c.Open(d.in.RemotePath)
	if err != nil {
		closeConn()
		return nil, err
	}
	return &connection{c: c, rf: rf, close: func() { rf.Close(); closeConn() }}, nil
}

func chain(fs ...func()) func() {
	return func() {
		for _, f := range fs {
			f()
		}
	}
}

// runConnection reads ranges from work on c until work is closed, then checks the remote file has
// not changed. Several readers share the connection, each on its own range: while one writes its
// chunk or waits for the last packet of a read, the others keep requests in flight, so the SSH
// channel's window stays full instead of draining once per read.
func (d *download) runConnection(ctx context.Context, c *connection, work <-chan int) error {
	readers := d.a.ReadersPerConnection
	if readers <= 0 {
		readers = 2
	}
	chunk := d.a.ChunkSize
	if chunk <= 0 {
		chunk = 1 << 20
	}
	g, gctx := errgroup.WithContext(ctx)
	for range readers {
		g.Go(func() error {
			// No larger than the file: a small file's download must not allocate a chunk it never fills.
			buf := make([]byte, min(int64(chunk), max(d.in.RangeSize, 1), max(d.in.Size, 1)))
			for i := range work {
				d.mu.Lock()
				from := d.partial[i]
				d.mu.Unlock()
				if err := d.fetchRange(gctx, c.rf, i, from, buf); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	fi, err := c.c.Stat(d.in.RemotePath)
	if err != nil {
		return err
	}
	return d.changed(fi)
}

// fetchRange copies range i, from start bytes into it, from rf to the staging file.
func (d *download) fetchRange(ctx context.Context, rf *sftp.File, i int, start int64, buf []byte) error {
	off, end := RangeBounds(i, d.in.Size, d.in.RangeSize)
	off += start
	for off < end {
		if err := ctx.Err(); err != nil {
			return err
		}
		m := min(int64(len(buf)), end-off)
		if err := d.src.wait(ctx, int(m)); err != nil {
			return err
		}
		k, rerr := rf.ReadAt(buf[:m], off)
		if k > 0 {
			if _, werr := d.f.WriteAt(buf[:k], off); werr != nil {
				return fmt.Errorf("write staging: %w", werr)
			}
			off += int64(k)
			d.report(i, int64(k), false)
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF) && off < end:
			// Shorter than it was at the start: rewritten meanwhile. The retry's checks see it as it is now.
			return retryable(ErrTypeRemoteChanged, fmt.Sprintf("%s changed during the download: ends at %d, expected %d bytes", d.in.RemotePath, off, d.in.Size))
		case errors.Is(rerr, io.EOF):
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			return rerr
		}
	}
	d.report(i, 0, true)
	return nil
}
