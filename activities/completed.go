package activities

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"time"
)

// keptPrefix starts the name of the marker of a job whose upload was verified while its files are
// kept (transfer.keep_completed). Job ids never start with '.', so no job folder has such a name.
const keptPrefix = ".uploaded-"

// releaseCompleted gives up the local copy of a job whose object is verified: at once, or, with
// KeepCompleted, by leaving a marker that the sweeper finds once that time has passed.
func (a *Transfer) releaseCompleted(ctx context.Context, jobID string) {
	var err error
	if a.KeepCompleted > 0 {
		err = a.Completed.WriteFile(keptPrefix+jobID, nil, 0o644)
	} else {
		err = a.Completed.RemoveAll(jobID)
	}
	if err != nil {
		a.log(ctx, jobID).Warn("release the completed file", "err", err)
	}
}

// OrphanAge is how long a staging file may go untouched before the sweeper removes it: a download
// that stopped for good (its job dead-lettered after its retries) leaves it behind.
const OrphanAge = 7 * 24 * time.Hour

// Sweep removes the completed folders of jobs uploaded more than KeepCompleted ago and staging
// files untouched for OrphanAge. It returns how many jobs' files it removed. (A function, not a
// method: every exported method of Transfer is an activity.)
func Sweep(a *Transfer) (int, error) {
	n, err := a.sweepKept()
	if a.Staging == nil {
		return n, err
	}
	m, serr := a.sweepStaging()
	return n + m, errors.Join(err, serr)
}

func (a *Transfer) sweepKept() (int, error) {
	entries, err := fs.ReadDir(a.Completed.FS(), ".")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		id, ok := strings.CutPrefix(e.Name(), keptPrefix)
		if !ok || !olderThan(e, a.KeepCompleted) {
			continue
		}
		if err := a.Completed.RemoveAll(id); err != nil {
			return n, err
		}
		if err := a.Completed.Remove(e.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, err
		}
		n++
	}
	return n, nil
}

func (a *Transfer) sweepStaging() (int, error) {
	entries, err := fs.ReadDir(a.Staging.FS(), ".")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if !e.Type().IsRegular() || !olderThan(e, OrphanAge) {
			continue
		}
		if err := a.Staging.Remove(e.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return n, err
		}
		if strings.HasSuffix(e.Name(), ".part") {
			n++
		}
	}
	return n, nil
}

func olderThan(e fs.DirEntry, age time.Duration) bool {
	fi, err := e.Info()
	return err == nil && time.Since(fi.ModTime()) > age
}

// RunSweeper sweeps a's folders every interval until ctx ends.
func RunSweeper(ctx context.Context, a *Transfer, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := Sweep(a); err != nil {
				a.logger().Warn("sweep completed and staging", "err", err)
			} else if n > 0 {
				a.logger().Info("swept the files of finished jobs", "jobs", n)
			}
		}
	}
}
