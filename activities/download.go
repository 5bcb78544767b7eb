package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/kafkasync/kafkasync/internal/hostlimit"
	"github.com/kafkasync/kafkasync/internal/metrics"
	"github.com/kafkasync/kafkasync/internal/sftpdial"
)

// DownloadInput says what to fetch and how to split it.
type DownloadInput struct {
	JobID      string
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

// Download fetches the remote file into staging/<job id>.part over several SFTP connections, each
// taking whole ranges from a shared list and writing them in place with WriteAt. Every Heartbeat it
// syncs the file and records the finished ranges; a retry (on this host, after a crash too) trusts
// those ranges when the staging file is still there with the expected size, and fetches only the
// rest. Memory stays at Connections × ChunkSize whatever the file size.
func (a *Transfer) Download(ctx context.Context, in DownloadInput) (_ DownloadResult, err error) {
	start := time.Now()
	metrics.ActiveDownloads.Inc()
	defer func() { metrics.ActiveDownloads.Dec(); metrics.Observe("download", start, err) }()
	info := activity.GetInfo(ctx)
	name := StagingName(in.JobID)
	n := NumRanges(in.Size, in.RangeSize)
	done, partial := map[int]bool{}, map[int]int64{}

	// Resume from what is on this host's disk: the journal next to the staging file (synced with
	// it, the most recent), else the last heartbeat. Either counts only while the staging file
	// still has exactly Size bytes.
	if fi, err := a.Staging.Stat(name); err == nil && fi.Size() == in.Size {
		var best Progress
		if j, ok := a.readJournal(name); ok {
			// Same boot: the page cache holds every byte the killed worker wrote. After a reboot
			// only what was synced counts.
			p := j.Synced
			if j.Boot != "" && j.Boot == bootID() {
				p = j.Written
			}
			if p.Size == in.Size && p.RangeSize == in.RangeSize {
				best = p
			}
		}
		var hb Progress
		if activity.HasHeartbeatDetails(ctx) && activity.GetHeartbeatDetails(ctx, &hb) == nil &&
			hb.Size == in.Size && hb.RangeSize == in.RangeSize && progressBytes(hb, n) > progressBytes(best, n) {
			best = hb
		}
		if best.Size == in.Size {
			done = DoneSet(best.Done, n)
			for i, b := range best.Partial {
				if off, end := RangeBounds(i, in.Size, in.RangeSize); i >= 0 && i < n && !done[i] && b > 0 && b < end-off {
					partial[i] = b
				}
			}
		}
	}
	resumed := DoneBytes(done, in.Size, in.RangeSize) + sumPartial(partial)

	conns := in.Connections
	if conns <= 0 {
		conns = a.Connections
	}
	missing := Missing(done, n)
	startOf := make(map[int]int64, len(partial)) // read-only copy for the fetchers
	for i, b := range partial {
		startOf[i] = b
	}
	conns = max(1, min(conns, len(missing)))
	// One range to fetch (a small file, or the last range of a resumed one): a connection of the
	// shared pool is enough, and costs no handshake.
	shared := a.Shared != nil && len(missing) == 1

	// The SFTP server's limits, shared by all workers: one job slot, then connection slots. The
	// first connection slot is waited for; the others are taken while free, so a busy server gets
	// fewer connections per download rather than a longer queue. Slots come before the staging
	// file: a queued download holds no disk space.
	var leases []*hostlimit.Lease // [job, conn, conn, ...]
	defer func() {
		for _, l := range leases {
			l.Release()
		}
	}()
	if len(missing) > 0 && a.Limits != nil {
		// While waiting, the heartbeat keeps what earlier attempts finished.
		waiting := Progress{Size: in.Size, RangeSize: in.RangeSize, Done: Spans(done), Partial: partial,
			BytesDone: resumed, Ranges: n}
		details := func() any { return waiting }
		kinds := []string{hostlimit.Job, hostlimit.Conn}
		if shared {
			kinds = kinds[:1] // the pooled connection holds its own connection slot
		}
		for _, kind := range kinds {
			l, err := a.slot(ctx, in.JobID, kind, details)
			if err != nil {
				return DownloadResult{}, err
			}
			leases = append(leases, l)
		}
		for !shared && len(leases)-1 < conns {
			l, ok := a.Limits.TryAcquireSpare(hostlimit.Conn)
			if !ok {
				break
			}
			leases = append(leases, l)
		}
		if !shared {
			conns = len(leases) - 1
		}
	}
	// The shared connection, like the connection slots above, before the staging file and the
	// stall watchdog: waiting for it is not a stall.
	var sc *sftpdial.Client
	if shared {
		var done func(error)
		if sc, done, err = a.Shared.Get(ctx); err != nil {
			return DownloadResult{}, classify("download", err)
		}
		defer func() { done(err) }()
	}

	fresh := len(done) == 0 && len(partial) == 0
	flags := os.O_RDWR | os.O_CREATE
	if fresh {
		flags |= os.O_TRUNC
		a.removeJournal(name)
	}
	f, err := a.Staging.OpenFile(name, flags, 0o644)
	if err != nil {
		return DownloadResult{}, fmt.Errorf("open staging %s: %w", name, err)
	}
	defer f.Close()
	if fresh && in.Size > 0 {
		if err := f.Truncate(in.Size); err != nil {
			return DownloadResult{}, a.stagingFailed(ctx, in, f, name, err)
		}
		// Reserve the blocks now, so a full disk fails here and not after minutes of downloading.
		// Filesystems without fallocate are fine: a full disk then fails the first write instead.
		if err := unix.Fallocate(int(f.Fd()), 0, 0, in.Size); errors.Is(err, unix.ENOSPC) {
			return DownloadResult{}, a.stagingFailed(ctx, in, f, name, err)
		}
	}
	if resumed > 0 {
		a.log(ctx, in.JobID).Info("download resumes", "resumed_bytes", resumed, "size", in.Size)
	}

	var (
		mu      sync.Mutex
		fetched atomic.Int64
	)
	progress := func() Progress {
		mu.Lock()
		spans := Spans(done)
		part := make(map[int]int64, len(partial))
		for i, b := range partial {
			part[i] = b
		}
		bytesDone := DoneBytes(done, in.Size, in.RangeSize) + sumPartial(part)
		mu.Unlock()
		el := time.Since(start).Seconds()
		return Progress{Size: in.Size, RangeSize: in.RangeSize, Done: spans, Partial: part, BytesDone: bytesDone,
			BytesPerSec: float64(fetched.Load()) / max(el, 1e-3), Ranges: n, Connections: conns}
	}
	// Every journalEvery the journal records what is written (in the page cache: it survives the
	// worker's death, not the machine's); every syncEvery the file is synced and the journal and the
	// heartbeat record what is durable.
	var synced Progress
	journal := func(sync bool) {
		p := progress() // snapshot first: every byte it counts is written before a sync below
		if sync {
			if err := f.Sync(); err != nil {
				a.log(ctx, in.JobID).Warn("sync staging", "err", err)
			} else {
				synced = p
				heartbeat(ctx, p)
			}
		}
		if err := a.writeJournal(name, journalEntry{Boot: bootID(), Written: p, Synced: synced}); err != nil {
			a.log(ctx, in.JobID).Warn("write download journal", "err", err)
		}
	}

	hbStop := make(chan struct{})
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		t := time.NewTicker(journalEvery)
		defer t.Stop()
		lastSync := time.Now()
		for {
			select {
			case <-t.C:
				sync := time.Since(lastSync) >= a.syncEvery()
				if sync {
					lastSync = time.Now()
				}
				journal(sync)
			case <-hbStop:
				return
			}
		}
	}()

	// A connection that delivers nothing for StallTimeout ends the attempt: heartbeats alone would
	// keep a hung read alive forever.
	sctx, stall := context.WithCancelCause(ctx)
	defer stall(nil)
	// A slot lost with the limiter's database connection may already be another worker's.
	for _, l := range leases {
		if l != nil {
			go func() {
				select {
				case <-l.Lost():
					stall(hostlimit.ErrLost)
				case <-sctx.Done():
				}
			}()
		}
	}
	var lastByte atomic.Int64
	lastByte.Store(time.Now().UnixNano())
	if st := a.stallTimeout(); st > 0 {
		stallStop := make(chan struct{})
		defer close(stallStop)
		go func() {
			t := time.NewTicker(min(st/4, time.Second))
			defer t.Stop()
			for {
				select {
				case <-t.C:
					if idle := time.Since(time.Unix(0, lastByte.Load())); idle > st {
						stall(fmt.Errorf("%w: no bytes from %s for %s", ErrStalled, in.RemotePath, idle.Round(time.Millisecond)))
						return
					}
				case <-stallStop:
					return
				case <-sctx.Done():
					return
				}
			}
		}()
	}
	g, gctx := errgroup.WithContext(sctx)
	work := make(chan int)
	g.Go(func() error {
		defer close(work)
		for _, i := range missing {
			select {
			case work <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	if len(missing) > 0 {
		for k := range conns {
			g.Go(func() error {
				if len(leases) > k+1 {
					defer leases[k+1].Release() // after fetchRanges closed the connection
				}
				return a.fetchRanges(gctx, in, f, sc, work, startOf, func(i int, b int64, finished bool) {
					if b > 0 {
						lastByte.Store(time.Now().UnixNano())
						fetched.Add(b)
						metrics.Bytes.WithLabelValues("download").Add(float64(b))
					}
					mu.Lock()
					if finished {
						done[i] = true
						delete(partial, i)
					} else {
						partial[i] += b
					}
					mu.Unlock()
				})
			})
		}
	}
	err = g.Wait()
	close(hbStop)
	<-hbDone
	journal(true) // keep what this attempt finished, even when it failed
	if err != nil {
		if ctx.Err() != nil {
			return DownloadResult{}, ctx.Err()
		}
		if cause := context.Cause(sctx); errors.Is(cause, ErrStalled) || errors.Is(cause, hostlimit.ErrLost) {
			a.log(ctx, in.JobID).Warn("download interrupted", "err", cause)
			return DownloadResult{}, cause // retryable: the next attempt resumes from the heartbeat
		}
		if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
			return DownloadResult{}, a.stagingFailed(ctx, in, f, name, err)
		}
		return DownloadResult{}, classify("download "+in.RemotePath, err)
	}
	a.removeJournal(name) // the staging file is complete: nothing left to resume
	el := time.Since(start).Seconds()
	res := DownloadResult{Size: in.Size, Fetched: fetched.Load(), Resumed: resumed, Seconds: el,
		Attempt: info.Attempt, HostID: a.HostID, Connections: conns}
	if el > 0 {
		res.BytesPerSec = float64(res.Fetched) / el
	}
	a.log(ctx, in.JobID).Info("download done", "size", in.Size, "fetched", res.Fetched, "resumed", resumed,
		"seconds", fmt.Sprintf("%.3f", el), "connections", conns)
	return res, nil
}

// ErrStalled means a download received no bytes for the stall timeout.
var ErrStalled = errors.New("download stalled")

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
	f.Close()
	if err := a.Staging.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log(ctx, in.JobID).Warn("remove partial staging file", "file", name, "err", err)
	}
	a.removeJournal(name)
	heartbeat(ctx, Progress{Size: in.Size, RangeSize: in.RangeSize}) // nothing kept
	err := fmt.Errorf("staging %s for %d bytes: %w (partial file removed)", name, in.Size, cause)
	a.log(ctx, in.JobID).Warn("staging full", "err", err)
	return temporal.NewApplicationErrorWithCause(err.Error(), ErrTypeStagingFull, cause)
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

// fetchRanges runs one connection (shared, or else one of its own): it takes range indices from
// work until it is closed, starting
// each range after the bytes startOf says are already there, and reports the bytes of range i as
// they land (in order from the range's start) and each finished range.
func (a *Transfer) fetchRanges(ctx context.Context, in DownloadInput, f *os.File, shared *sftpdial.Client, work <-chan int, startOf map[int]int64,
	report func(i int, b int64, finished bool)) (err error) {
	c := shared
	if c == nil {
		if c, err = a.SFTP.DialRetry(ctx); err != nil {
			return err
		}
		defer c.Close()
		metrics.SFTPConnections.Inc()
		defer metrics.SFTPConnections.Dec()
	}
	stop := abortOnEnd(ctx, c, shared != nil) // unblock reads on cancel, even on a stalled connection
	defer stop()
	rf, err := c.Open(in.RemotePath)
	if err != nil {
		return err
	}
	defer rf.Close()
	fi, err := rf.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != in.Size {
		return final(ErrTypeRemoteChanged, fmt.Sprintf("%s: size now %d, was %d", in.RemotePath, fi.Size(), in.Size))
	}
	chunk := a.ChunkSize
	if chunk <= 0 {
		chunk = 1 << 20
	}
	// Several readers share the connection, each on its own range: while one writes its chunk to
	// disk or waits for the last packet of a read, the others keep requests in flight, so the SSH
	// channel's window stays full instead of draining once per read.
	readers := a.ReadersPerConnection
	if readers <= 0 {
		readers = 2
	}
	g, gctx := errgroup.WithContext(ctx)
	for range readers {
		g.Go(func() error {
			buf := make([]byte, min(int64(chunk), max(in.RangeSize, 1)))
			for i := range work {
				if err := a.fetchRange(gctx, in, rf, f, i, startOf[i], buf, report); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// fetchRange copies range i, from start bytes into it, from rf to the staging file.
func (a *Transfer) fetchRange(ctx context.Context, in DownloadInput, rf *sftp.File, f *os.File, i int, start int64, buf []byte,
	report func(i int, b int64, finished bool)) error {
	off, end := RangeBounds(i, in.Size, in.RangeSize)
	off += start
	for off < end {
		if err := ctx.Err(); err != nil {
			return err
		}
		m := min(int64(len(buf)), end-off)
		k, rerr := rf.ReadAt(buf[:m], off)
		if k > 0 {
			if _, werr := f.WriteAt(buf[:k], off); werr != nil {
				return fmt.Errorf("write staging: %w", werr)
			}
			off += int64(k)
			report(i, int64(k), false)
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) && off < end {
				return final(ErrTypeRemoteChanged, fmt.Sprintf("%s: ends at %d, expected %d bytes", in.RemotePath, off, in.Size))
			}
			if !errors.Is(rerr, io.EOF) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return rerr
			}
		}
	}
	report(i, 0, true)
	return nil
}

// The journal is the download's progress kept next to its staging file, written after each sync,
// so a worker restarted on the same host resumes from its last sync rather than from the last
// heartbeat Temporal stored (heartbeats reach the server only every few seconds).
func journalName(staging string) string { return staging + ".ranges" }

// journalEntry is the journal's content.
type journalEntry struct {
	Boot    string   `json:"boot"`    // the kernel's boot id when it was written
	Written Progress `json:"written"` // written to the staging file (page cache)
	Synced  Progress `json:"synced"`  // and synced to disk
}

// journalEvery is how often the journal records the written ranges (no data sync: cheap).
const journalEvery = 50 * time.Millisecond

var bootOnce = sync.OnceValue(func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
})

func bootID() string { return bootOnce() }

func (a *Transfer) writeJournal(staging string, p journalEntry) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	tmp := journalName(staging) + ".tmp"
	if err := a.Staging.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return a.Staging.Rename(tmp, journalName(staging))
}

func (a *Transfer) readJournal(staging string) (journalEntry, bool) {
	b, err := a.Staging.ReadFile(journalName(staging))
	if err != nil {
		return journalEntry{}, false
	}
	var j journalEntry
	return j, json.Unmarshal(b, &j) == nil
}

func (a *Transfer) removeJournal(staging string) {
	_ = a.Staging.Remove(journalName(staging))
	_ = a.Staging.Remove(journalName(staging) + ".tmp")
}

// progressBytes is how many bytes p says are on disk, counting only ranges below n.
func progressBytes(p Progress, n int) int64 {
	done := DoneSet(p.Done, n)
	return DoneBytes(done, p.Size, max(p.RangeSize, 1)) + sumPartial(p.Partial)
}

func sumPartial(m map[int]int64) int64 {
	var s int64
	for _, b := range m {
		s += b
	}
	return s
}
