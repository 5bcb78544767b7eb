package activities

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"time"

	"github.com/kafkasync/kafkasync/internal/sftpdial"
)

// DisposeInput says what to do with a job's remote file once the job has ended.
type DisposeInput struct {
	Source     string
	RemotePath string
	// Action is delete or move; Dir the directory of a move.
	Action string
	Dir    string
	// Size and ModTime are what the job archived: a remote file that no longer has them is a newer
	// file, and is left alone.
	Size    int64
	ModTime time.Time
}

// DisposeResult says what became of the remote file.
type DisposeResult struct {
	// Outcome is deleted, moved or gone (an earlier attempt already dealt with it).
	Outcome string
	// To is where a moved file went.
	To string
}

// maxSuffix bounds the names a move tries before giving up.
const maxSuffix = 100

// Dispose deletes the job's remote file, or moves it to Dir under its own path (never over another
// file: a taken name gets a ".1", ".2"… suffix). A file that differs from the one archived is kept
// (final RemoteChanged); one no longer there was handled by an earlier attempt.
func (a *Transfer) Dispose(ctx context.Context, in DisposeInput) (DisposeResult, error) {
	src, err := a.source(in.Source)
	if err != nil {
		return DisposeResult{}, err
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, done, err := a.session(ctx, sctx, src, "")
	if err != nil {
		return DisposeResult{}, classify("dispose", err)
	}
	stop := abortOnEnd(sctx, c, src.Shared != nil)
	res, err := dispose(c, in)
	stop()
	done(err)
	return res, err
}

func dispose(c *sftpdial.Client, in DisposeInput) (DisposeResult, error) {
	fi, err := c.Stat(in.RemotePath)
	if notExist(err) {
		return DisposeResult{Outcome: "gone"}, nil
	}
	if err != nil {
		return DisposeResult{}, classify("stat "+in.RemotePath, err)
	}
	if fi.Size() != in.Size || !fi.ModTime().Equal(in.ModTime) {
		return DisposeResult{}, final(ErrTypeRemoteChanged, fmt.Sprintf("%s is now %d bytes modified %s, not the file archived (%d bytes modified %s): kept",
			in.RemotePath, fi.Size(), fi.ModTime().UTC().Format(time.RFC3339), in.Size, in.ModTime.UTC().Format(time.RFC3339)))
	}
	switch in.Action {
	case "delete":
		if err := c.Remove(in.RemotePath); err != nil {
			return DisposeResult{}, classify("delete "+in.RemotePath, err)
		}
		return DisposeResult{Outcome: "deleted"}, nil
	case "move":
		to, err := moveAside(c, in.RemotePath, MovedPath(in.Dir, in.RemotePath))
		if err != nil {
			return DisposeResult{}, err
		}
		return DisposeResult{Outcome: "moved", To: to}, nil
	}
	return DisposeResult{}, final("BadAction", fmt.Sprintf("action %q is not delete or move", in.Action))
}

// MovedPath is where a move to dir puts remotePath: under dir at its own path.
func MovedPath(dir, remotePath string) string { return path.Join(dir, remotePath) }

// moveAside renames from to want, or to want.1, want.2… when a name is taken. SFTP's rename fails
// when the target exists, so no file is ever replaced.
func moveAside(c *sftpdial.Client, from, want string) (string, error) {
	if err := c.MkdirAll(path.Dir(want)); err != nil {
		return "", classify("mkdir "+path.Dir(want), err)
	}
	for i := range maxSuffix {
		to := want
		if i > 0 {
			to = want + "." + strconv.Itoa(i)
		}
		if _, err := c.Lstat(to); err == nil {
			continue
		}
		err := c.Rename(from, to)
		if err == nil {
			return to, nil
		}
		if _, serr := c.Lstat(to); serr == nil {
			continue // taken meanwhile
		}
		return "", classify("move "+from+" to "+to, err)
	}
	return "", final("MoveTargetTaken", fmt.Sprintf("move %s: %s and %d suffixed names are taken", from, want, maxSuffix-1))
}
