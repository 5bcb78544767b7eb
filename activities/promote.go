package activities

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// PromoteInput moves a verified staging file to its place under completed/.
type PromoteInput struct {
	JobID string
	// Key is the S3 key (validated clean, no ".."); the file goes to completed/<job id>/<key>.
	Key  string
	Size int64
}

// PromoteResult says where the file is now, relative to completed/.
type PromoteResult struct {
	Path string
}

// CompletedPath is where a job's verified file waits for its upload, relative to completed/. The
// job's own folder keeps two jobs with one key from ever touching each other's file.
func CompletedPath(jobID, key string) string { return jobID + "/" + key }

// Promote syncs the staging file and renames it atomically into completed/<job id>/<key>,
// creating the subdirectories. Both ends are opened through their os.Root, so neither can leave
// its folder, and the rename is a renameat(2) between the two directory handles: staging and
// completed must be on one filesystem. A retry after a rename that already happened succeeds.
func (a *Transfer) Promote(ctx context.Context, in PromoteInput) (PromoteResult, error) {
	name, dest := StagingName(in.JobID), CompletedPath(in.JobID, in.Key)
	dir, base := path.Split(dest)
	dir = path.Clean(dir)
	if base == "" || base == "." || base == ".." {
		return PromoteResult{}, final("BadKey", "promote: unusable key "+in.Key)
	}
	f, err := a.Staging.OpenFile(name, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if fi, serr := a.Completed.Stat(dest); serr == nil && fi.Mode().IsRegular() && fi.Size() == in.Size {
			return PromoteResult{Path: dest}, nil // promoted by an earlier attempt
		}
		return PromoteResult{}, final(ErrTypeStagingMissing, "promote: staging file "+name+" is gone")
	}
	if err != nil {
		return PromoteResult{}, fmt.Errorf("promote open: %w", err)
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return PromoteResult{}, fmt.Errorf("promote sync: %w", err)
	}
	if err := a.Completed.MkdirAll(dir, 0o755); err != nil {
		return PromoteResult{}, fmt.Errorf("promote mkdir %s: %w", dir, err)
	}
	from, err := a.Staging.Open(".")
	if err != nil {
		return PromoteResult{}, err
	}
	defer from.Close()
	to, err := a.Completed.Open(dir)
	if err != nil {
		return PromoteResult{}, fmt.Errorf("promote open %s: %w", dir, err)
	}
	defer to.Close()
	if err := unix.Renameat(int(from.Fd()), name, int(to.Fd()), base); err != nil {
		if errors.Is(err, unix.EXDEV) {
			return PromoteResult{}, final("CrossDevice", "promote: staging and completed must be on the same filesystem")
		}
		return PromoteResult{}, fmt.Errorf("promote rename to %s: %w", dest, err)
	}
	if err := to.Sync(); err != nil {
		return PromoteResult{}, fmt.Errorf("promote sync dir: %w", err)
	}
	return PromoteResult{Path: dest}, nil
}
