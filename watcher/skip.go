package watcher

import (
	"log/slog"
	"sync"

	"github.com/kafkasync/kafkasync/internal/metrics"
)

// maxSkips bounds what skipLog remembers. Beyond it, it forgets everything, which only logs some
// skips again.
const maxSkips = 4096

// skipLog logs each skipped entry when it is first skipped for a reason, rather than at every
// listing; the metric counts every skip.
type skipLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	seen map[string]string // source NUL path → reason
}

func newSkipLog(log *slog.Logger) *skipLog {
	return &skipLog{log: log, seen: map[string]string{}}
}

func (s *skipLog) skip(source, path, reason string) {
	metrics.WatchSkipped.WithLabelValues(source).Inc()
	key := source + "\x00" + path
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[key] == reason {
		return
	}
	if len(s.seen) >= maxSkips {
		clear(s.seen)
	}
	s.seen[key] = reason
	s.log.Warn("watch: skipped", "source", source, "path", path, "reason", reason)
}
