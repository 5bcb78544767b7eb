package activities

import (
	"cmp"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/kafkasync/kafkasync/internal/metrics"
	"github.com/kafkasync/kafkasync/internal/s3client"
)

// UploadInput names the promoted file and its object key.
type UploadInput struct {
	JobID string
	// Bucket receives the object ("": the worker's s3.bucket).
	Bucket string
	Key    string
	// MD5 is what Verify computed for this job: the bytes read for the upload must have it.
	MD5  string
	Size int64
}

// UploadResult says where the object is and what a HEAD of it found.
type UploadResult struct {
	Bucket string
	Key    string
	// Skipped is true when the object already had this MD5 and size.
	Skipped bool
	Seconds float64
	// ObjectSize, ObjectMD5 (the md5 metadata) and ETag are what the server holds after the upload.
	ObjectSize int64
	ObjectMD5  string
	ETag       string
	// VersionID is the object's version in a versioned bucket, else "".
	VersionID string
}

// Upload sends completed/<job id>/<key> to the bucket, with the MD5 as object metadata (see upload:
// one PUT below the multipart threshold, parts above it). The server refuses a body corrupted on
// the way: a single PUT carries the verified MD5 as Content-MD5, each part a CRC32 computed by the
// SDK. A file whose MD5 is not the one Verify computed for this job is never stored (parts are
// hashed as they are read). A single PUT's response (its ETag, when an MD5, must be the job's), or
// after a multipart upload a HEAD, says what the server stored. An object already there with the
// same MD5 and size is left alone, so retries and re-runs are idempotent. Once the object is
// verified the local copy is released (see releaseCompleted).
func (a *Transfer) Upload(ctx context.Context, in UploadInput) (UploadResult, error) {
	name := CompletedPath(in.JobID, in.Key)
	res, err := a.upload(ctx, in, func() (io.ReadSeekCloser, error) {
		f, err := a.Completed.Open(name)
		if err != nil {
			return nil, fmt.Errorf("upload open %s: %w", name, err)
		}
		return f, nil
	})
	if err != nil {
		return res, err
	}
	a.releaseCompleted(ctx, in.JobID)
	return res, nil
}

// upload puts the bytes open returns, unless the object is already there with this MD5 and size,
// and checks what the server then holds. Below the multipart threshold that is one conditional PUT
// (If-None-Match: *), checked by its response: only when the key exists does a HEAD follow, to skip
// an object already there or to replace another. A multipart upload asks first with a HEAD, so a
// retry never sends gigabytes again, and is checked by a HEAD after.
func (a *Transfer) upload(ctx context.Context, in UploadInput, open func() (io.ReadSeekCloser, error)) (_ UploadResult, err error) {
	start := time.Now()
	defer func() { metrics.Observe("upload", start, err) }()
	in.Bucket = cmp.Or(in.Bucket, a.Bucket)
	res := UploadResult{Bucket: in.Bucket, Key: in.Key}
	if in.Size < a.multipartThreshold() {
		err = a.putOne(ctx, in, open, &res)
	} else {
		err = a.putParts(ctx, in, open, &res)
	}
	res.Seconds = time.Since(start).Seconds()
	return res, err
}

// putOne uploads a file below the multipart threshold in one PUT that only creates the key; when
// the key exists, the object is left as it is if it holds this MD5 and size, else replaced. A
// local copy already released (a retry after the upload was verified) is found by the same HEAD.
func (a *Transfer) putOne(ctx context.Context, in UploadInput, open func() (io.ReadSeekCloser, error), res *UploadResult) error {
	out, err := a.putObject(ctx, in, open, true)
	// 412: the key exists; 501: the server does not take the condition. A server may also answer
	// a refused condition before it reads the body and drop the connection: any failure that is
	// not the server's own answer is asked about with a HEAD too.
	code := s3Code(err)
	if gone := errors.Is(err, fs.ErrNotExist); gone || code == "PreconditionFailed" || code == "NotImplemented" || err != nil && code == "" {
		if done, herr := a.alreadyThere(ctx, in, res); herr != nil || done {
			return herr
		}
		if gone {
			return err
		}
		out, err = a.putObject(ctx, in, open, false)
	}
	if err != nil {
		return err
	}
	return checkPut(in, aws.ToString(out.ETag), aws.ToString(out.VersionId), res)
}

// putObject sends the file in one PUT with its verified MD5 as Content-MD5, so the server refuses
// any body that is not this job's bytes (BadDigest), and as metadata. No other checksum: it would
// check the same bytes again, on both ends, and the server would store it beside the MD5. onlyNew
// adds If-None-Match: * and makes one attempt: a refusal leads to a HEAD, not to sending the body
// again.
func (a *Transfer) putObject(ctx context.Context, in UploadInput, open func() (io.ReadSeekCloser, error), onlyNew bool) (*s3.PutObjectOutput, error) {
	raw, err := hex.DecodeString(in.MD5)
	if err != nil || len(raw) != md5.Size {
		return nil, final(ErrTypeChecksumMismatch, fmt.Sprintf("upload of %s: %q is not an md5", in.Key, in.MD5))
	}
	f, err := open()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer a.heartbeatWhile(ctx, func() any { return in.Size })()
	put := &s3.PutObjectInput{Bucket: aws.String(in.Bucket), Key: aws.String(in.Key), Body: f, ContentLength: aws.Int64(in.Size),
		ContentMD5: aws.String(base64.StdEncoding.EncodeToString(raw)), Metadata: map[string]string{s3client.MetaMD5: in.MD5}}
	// The signed Content-MD5 binds the body to the signature, so the body is not hashed a second
	// time for SigV4 (over plain HTTP the SDK would, and the server check that hash too).
	opts := []func(*s3.Options){s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)}
	if onlyNew {
		put.IfNoneMatch = aws.String("*")
		opts = append(opts, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	}
	out, err := a.S3.PutObject(ctx, put, opts...)
	if s3Code(err) == "BadDigest" {
		return nil, final(ErrTypeChecksumMismatch, fmt.Sprintf("the server refused the bytes read for the upload of %s: their md5 is not the verified %s", in.Key, in.MD5))
	}
	if err != nil {
		return nil, fmt.Errorf("upload s3://%s/%s: %w", in.Bucket, in.Key, err)
	}
	metrics.Bytes.WithLabelValues("upload").Add(float64(in.Size))
	return out, nil
}

// putParts uploads a file at or above the multipart threshold, unless its object is already there.
func (a *Transfer) putParts(ctx context.Context, in UploadInput, open func() (io.ReadSeekCloser, error), res *UploadResult) error {
	if done, err := a.alreadyThere(ctx, in, res); err != nil || done {
		return err
	}
	if err := a.putMultipart(ctx, in, open); err != nil {
		return err
	}
	return a.checkObject(ctx, in, res)
}

// alreadyThere reports, after a HEAD, an object that already holds the upload's bytes (its MD5 and
// size): the upload is then skipped, with res taken from the HEAD.
func (a *Transfer) alreadyThere(ctx context.Context, in UploadInput, res *UploadResult) (bool, error) {
	head, err := a.head(ctx, in.Bucket, in.Key)
	if err != nil || head == nil || head.Metadata[s3client.MetaMD5] != in.MD5 || aws.ToInt64(head.ContentLength) != in.Size {
		return false, err
	}
	res.Skipped = true
	res.fromHead(head)
	return true, nil
}

// s3Code is the error code of the server's answer in err, or "" when err is no such answer (nil,
// or a request that got none).
func s3Code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// head returns the object's metadata, or nil when there is no such object.
func (a *Transfer) head(ctx context.Context, bucket, key string) (*s3.HeadObjectOutput, error) {
	head, err := a.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("head s3://%s/%s: %w", bucket, key, err)
	}
	return head, nil
}

// checkObject compares what the server holds after a multipart upload with what was verified.
func (a *Transfer) checkObject(ctx context.Context, in UploadInput, res *UploadResult) error {
	head, err := a.head(ctx, in.Bucket, in.Key)
	if err != nil {
		return err
	}
	if head == nil {
		return fmt.Errorf("s3://%s/%s: no object after the upload", in.Bucket, in.Key)
	}
	res.fromHead(head)
	if res.ObjectSize != in.Size || res.ObjectMD5 != in.MD5 {
		// Retryable: a concurrent job with the same key may have replaced it; the retry uploads again.
		return fmt.Errorf("s3://%s/%s after the upload: %d bytes, md5 %q; want %d bytes, md5 %s",
			in.Bucket, in.Key, res.ObjectSize, res.ObjectMD5, in.Size, in.MD5)
	}
	return nil
}

func (r *UploadResult) fromHead(head *s3.HeadObjectOutput) {
	r.ObjectSize, r.ObjectMD5, r.ETag = aws.ToInt64(head.ContentLength), head.Metadata[s3client.MetaMD5], aws.ToString(head.ETag)
	r.VersionID = aws.ToString(head.VersionId)
}

// checkPut takes what a single PUT stored from its response: the object it wrote holds this
// job's bytes and metadata together, whatever another job with the key does after it. Its ETag,
// when it is an MD5 (no server-side encryption with KMS), must be the job's.
func checkPut(in UploadInput, etag, versionID string, res *UploadResult) error {
	res.ObjectSize, res.ObjectMD5, res.ETag, res.VersionID = in.Size, in.MD5, etag, versionID
	if sum := strings.Trim(etag, `"`); isMD5(sum) && sum != in.MD5 {
		return fmt.Errorf("s3://%s/%s after the upload: the server stored bytes with md5 %s (its ETag); want %s", in.Bucket, in.Key, sum, in.MD5)
	}
	return nil
}

func isMD5(s string) bool {
	_, err := hex.DecodeString(s)
	return len(s) == 32 && err == nil
}

// multipartThreshold is the smallest file uploaded in parts; a smaller one is one PUT.
func (a *Transfer) multipartThreshold() int64 { return max(16<<20, a.PartSize) }

// putMultipart uploads the file in parts, hashing the bytes as they are read: a file whose MD5 is
// not the verified one is never completed.
func (a *Transfer) putMultipart(ctx context.Context, in UploadInput, open func() (io.ReadSeekCloser, error)) error {
	// An earlier attempt that died mid-upload (a killed worker) left its multipart upload open:
	// abort it, so the bucket keeps no orphaned parts.
	if n, err := a.abortStale(ctx, in.Bucket, in.Key); err != nil {
		return err
	} else if n > 0 {
		a.log(ctx, in.JobID).Info("aborted incomplete multipart uploads of an earlier attempt", "key", in.Key, "uploads", n)
	}
	threshold := a.multipartThreshold()
	f, err := open()
	if err != nil {
		return err
	}
	defer f.Close()
	body := &hashingReader{r: f, h: md5.New(), size: in.Size, want: in.MD5}
	defer a.heartbeatWhile(ctx, func() any { return body.n.Load() })()
	tm := transfermanager.New(a.S3, func(o *transfermanager.Options) {
		o.ChecksumAlgorithm = tmtypes.ChecksumAlgorithmCrc32
		o.MultipartUploadThreshold = threshold
		if a.PartSize > 0 {
			o.PartSizeBytes = a.PartSize
		}
		if a.Concurrency > 0 {
			o.Concurrency = a.Concurrency
		}
	})
	_, err = tm.UploadObject(ctx, &transfermanager.UploadObjectInput{
		Bucket:        aws.String(in.Bucket),
		Key:           aws.String(in.Key),
		Body:          body,
		ContentLength: aws.Int64(in.Size),
		Metadata:      map[string]string{s3client.MetaMD5: in.MD5},
	})
	var mismatch *checksumError
	if errors.As(err, &mismatch) {
		return final(ErrTypeChecksumMismatch, mismatch.Error())
	}
	if err != nil {
		return fmt.Errorf("upload s3://%s/%s: %w", in.Bucket, in.Key, err)
	}
	return nil
}

// heartbeatWhile records details() every heartbeat interval until the returned stop is called.
func (a *Transfer) heartbeatWhile(ctx context.Context, details func() any) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(a.heartbeatEvery())
		defer t.Stop()
		for {
			select {
			case <-t.C:
				heartbeat(ctx, details())
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

// abortStale aborts every incomplete multipart upload of exactly key and returns how many.
func (a *Transfer) abortStale(ctx context.Context, bucket, key string) (int, error) {
	n := 0
	p := s3.NewListMultipartUploadsPaginator(a.S3, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(key)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, fmt.Errorf("list multipart uploads of s3://%s/%s: %w", bucket, key, err)
		}
		for _, u := range page.Uploads {
			if aws.ToString(u.Key) != key {
				continue
			}
			_, err := a.S3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: u.Key, UploadId: u.UploadId})
			if err != nil && !isNotFound(err) {
				return n, fmt.Errorf("abort multipart upload %s of s3://%s/%s: %w", aws.ToString(u.UploadId), bucket, key, err)
			}
			n++
		}
	}
	return n, nil
}

func isNotFound(err error) bool {
	switch s3Code(err) {
	case "NotFound", "NoSuchKey", "NoSuchUpload", "404":
		return true
	}
	return false
}

// checksumError: the file read for the upload is not the file Verify checked.
type checksumError struct{ got, want string }

func (e *checksumError) Error() string {
	return fmt.Sprintf("the file read for the upload has md5 %s, verified %s: not uploaded", e.got, e.want)
}

// hashingReader hashes what the upload reads. The read that delivers the last byte fails, and
// delivers nothing, when the MD5 is not want: the SDK then never completes the object.
type hashingReader struct {
	r    io.Reader
	h    hash.Hash
	size int64
	want string
	n    atomic.Int64
}

func (p *hashingReader) Read(b []byte) (int, error) {
	k, err := p.r.Read(b)
	n := p.n.Load() + int64(k)
	if n > p.size {
		return 0, fmt.Errorf("file grew to more than %d bytes during the upload", p.size)
	}
	p.h.Write(b[:k])
	if n == p.size && (k > 0 || p.size == 0) {
		if got := hex.EncodeToString(p.h.Sum(nil)); got != p.want {
			return 0, &checksumError{got: got, want: p.want}
		}
	}
	p.n.Store(n)
	metrics.Bytes.WithLabelValues("upload").Add(float64(k))
	return k, err
}
