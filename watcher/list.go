package watcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"time"

	"github.com/pkg/sftp"
)

// batchSize is how many files go to PostgreSQL and to Kafka at once.
const batchSize = 500

// file is what a listing saw of one file.
type file struct {
	path  string
	size  int64
	mtime time.Time
}

// entry lists the entry's directory, and below it when recursive, depth first: the walk holds one
// directory's listing at a time and the paths of the directories still to list.
func (l *lister) entry(ctx context.Context) error {
	dirs := []string{l.e.Dir}
	for len(dirs) > 0 {
		dir := dirs[len(dirs)-1]
		dirs = dirs[:len(dirs)-1]
		sub, err := l.dir(ctx, dir)
		if err != nil {
			return err
		}
		dirs = append(dirs, sub...)
	}
	return nil
}

// dir lists one directory, settles its matching files batch by batch and returns its
// subdirectories. pkg/sftp's client reads a directory whole (it has no call that returns one page
// of READDIR replies), so a huge directory is in memory once as FileInfos; each is let go as soon
// as it is read, and what is kept per file is a batch entry.
func (l *lister) dir(ctx context.Context, dir string) ([]string, error) {
	fis, err := l.c.ReadDirContext(ctx, dir)
	if cerr := ctx.Err(); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		if !refused(err) {
			return nil, fmt.Errorf("list %s: %w", dir, err)
		}
		l.w.skips.skip(l.src.name, dir, "cannot list the directory: "+err.Error())
		return nil, nil
	}
	var subdirs []string
	batch := make([]file, 0, min(len(fis), batchSize))
	for i, fi := range fis {
		fis[i] = nil
		p := path.Join(dir, fi.Name())
		if fi.IsDir() {
			if l.e.Recursive {
				subdirs = append(subdirs, p)
			}
			continue
		}
		if ok, _ := path.Match(l.e.Pattern, fi.Name()); l.e.Pattern != "" && !ok {
			continue
		}
		f, err := l.regular(p, fi)
		if err != nil {
			if !refused(err) {
				return nil, fmt.Errorf("stat %s: %w", p, err)
			}
			l.w.skips.skip(l.src.name, p, err.Error())
			continue
		}
		l.matched++
		if batch = append(batch, f); len(batch) == batchSize {
			if err := l.settle(ctx, batch); err != nil {
				return nil, err
			}
			batch = batch[:0]
		}
	}
	return subdirs, l.settle(ctx, batch)
}

// regular returns the file an entry names: the entry itself, or the target of a symbolic link.
// Links to directories are not followed, so no link can make the walk loop.
func (l *lister) regular(p string, fi os.FileInfo) (file, error) {
	if fi.Mode()&os.ModeSymlink != 0 {
		t, err := l.c.Stat(p)
		if err != nil {
			return file{}, fmt.Errorf("cannot stat the link's target: %w", err)
		}
		if t.IsDir() {
			return file{}, skipReason("a link to a directory (not followed)")
		}
		fi = t
	}
	if !fi.Mode().IsRegular() {
		return file{}, skipReason(fmt.Sprintf("not a regular file (mode %s)", fi.Mode()))
	}
	return file{path: p, size: fi.Size(), mtime: fi.ModTime().UTC()}, nil
}

// skipReason is why an entry is not a file to announce.
type skipReason string

func (r skipReason) Error() string { return string(r) }

// refused tells the server's answer about one path (no such file, permission denied, any status it
// reports) from a failure of the connection, after which the round stops.
func refused(err error) bool {
	var r skipReason
	var st *sftp.StatusError
	return errors.As(err, &r) || errors.As(err, &st) || errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission)
}
