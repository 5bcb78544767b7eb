// Package watcher lists the watched directories of the SFTP sources and announces each new or
// changed file as a job message on Kafka, once its size and mtime have not changed for min_age.
//
// What the watcher knows of each file is in the PostgreSQL table watch_files, shared by every
// replica: a restart or a second watcher finds a file already announced there, and the job id is
// derived from the file's source, path, size and mtime, so even a message sent again (a crash
// between Kafka's acknowledgement and the row's update) names the same job, which the bridge
// starts once. A replica lists a source only while it holds that source's PostgreSQL advisory
// lock, so replicas split the sources between them.
package watcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/metrics"
	"github.com/kafkasync/kafkasync/internal/sftpdial"
)

// ErrNothingToWatch means no source has a watch entry.
var ErrNothingToWatch = errors.New("no source has a watch entry: add [[sftp.watch]] or [[sources.<name>.watch]] with a dir")

// Options configures a Watcher.
type Options struct {
	Config config.Config
	// DB holds table watch_files (audit.OpenMigrated creates it).
	DB *pgxpool.Pool
	// DSN reaches the same database; each round opens its own connection there for the source's
	// lock.
	DSN string
	// Producer publishes the job messages; it must wait for the brokers' acknowledgement
	// (kafkaconn.NewProducer does).
	Producer sarama.SyncProducer
	Log      *slog.Logger
}

// Watcher lists the sources that have watch entries. It is safe for concurrent use.
type Watcher struct {
	db      *pgxpool.Pool
	dsn     string
	prod    sarama.SyncProducer
	policy  job.Policy
	log     *slog.Logger
	skips   *skipLog
	sources []*source
}

// source is one SFTP source with watch entries. mu is held by its round: one at a time in this
// process, whatever calls Run and Once.
type source struct {
	name   string
	dialer *sftpdial.Dialer
	watch  []config.Watch

	mu     sync.Mutex
	listed []int // what each entry matched at its last listing
}

// New checks every source with watch entries can be dialled (keys and host keys readable); it
// connects to nothing yet.
func New(o Options) (*Watcher, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{db: o.DB, dsn: o.DSN, prod: o.Producer, policy: o.Config.JobPolicy(), log: o.Log,
		skips: newSkipLog(o.Log)}
	for _, name := range o.Config.SourceNames() {
		s, _ := o.Config.Source(name)
		if len(s.Watch) == 0 {
			continue
		}
		d, err := sftpdial.New(s)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", name, err)
		}
		w.sources = append(w.sources, &source{name: name, dialer: d, watch: s.Watch, listed: make([]int, len(s.Watch))})
		// Counters that exist from the start show zero rather than nothing.
		metrics.WatchAnnounced.WithLabelValues(name)
		metrics.WatchSkipped.WithLabelValues(name)
	}
	if len(w.sources) == 0 {
		return nil, ErrNothingToWatch
	}
	return w, nil
}

// Sources names the sources the watcher lists.
func (w *Watcher) Sources() []string {
	var names []string
	for _, s := range w.sources {
		names = append(names, s.name)
	}
	return names
}

// Once lists every entry of every source one time, the sources at once. It returns the errors of
// the rounds that failed; a source whose lock another watcher holds is skipped without error.
func (w *Watcher) Once(ctx context.Context) error {
	errs := make([]error, len(w.sources))
	var wg sync.WaitGroup
	for i, s := range w.sources {
		wg.Go(func() { errs[i] = w.round(ctx, s, all(len(s.watch))) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Run lists each source's entries, each at its interval, until ctx ends. A failed round is logged
// and tried again at the entry's next interval.
func (w *Watcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range w.sources {
		wg.Go(func() { w.runSource(ctx, s) })
	}
	wg.Wait()
}

func (w *Watcher) runSource(ctx context.Context, s *source) {
	next := make([]time.Time, len(s.watch)) // zero: due at once
	for {
		now := time.Now()
		var due []int
		for i, e := range s.watch {
			if !now.Before(next[i]) {
				due = append(due, i)
				next[i] = now.Add(e.Interval.D())
			}
		}
		if len(due) > 0 {
			if err := w.round(ctx, s, due); err != nil && ctx.Err() == nil {
				w.log.Warn("watch: listing failed; trying again at the next interval", "source", s.name, "err", err)
			}
		}
		wake := next[0]
		for _, t := range next[1:] {
			if t.Before(wake) {
				wake = t
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(wake)):
		}
	}
}

func all(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}
