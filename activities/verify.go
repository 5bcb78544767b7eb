package activities

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/kafkasync/kafkasync/internal/metrics"
)

// VerifyInput names the staging file and the checksum it must have.
type VerifyInput struct {
	JobID string
	// MD5 is the expected lowercase hex digest, or "" to only compute it.
	MD5  string
	Size int64
}

// VerifyResult carries the computed digest.
type VerifyResult struct {
	MD5 string
}

// Verify computes the MD5 of the staging file. On a mismatch it deletes the file, so the next
// download starts clean, and fails with ChecksumMismatch (non-retryable: the workflow decides
// whether to download again).
func (a *Transfer) Verify(ctx context.Context, in VerifyInput) (_ VerifyResult, err error) {
	defer func(start time.Time) { metrics.Observe("verify", start, err) }(time.Now())
	name := StagingName(in.JobID)
	f, err := a.Staging.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return VerifyResult{}, final(ErrTypeStagingMissing, "verify: staging file "+name+" is gone")
	}
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify open: %w", err)
	}
	defer f.Close()
	h := md5.New()
	r := &countReader{r: f}
	t := time.NewTicker(a.heartbeatEvery())
	defer t.Stop()
	buf := make([]byte, min(1<<20, max(in.Size+1, 1))) // one read past the end finds EOF
	for {
		n, err := r.Read(buf)
		h.Write(buf[:n])
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return VerifyResult{}, fmt.Errorf("verify read: %w", err)
		}
		select {
		case <-t.C:
			heartbeat(ctx, r.n)
		case <-ctx.Done():
			return VerifyResult{}, ctx.Err()
		default:
		}
	}
	if r.n != in.Size {
		return VerifyResult{}, fmt.Errorf("verify: staging has %d bytes, expected %d", r.n, in.Size)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if in.MD5 != "" && sum != in.MD5 {
		f.Close()
		if err := a.Staging.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			a.log(ctx, in.JobID).Warn("remove staging after mismatch", "err", err)
		}
		return VerifyResult{MD5: sum}, final(ErrTypeChecksumMismatch, fmt.Sprintf("md5 %s, job says %s", sum, in.MD5))
	}
	return VerifyResult{MD5: sum}, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	metrics.Bytes.WithLabelValues("verify").Add(float64(n))
	return n, err
}
