package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/kafkasync/kafkasync/internal/hostlimit"
	"github.com/kafkasync/kafkasync/internal/metrics"
	"github.com/kafkasync/kafkasync/internal/progress"
)

// DownloadInput says what to fetch and how to split it.
type DownloadInput struct {
	JobID string
	// Source names the SFTP source ("" is default).
	Source     string
	RemotePath string
	// Size is the remote size from Stat; the file must still have it.
	Size      int64
	RangeSize int64
	// Connections overrides the worker's default when > 0.
	Connections int
}

// DownloadResult reports one successful download attempt.
type DownloadResult struct {
	Size int64
	// ModTime is the remote file's modification time, the same at the start and the end.
	ModTime time.Time
	// Fetched is what this attempt read from the server; Resumed what it kept from earlier attempts.
	Fetched     int64
	Resumed     int64
	Seconds     float64
	BytesPerSec float64
	Attempt     int32
	HostID      string
	Connections int
}

// StagingName is the staging file of a job.
func StagingName(jobID string) string { return jobID + ".part" }

// download is one attempt of Download: its plan, its connections and what it has written. The
// fetchers report through it; mu guards done and partial.
type download struct {
	a     *Transfer
	src   *Source
	in    DownloadInput
	name  string // the staging file
	n     int    // ranges of the file
	start time.Time
	// resume is the progress an earlier attempt left, to be trusted once the remote file is seen.
	resume progress.Progress
	remote remoteState
	conns  int
	f      *os.File

	mu       sync.Mutex
	done     *RangeSet
	partial  map[int]int64
	resumed  int64
	fetched  atomic.Int64
	lastByte atomic.Int64
	synced   progress.Progress
}

// remoteState is what the remote file looked like when the attempt opened it.
type remoteState struct {
	Size    int64
	ModTime time.Time
}

// Download fetches the remote file into staging/<job id>.part over several SFTP connections, each
// taking whole ranges from a shared list and writing them in place with WriteAt. It keeps a
// journal and heartbeats its progress; a retry (on this host, after a crash too) trusts what an
// earlier attempt wrote while the staging file still has the expected size and the remote file the
// same size and modification time, and fetches only the rest. A remote file that changes during
// the attempt fails it; one larger than MaxFileSize is refused. Memory stays at Connections ×
// ChunkSize × readers whatever the file size.
func (a *Transfer) Download(ctx context.Context, in DownloadInput) (_ DownloadResult, err error) {
	start := time.Now()
	metrics.ActiveDownloads.Inc()
	defer func() { metrics.ActiveDownloads.Dec(); metrics.Observe("download", start, err) }()
	if err := a.checkSize(in.RemotePath, in.Size); err != nil {
		return DownloadResult{}, err
	}
	src, err := a.source(in.Source)
	if err != nil {
		return DownloadResult{}, err
	}
	d := &download{a: a, src: src, in: in, name: StagingName(in.JobID), n: NumRanges(in.Size, in.RangeSize), start: start}
	d.plan(ctx)
	slots, err := d.takeSlots(ctx)
	defer slots.release()
	if err != nil {
		return DownloadResult{}, err
	}
	first, err := d.openFirst(ctx, slots, nil)
	if err != nil {
		return DownloadResult{}, d.failed(ctx, err)
	}
	defer first.close()
	d.conns = 1 + slots.takeSpare(min(d.wantConns(), d.n-d.done.Len())-1)
	if err := d.openStaging(ctx); err != nil {
		return DownloadResult{}, err
	}
	defer d.f.Close()
	err = d.fetch(ctx, first, slots)
	if err != nil {
		return DownloadResult{}, d.failed(ctx, err)
	}
	d.a.removeJournal(d.name) // the staging file is complete: nothing left to resume
	return d.result(ctx), nil
}

// readWhole reads a small remote file whole into memory on one connection (the shared pool's when
// the source has one), under the same slots, bandwidth, stall watchdog and change check as
// Download, with no staging file: a retry reads it again. known is as openFirst's.
func (a *Transfer) readWhole(ctx context.Context, in DownloadInput, known *remoteState) (_ []byte, _ DownloadResult, err error) {
	start := time.Now()
	metrics.ActiveDownloads.Inc()
	defer func() { metrics.ActiveDownloads.Dec(); metrics.Observe("download", start, err) }()
	if err := a.checkSize(in.RemotePath, in.Size); err != nil {
		return nil, DownloadResult{}, err
	}
	src, err := a.source(in.Source)
	if err != nil {
		return nil, DownloadResult{}, err
	}
	d := &download{a: a, src: src, in: in, n: 1, start: start, conns: 1, done: NewRangeSet(nil, 1), partial: map[int]int64{}}
	slots, err := d.takeSlots(ctx)
	defer slots.release()
	if err != nil {
		return nil, DownloadResult{}, err
	}
	c, err := d.openFirst(ctx, slots, known)
	if err != nil {
		return nil, DownloadResult{}, classify("download "+in.RemotePath, err)
	}
	defer c.close()
	sctx, stall := context.WithCancelCause(ctx)
	defer stall(nil)
	slots.watch(sctx, stall)
	d.lastByte.Store(time.Now().UnixNano())
	defer d.watchStall(sctx, stall)()
	defer c.abortOn(sctx)()
	data, err := d.readAll(sctx, c)
	if err == nil {
		var fi os.FileInfo
		if fi, err = c.c.Stat(in.RemotePath); err == nil {
			err = d.changed(fi)
		}
	}
	if err != nil {
		if cause := context.Cause(sctx); ctx.Err() == nil && (errors.Is(cause, ErrStalled) || errors.Is(cause, hostlimit.ErrLost)) {
			return nil, DownloadResult{}, cause
		}
		return nil, DownloadResult{}, classify("download "+in.RemotePath, err)
	}
	return data, d.result(ctx), nil
}

// readAll reads the open remote file into one buffer of its size, a chunk at a time as the
// source's bandwidth allows.
func (d *download) readAll(ctx context.Context, c *connection) ([]byte, error) {
	data := make([]byte, d.in.Size)
	chunk := int64(cmp.Or(d.a.ChunkSize, 1<<20))
	for off := int64(0); off < d.in.Size; {
		m := min(chunk, d.in.Size-off)
		if err := d.src.wait(ctx, int(m)); err != nil {
			return nil, err
		}
		k, err := c.rf.ReadAt(data[off:off+m], off)
		off += int64(k)
		d.report(0, int64(k), false)
		if err != nil && !(errors.Is(err, io.EOF) && off == d.in.Size) {
			return nil, err
		}
	}
	return data, nil
}

// fetch runs the attempt's connections until every missing range is written or one fails; the
// journal records progress meanwhile and once more at the end, even after a failure.
func (d *download) fetch(ctx context.Context, first *connection, slots *slotSet) error {
	sctx, stall := context.WithCancelCause(ctx)
	defer stall(nil)
	slots.watch(sctx, stall)
	d.lastByte.Store(time.Now().UnixNano())
	defer d.watchStall(sctx, stall)()
	stopJournal := d.keepJournal(ctx)
	g, gctx := errgroup.WithContext(sctx)
	work := make(chan int)
	g.Go(func() error {
		defer close(work)
		for i := range d.done.Missing() {
			select {
			case work <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	defer first.abortOn(gctx)() // the stall watchdog must reach the first connection's reads too
	g.Go(func() error { return d.runConnection(gctx, first, work) })
	for k := 1; k < d.conns; k++ {
		g.Go(func() error {
			defer slots.releaseConn(k)
			c, err := d.dial(gctx)
			if err != nil {
				return err
			}
			defer c.close()
			return d.runConnection(gctx, c, work)
		})
	}
	err := g.Wait()
	stopJournal()
	if err != nil {
		if cause := context.Cause(sctx); ctx.Err() == nil && (errors.Is(cause, ErrStalled) || errors.Is(cause, hostlimit.ErrLost)) {
			return cause
		}
	}
	return err
}

// failed turns an attempt's error into the activity's: interruptions stay retryable (the next
// attempt resumes), a full disk removes the partial file, and a final error removes the staging
// file and journal, since no later attempt will resume them.
func (d *download) failed(ctx context.Context, err error) error {
	var app *temporal.ApplicationError
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, ErrStalled), errors.Is(err, hostlimit.ErrLost):
		d.a.log(ctx, d.in.JobID).Warn("download interrupted", "err", err)
		return err
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return d.a.stagingFailed(ctx, d.in, d.f, d.name, err)
	}
	err = classify("download "+d.in.RemotePath, err)
	if errors.As(err, &app) && app.NonRetryable() {
		if d.f != nil {
			d.f.Close()
		}
		d.a.removeStaging(d.name)
	}
	return err
}

func (d *download) result(ctx context.Context) DownloadResult {
	el := time.Since(d.start).Seconds()
	res := DownloadResult{Size: d.in.Size, ModTime: d.remote.ModTime, Fetched: d.fetched.Load(), Resumed: d.resumed,
		Seconds: el, HostID: d.a.HostID, Connections: d.conns}
	if activity.IsActivity(ctx) {
		res.Attempt = activity.GetInfo(ctx).Attempt
	}
	if el > 0 {
		res.BytesPerSec = float64(res.Fetched) / el
	}
	d.a.log(ctx, d.in.JobID).Info("download done", "size", d.in.Size, "fetched", res.Fetched, "resumed", d.resumed,
		"seconds", fmt.Sprintf("%.3f", el), "connections", d.conns)
	return res
}

// report records bytes of range i landing in order from its start, or the range finished.
func (d *download) report(i int, b int64, finished bool) {
	if b > 0 {
		d.lastByte.Store(time.Now().UnixNano())
		d.fetched.Add(b)
		metrics.Bytes.WithLabelValues("download").Add(float64(b))
		metrics.SourceBytes.WithLabelValues(d.src.Name).Add(float64(b))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if finished {
		d.done.Add(i)
		delete(d.partial, i)
	} else {
		d.partial[i] += b
	}
}

// ErrStalled means a download received no bytes for the stall timeout.
var ErrStalled = errors.New("download stalled")

// watchStall ends the attempt (through stall) when no byte arrived for the stall timeout:
// heartbeats alone would keep a hung read alive forever. The returned function stops it.
func (d *download) watchStall(ctx context.Context, stall context.CancelCauseFunc) (stop func()) {
	st := d.a.stallTimeout()
	if st <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(min(st/4, time.Second))
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if idle := time.Since(time.Unix(0, d.lastByte.Load())); idle > st {
					stall(fmt.Errorf("%w: no bytes from %s for %s", ErrStalled, d.in.RemotePath, idle.Round(time.Millisecond)))
					return
				}
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done) }
}

func (a *Transfer) stallTimeout() time.Duration {
	if a.StallTimeout != 0 {
		return a.StallTimeout
	}
	return 30 * time.Second
}

// stagingFailed handles a staging file that cannot be written (disk full, quota): it removes the
// partial file, so the space comes back and a retry starts clean, and fails the attempt with the
// reason. The attempt is retryable: the job succeeds once space returns.
func (a *Transfer) stagingFailed(ctx context.Context, in DownloadInput, f *os.File, name string, cause error) error {
	if f != nil {
		f.Close()
	}
	a.removeStaging(name)
	heartbeat(ctx, progress.Progress{Size: in.Size, RangeSize: in.RangeSize}) // nothing kept
	err := fmt.Errorf("staging %s for %d bytes: %w (partial file removed)", name, in.Size, cause)
	a.log(ctx, in.JobID).Warn("staging full", "err", err)
	return temporal.NewApplicationErrorWithCause(err.Error(), ErrTypeStagingFull, cause)
}

// removeStaging removes a staging file and its journal.
func (a *Transfer) removeStaging(name string) {
	if err := a.Staging.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.logger().Warn("remove staging file", "file", name, "err", err)
	}
	a.removeJournal(name)
}

// syncEvery is how often Download syncs the staging file: what a machine crash can cost is about
// this much transfer time (a killed worker loses only what its last journal entry missed).
func (a *Transfer) syncEvery() time.Duration {
	if a.SyncEvery > 0 {
		return a.SyncEvery
	}
	return min(a.heartbeatEvery(), time.Second)
}

func (a *Transfer) heartbeatEvery() time.Duration {
	if a.Heartbeat > 0 {
		return a.Heartbeat
	}
	return time.Second
}
