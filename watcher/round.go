package watcher

import (
	"context"
	"fmt"
	"time"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/metrics"
	"github.com/kafkasync/kafkasync/internal/sftpdial"
)

// roundTimeout bounds one round of a source, so a server that stops answering cannot hold the
// source's lock for ever; at the pace of the tests it is millions of files.
const roundTimeout = 10 * time.Minute

// round lists the entries of s numbered in entries, holding the source's lock the whole time; when
// another watcher holds it, the round does nothing: that watcher lists the source.
func (w *Watcher) round(ctx context.Context, s *source, entries []int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	start := time.Now()
	lock, err := lockSource(w.dsn, s.name, w.log)
	if err != nil {
		metrics.WatchRounds.WithLabelValues(s.name, "error").Inc()
		return fmt.Errorf("source %s: %w", s.name, err)
	}
	if lock == nil {
		metrics.WatchRounds.WithLabelValues(s.name, "locked").Inc()
		w.log.Debug("watch: another watcher is listing the source", "source", s.name)
		return nil
	}
	defer lock.release()
	announced, err := w.listEntries(ctx, s, lock, entries)
	if err != nil {
		metrics.WatchRounds.WithLabelValues(s.name, "error").Inc()
		return fmt.Errorf("source %s: %w", s.name, err)
	}
	total := 0
	for _, n := range s.listed {
		total += n
	}
	metrics.WatchListed.WithLabelValues(s.name).Set(float64(total))
	metrics.WatchListSeconds.WithLabelValues(s.name).Observe(time.Since(start).Seconds())
	metrics.WatchRounds.WithLabelValues(s.name, "ok").Inc()
	lvl := w.log.Debug
	if announced > 0 {
		lvl = w.log.Info
	}
	lvl("watch: listed", "source", s.name, "files", total, "announced", announced, "took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// listEntries dials the source and lists the entries; it returns how many files it announced.
func (w *Watcher) listEntries(ctx context.Context, s *source, lock *sourceLock, entries []int) (int, error) {
	c, err := s.dialer.DialRetry(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	// pkg/sftp's Stat takes no context: a connection dropped at once ends whatever waits on it.
	defer context.AfterFunc(ctx, c.Abort)()
	announced := 0
	for _, i := range entries {
		l := &lister{w: w, src: s, c: c, lock: lock, e: s.watch[i]}
		err := l.entry(ctx)
		announced += l.announced
		if err != nil {
			return announced, fmt.Errorf("watch %s: %w", l.e.Dir, err)
		}
		s.listed[i] = l.matched
	}
	return announced, nil
}

// lister lists one watch entry of a source over one SFTP connection.
type lister struct {
	w    *Watcher
	src  *source
	c    *sftpdial.Client
	lock *sourceLock
	e    config.Watch

	matched, announced int
}
