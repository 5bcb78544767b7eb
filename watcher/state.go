package watcher

import (
	"context"
	"fmt"
	"time"
)

// The rows of a batch's paths: whether each is announced, and whether its size and mtime have been
// what they are for min_age ($3, seconds); PostgreSQL's clock decides, the same for every replica.
// A join, not path = ANY($2): the prepared statement's generic plan would test every row of the
// source against the whole array.
const qLook = `SELECT w.path, w.size, w.mtime, w.announced_at IS NOT NULL, w.stable_since <= now() - make_interval(secs => $3)
	FROM unnest($2::text[]) AS l(path) JOIN watch_files w ON w.source = $1 AND w.path = l.path`

// A file first seen, or seen with another size or mtime, starts over: stable from now, not
// announced.
const qSeen = `INSERT INTO watch_files AS w (source, path, size, mtime)
	SELECT $1, l.path, l.size, l.mtime FROM unnest($2::text[], $3::bigint[], $4::timestamptz[]) AS l(path, size, mtime)
	ON CONFLICT (source, path) DO UPDATE
	SET size = excluded.size, mtime = excluded.mtime, stable_since = now(), announced_at = NULL, job_id = NULL`

// The files Kafka acknowledged, unless they changed meanwhile.
const qAnnounced = `UPDATE watch_files AS w SET announced_at = now(), job_id = a.job_id
	FROM unnest($2::text[], $3::bigint[], $4::timestamptz[], $5::text[]) AS a(path, size, mtime, job_id)
	WHERE w.source = $1 AND w.path = a.path AND w.size = a.size AND w.mtime = a.mtime`

// settle records what the listing saw of batch and announces the files that are due: unchanged
// for min_age and not announced yet.
func (l *lister) settle(ctx context.Context, batch []file) error {
	if len(batch) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	due, changed, err := l.look(ctx, batch)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		paths, sizes, mtimes := columns(changed)
		if _, err := l.w.db.Exec(ctx, qSeen, l.src.name, paths, sizes, mtimes); err != nil {
			return fmt.Errorf("record the listing: %w", err)
		}
	}
	if len(due) == 0 {
		return nil
	}
	// Another watcher may take the source once this one's lock connection is gone.
	if err := l.lock.held(); err != nil {
		return err
	}
	n, err := l.w.announce(ctx, l.src.name, l.e.Topic, due)
	l.announced += n
	return err
}

// row is what watch_files holds of a path.
type row struct {
	size              int64
	mtime             time.Time
	announced, stable bool
}

// look splits batch into the files due for announcing and those new or changed since the last
// listing.
func (l *lister) look(ctx context.Context, batch []file) (due, changed []file, err error) {
	paths := make([]string, len(batch))
	for i, f := range batch {
		paths[i] = f.path
	}
	rows, err := l.w.db.Query(ctx, qLook, l.src.name, paths, l.e.MinAge.D().Seconds())
	if err != nil {
		return nil, nil, fmt.Errorf("read the watch state: %w", err)
	}
	known := make(map[string]row, len(batch))
	for rows.Next() {
		var p string
		var r row
		if err := rows.Scan(&p, &r.size, &r.mtime, &r.announced, &r.stable); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("read the watch state: %w", err)
		}
		known[p] = r
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read the watch state: %w", err)
	}
	for _, f := range batch {
		r, ok := known[f.path]
		switch {
		case !ok || r.size != f.size || !r.mtime.Equal(f.mtime):
			changed = append(changed, f)
		case !r.announced && r.stable:
			due = append(due, f)
		}
	}
	return due, changed, nil
}

func columns(files []file) ([]string, []int64, []time.Time) {
	paths, sizes, mtimes := make([]string, len(files)), make([]int64, len(files)), make([]time.Time, len(files))
	for i, f := range files {
		paths[i], sizes[i], mtimes[i] = f.path, f.size, f.mtime
	}
	return paths, sizes, mtimes
}
