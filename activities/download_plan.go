package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.temporal.io/sdk/activity"
	"golang.org/x/sys/unix"

	"github.com/kafkasync/kafkasync/internal/progress"
)

// checkSize refuses a file larger than MaxFileSize before anything is planned for it.
func (a *Transfer) checkSize(remotePath string, size int64) error {
	if a.MaxFileSize > 0 && size > a.MaxFileSize {
		return final(ErrTypeTooLarge, fmt.Sprintf("%s: %d bytes, larger than transfer.max_file_size (%d)", remotePath, size, a.MaxFileSize))
	}
	return nil
}

// plan picks what an earlier attempt left on this host's disk: the journal next to the staging
// file (the most recent), else the last heartbeat. Either counts only while the staging file still
// has exactly Size bytes, and only once seeRemote finds the remote file as it was.
func (d *download) plan(ctx context.Context) {
	d.done, d.partial = NewRangeSet(nil, d.n), map[int]int64{}
	fi, err := d.a.Staging.Stat(d.name)
	if err != nil || fi.Size() != d.in.Size {
		return
	}
	if j, ok := d.a.readJournal(d.name); ok {
		// Same boot: the page cache holds every byte the killed worker wrote. After a reboot only
		// what was synced counts.
		p := j.Synced
		if j.Boot != "" && j.Boot == bootID() {
			p = j.Written
		}
		if d.fits(p) {
			d.resume = p
		}
	}
	var hb progress.Progress
	if activity.IsActivity(ctx) && activity.HasHeartbeatDetails(ctx) && activity.GetHeartbeatDetails(ctx, &hb) == nil &&
		d.fits(hb) && progressBytes(hb) > progressBytes(d.resume) {
		d.resume = hb
	}
	if d.fits(d.resume) {
		d.done = NewRangeSet(d.resume.Done, d.n)
		for i, b := range d.resume.Partial {
			if off, end := RangeBounds(i, d.in.Size, d.in.RangeSize); i >= 0 && i < d.n && !d.done.Has(i) && b > 0 && b < end-off {
				d.partial[i] = b
			}
		}
	}
}

// fits reports whether p describes this file split this way.
func (d *download) fits(p progress.Progress) bool {
	return p.Size == d.in.Size && p.RangeSize == d.in.RangeSize
}

// seeRemote checks the remote file as the attempt opened it: another size fails the job, another
// modification time than the resumed progress's discards that progress.
func (d *download) seeRemote(ctx context.Context, fi os.FileInfo) error {
	if fi.Size() != d.in.Size {
		return final(ErrTypeRemoteChanged, fmt.Sprintf("%s: size now %d, was %d", d.in.RemotePath, fi.Size(), d.in.Size))
	}
	d.remote = remoteState{Size: fi.Size(), ModTime: fi.ModTime().UTC()}
	if d.done.Len() == 0 && len(d.partial) == 0 {
		return nil
	}
	if !d.resume.ModTime.Equal(d.remote.ModTime) {
		d.a.log(ctx, d.in.JobID).Warn("remote file changed since the last attempt: starting over",
			"was_mtime", d.resume.ModTime, "mtime", d.remote.ModTime)
		d.done, d.partial = NewRangeSet(nil, d.n), map[int]int64{}
		return nil
	}
	d.resumed = d.done.Bytes(d.in.Size, d.in.RangeSize) + sumPartial(d.partial)
	d.a.log(ctx, d.in.JobID).Info("download resumes", "resumed_bytes", d.resumed, "size", d.in.Size)
	return nil
}

// changed compares the remote file at the end of a connection's work with what the attempt began
// with: bytes read from a file being rewritten are not a file.
func (d *download) changed(fi os.FileInfo) error {
	if fi.Size() == d.remote.Size && fi.ModTime().UTC().Equal(d.remote.ModTime) {
		return nil
	}
	return retryable(ErrTypeRemoteChanged, fmt.Sprintf("%s changed during the download: %d bytes modified %s, was %d bytes modified %s",
		d.in.RemotePath, fi.Size(), fi.ModTime().UTC().Format(time.RFC3339), d.remote.Size, d.remote.ModTime.Format(time.RFC3339)))
}

func (d *download) wantConns() int {
	if d.in.Connections > 0 {
		return d.in.Connections
	}
	return max(d.a.Connections, 1)
}

// openStaging opens the staging file: truncated and its blocks reserved when nothing is resumed,
// so a full disk fails here and not after minutes of downloading.
func (d *download) openStaging(ctx context.Context) error {
	fresh := d.resumed == 0
	flags := os.O_RDWR | os.O_CREATE
	if fresh {
		flags |= os.O_TRUNC
		d.a.removeJournal(d.name)
	}
	f, err := d.a.Staging.OpenFile(d.name, flags, 0o644)
	if err != nil {
		return fmt.Errorf("open staging %s: %w", d.name, err)
	}
	d.f = f
	if !fresh || d.in.Size == 0 {
		return nil
	}
	if err := f.Truncate(d.in.Size); err != nil {
		return d.a.stagingFailed(ctx, d.in, f, d.name, err)
	}
	// Filesystems without fallocate are fine: a full disk then fails the first write instead.
	if err := unix.Fallocate(int(f.Fd()), 0, 0, d.in.Size); errors.Is(err, unix.ENOSPC) {
		return d.a.stagingFailed(ctx, d.in, f, d.name, err)
	}
	return nil
}

// progressBytes is how many bytes p says are on disk.
func progressBytes(p progress.Progress) int64 {
	if p.RangeSize <= 0 {
		return 0
	}
	return NewRangeSet(p.Done, NumRanges(p.Size, p.RangeSize)).Bytes(p.Size, p.RangeSize) + sumPartial(p.Partial)
}

func sumPartial(m map[int]int64) int64 {
	var s int64
	for _, b := range m {
		s += b
	}
	return s
}
