package devstack

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sys/unix"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/s3client"
)

// S3 is an S3-API server (versitygw with its posix backend: objects are plain files under Dir).
type S3 struct {
	Endpoint  string
	AccessKey string
	SecretKey string
	Dir       string // objects live under Dir/<bucket>/<key>
	proc      *proc
}

// S3Options configures StartS3.
type S3Options struct {
	Bin       string // path to versitygw
	Dir       string // objects under Dir/objects; their metadata in user xattrs, else under Dir/meta
	Port      int    // 0: free
	AccessKey string
	SecretKey string
	Buckets   []string // created if missing
	Log       io.Writer
}

// StartS3 starts versitygw and creates the buckets.
func StartS3(ctx context.Context, o S3Options) (*S3, error) {
	var err error
	if o.Port, err = portOrFree(o.Port); err != nil {
		return nil, err
	}
	objects, meta := filepath.Join(o.Dir, "objects"), filepath.Join(o.Dir, "meta")
	for _, d := range []string{objects, meta} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	addr := "127.0.0.1:" + strconv.Itoa(o.Port)
	srv := &S3{Endpoint: "http://" + addr, AccessKey: o.AccessKey, SecretKey: o.SecretKey, Dir: objects}
	// Keep-alive, as S3 services have: versitygw otherwise closes every connection after one
	// request, and each PUT of a small file would cost a new connection at both ends.
	args := []string{"--access", o.AccessKey, "--secret", o.SecretKey, "--port", addr, "--quiet", "--keep-alive", "posix"}
	if kept, _ := os.ReadDir(meta); len(kept) > 0 || !hasUserXattrs(objects) {
		args = append(args, "--sidecar", meta)
	}
	srv.proc, err = startProc("versitygw", o.Log, nil, o.Bin, append(args, objects)...)
	if err != nil {
		return nil, err
	}
	cl := srv.Client()
	err = waitFor(ctx, srv.proc, 30*time.Second, func(ctx context.Context) error {
		_, err := cl.ListBuckets(ctx, &s3.ListBucketsInput{})
		return err
	})
	if err == nil {
		for _, b := range o.Buckets {
			if err = s3client.EnsureBucket(ctx, cl, b); err != nil {
				break
			}
		}
	}
	if err != nil {
		srv.Stop()
		return nil, err
	}
	return srv, nil
}

// hasUserXattrs reports whether files under dir take user extended attributes, where versitygw
// keeps an object's metadata by default. Without them it keeps each attribute in a file of its
// own (--sidecar): a create, write and rename per attribute, about half its CPU per small PUT. A
// stack whose meta folder holds attributes already keeps it.
func hasUserXattrs(dir string) bool {
	f, err := os.CreateTemp(dir, ".xattr-probe-")
	if err != nil {
		return false
	}
	defer os.Remove(f.Name())
	defer f.Close()
	return unix.Fsetxattr(int(f.Fd()), "user.kafkasync.probe", []byte("1"), 0) == nil
}

// Client returns an S3 client for this server.
func (s *S3) Client() *s3.Client {
	c, _ := s3client.New(config.S3{Endpoint: s.Endpoint, Region: "us-east-1", AccessKey: s.AccessKey,
		SecretKey: config.Secret(s.SecretKey), PathStyle: true}) // no CA file: cannot fail
	return c
}

// Stop ends the server.
func (s *S3) Stop() {
	if s != nil {
		s.proc.stop(syscall.SIGTERM, 10*time.Second)
	}
}
