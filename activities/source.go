package activities

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"github.com/kafkasync/kafkasync/internal/hostlimit"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/sftpdial"
)

// ErrTypeUnknownSource: a job names a source this worker has no configuration for.
const ErrTypeUnknownSource = "UnknownSource" // final

// Source is what the activities need of one SFTP source: how to connect, the connections its
// stats and small files share, the slots of its limits and its bandwidth cap.
type Source struct {
	Name string
	SFTP *sftpdial.Dialer
	// Shared, when set, holds a few connections that stats and small files share; nil: each opens
	// its own.
	Shared *sftpdial.Pool
	// Limits holds the slots of the source's limits, shared by all workers; nil: no limits.
	Limits *hostlimit.Limiter
	// Rate caps the bytes per second this worker reads from the source; nil: no cap.
	Rate *rate.Limiter
}

// NewRate returns the token bucket of a bandwidth cap (nil for 0): its burst an eighth of a
// second's bytes (32 KiB to 1 MiB), so reads are paced finely, and empty, so a cap caps from the
// first byte.
func NewRate(bytesPerSec int64) *rate.Limiter {
	if bytesPerSec <= 0 {
		return nil
	}
	burst := int(min(max(bytesPerSec/8, 32<<10), 1<<20))
	l := rate.NewLimiter(rate.Limit(bytesPerSec), burst)
	l.AllowN(time.Now(), burst)
	return l
}

// wait takes n bytes of the source's bandwidth, in pieces no larger than the burst.
func (s *Source) wait(ctx context.Context, n int) error {
	if s.Rate == nil {
		return nil
	}
	for n > 0 {
		k := min(n, s.Rate.Burst())
		if err := s.Rate.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// source returns the named source ("" is default); a name the worker does not know is final.
func (a *Transfer) source(name string) (*Source, error) {
	name = job.SourceName(name)
	if s, ok := a.Sources[name]; ok {
		return s, nil
	}
	return nil, final(ErrTypeUnknownSource, fmt.Sprintf("source %q is not configured on worker %s", name, a.HostID))
}
