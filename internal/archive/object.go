package archive

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/s3client"
)

// ErrMD5Mismatch: the bytes read do not hash to the MD5 expected of them.
var ErrMD5Mismatch = errors.New("the object's bytes do not match its MD5")

// Info describes an opened object.
type Info struct {
	Bucket       string
	Key          string
	VersionID    string
	Size         int64
	LastModified time.Time
	ETag         string
	// MD5 is the object's md5 metadata, as the upload set it ("" when it has none).
	MD5 string
}

// Open opens an object (version "": the current one) for reading; ErrNotFound when there is none.
func Open(ctx context.Context, c *s3.Client, bucket, key, version string) (io.ReadCloser, Info, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	if version != "" {
		in.VersionId = aws.String(version)
	}
	out, err := c.GetObject(ctx, in)
	if isNotFound(err) {
		return nil, Info{}, ErrNotFound
	}
	if err != nil {
		return nil, Info{}, fmt.Errorf("get s3://%s/%s: %w", bucket, key, err)
	}
	return out.Body, Info{Bucket: bucket, Key: key, VersionID: aws.ToString(out.VersionId), Size: aws.ToInt64(out.ContentLength),
		LastModified: aws.ToTime(out.LastModified), ETag: strings.Trim(aws.ToString(out.ETag), `"`), MD5: out.Metadata[s3client.MetaMD5]}, nil
}

// Stat reads an object's Info without its bytes; ErrNotFound when there is none.
func Stat(ctx context.Context, c *s3.Client, bucket, key, version string) (Info, error) {
	in := &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	if version != "" {
		in.VersionId = aws.String(version)
	}
	out, err := c.HeadObject(ctx, in)
	if isNotFound(err) {
		return Info{}, ErrNotFound
	}
	if err != nil {
		return Info{}, fmt.Errorf("head s3://%s/%s: %w", bucket, key, err)
	}
	return Info{Bucket: bucket, Key: key, VersionID: aws.ToString(out.VersionId), Size: aws.ToInt64(out.ContentLength),
		LastModified: aws.ToTime(out.LastModified), ETag: strings.Trim(aws.ToString(out.ETag), `"`), MD5: out.Metadata[s3client.MetaMD5]}, nil
}

// ExpectedMD5 is what an object's bytes must hash to: its md5 metadata, else its job's MD5 ("":
// nothing to check against).
func ExpectedMD5(ctx context.Context, store Store, info Info) (string, error) {
	if info.MD5 != "" {
		return info.MD5, nil
	}
	jobs, err := store.ArchivedJobs(ctx, info.Bucket, []string{info.Key})
	if err != nil {
		return "", err
	}
	return deref(jobs[info.Key].MD5), nil
}

// Presign returns a URL that GETs the object without credentials until ttl has passed.
func Presign(ctx context.Context, c *s3.Client, bucket, key, version string, ttl time.Duration) (string, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	if version != "" {
		in.VersionId = aws.String(version)
	}
	req, err := s3.NewPresignClient(c).PresignGetObject(ctx, in, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("presign s3://%s/%s: %w", bucket, key, err)
	}
	return req.URL, nil
}

// Verifier hashes what is read through it.
type Verifier struct {
	r    io.Reader
	h    hash.Hash
	want string
	n    int64
	eof  bool
}

// Verify reads r, computing the MD5 of the bytes; want is the MD5 expected ("": none).
func Verify(r io.Reader, want string) *Verifier {
	return &Verifier{r: r, h: md5.New(), want: strings.ToLower(want)}
}

func (v *Verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		v.eof = true
	}
	return n, err
}

// Sum is the MD5 (hex) of the bytes read so far; N their count.
func (v *Verifier) Sum() string { return hex.EncodeToString(v.h.Sum(nil)) }
func (v *Verifier) N() int64    { return v.n }

// Check reports, once the reader is read to its end, whether the bytes matched: nil when they did
// or nothing was expected, ErrMD5Mismatch when not, an error too when the end was not reached.
func (v *Verifier) Check() error {
	switch {
	case !v.eof:
		return fmt.Errorf("read %d bytes, not to the end", v.n)
	case v.want != "" && v.Sum() != v.want:
		return fmt.Errorf("%w: read %d bytes with MD5 %s, expected %s", ErrMD5Mismatch, v.n, v.Sum(), v.want)
	}
	return nil
}

// CopyVerified copies src to dst, holding back the last hold bytes until the end is reached and
// the MD5 checked: when it does not match (or reading fails) dst never gets them, so a receiver
// that knows the length, or waits for the end of a chunked body, sees a broken transfer rather
// than a complete one. It returns the MD5 of the bytes read.
func CopyVerified(dst io.Writer, src io.Reader, want string, hold int) (string, error) {
	v := Verify(src, want)
	buf := make([]byte, 2*max(hold, 32<<10))
	pending := 0 // bytes of buf not yet written
	for {
		n, err := v.Read(buf[pending:])
		pending += n
		if err != nil && err != io.EOF {
			return v.Sum(), fmt.Errorf("read: %w", err)
		}
		if err == io.EOF {
			break
		}
		if out := pending - hold; out > 0 {
			if _, werr := dst.Write(buf[:out]); werr != nil {
				return v.Sum(), werr
			}
			pending = copy(buf, buf[out:pending])
		}
	}
	if err := v.Check(); err != nil {
		return v.Sum(), err
	}
	_, err := dst.Write(buf[:pending])
	return v.Sum(), err
}

// Delete deletes an object (version "": the current one; on a versioned bucket that leaves a
// delete marker, whose version S3 answers with) and records the deletion with its job and actor.
// ErrNotFound when there is no such object.
func Delete(ctx context.Context, store Store, c *s3.Client, bucket, key, version, actor string) (audit.ObjectDeletion, error) {
	del := &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	if version != "" {
		del.VersionId = aws.String(version)
	}
	// S3 answers a delete of a missing key with success: look first, so a typo is not recorded.
	info, err := Stat(ctx, c, bucket, key, version)
	if err != nil {
		return audit.ObjectDeletion{}, err
	}
	jobs, err := store.ArchivedJobs(ctx, bucket, []string{key})
	if err != nil {
		return audit.ObjectDeletion{}, err
	}
	out, err := c.DeleteObject(ctx, del)
	if err != nil {
		return audit.ObjectDeletion{}, fmt.Errorf("delete s3://%s/%s: %w", bucket, key, err)
	}
	d := audit.ObjectDeletion{Bucket: bucket, Key: key, VersionID: nonEmpty(version), Actor: actor, DeletedAt: time.Now().UTC().Truncate(time.Microsecond),
		MD5: nonEmpty(info.MD5)}
	if d.VersionID == nil {
		d.VersionID = nonEmpty(aws.ToString(out.VersionId))
	}
	if j, ok := jobs[key]; ok {
		d.JobID = &j.JobID
	}
	// The object is gone: recording must not be cut short by a client that went away meanwhile.
	if err := store.RecordObjectDeletion(context.WithoutCancel(ctx), d); err != nil {
		return d, err
	}
	return d, nil
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
