package activities_test

// Integrity of the host steps, against the real SFTP server (pkg/sftp), the S3 server (versitygw)
// and PostgreSQL that testenv starts.

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/kafkasync/kafkasync/activities"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/faultproxy"
	"github.com/kafkasync/kafkasync/internal/progress"
	"github.com/kafkasync/kafkasync/internal/s3client"
	"github.com/kafkasync/kafkasync/internal/testenv"
)

// object returns the MD5 of an object's bytes and its md5 metadata.
func object(t *testing.T, tr *activities.Transfer, key string) (bytesMD5, metaMD5 string) {
	t.Helper()
	out, err := tr.S3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(tr.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	h := md5.New()
	if _, err := io.Copy(h, out.Body); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), out.Metadata[s3client.MetaMD5]
}

// hostSteps downloads, verifies and promotes one job's file.
func (b *bundle) hostSteps(t *testing.T, jobID, remote, key string, size int64) string {
	t.Helper()
	if _, err := b.actEnv().ExecuteActivity(b.tr.Download, activities.DownloadInput{JobID: jobID, RemotePath: remote, Size: size, RangeSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	v, err := b.actEnv().ExecuteActivity(b.tr.Verify, activities.VerifyInput{JobID: jobID, Size: size})
	if err != nil {
		t.Fatal(err)
	}
	var vr activities.VerifyResult
	v.Get(&vr)
	if _, err := b.actEnv().ExecuteActivity(b.tr.Promote, activities.PromoteInput{JobID: jobID, Key: key, Size: size}); err != nil {
		t.Fatal(err)
	}
	return vr.MD5
}

func (b *bundle) upload(t *testing.T, jobID, key, sum string, size int64) (activities.UploadResult, error) {
	v, err := b.actEnv().ExecuteActivity(b.tr.Upload, activities.UploadInput{JobID: jobID, Key: key, MD5: sum, Size: size})
	var ur activities.UploadResult
	if err == nil {
		v.Get(&ur)
	}
	return ur, err
}

// Two jobs with different bytes and one dest_key: whatever the order, the object's bytes hash to
// its stored MD5, that MD5 is one of the two jobs', and each upload reports the MD5 it uploaded
// (a single PUT writes bytes and metadata together, and its response says what it stored).
func TestTwoJobsOneKeyNeverMixBytes(t *testing.T) {
	b := setup(t)
	const size = 6<<20 + 17 // one PUT each (below the 16 MiB multipart threshold)
	sumX := b.env.WriteFile(t, "same/x.bin", size, 1)
	sumY := b.env.WriteFile(t, "same/y.bin", size, 2)
	const key = "shared/key.bin"

	t.Run("interleaved", func(t *testing.T) {
		for _, order := range [][2]string{{"x", "y"}, {"y", "x"}} {
			sums := map[string]string{}
			for _, j := range []string{"x", "y"} {
				sums[j] = b.hostSteps(t, "il-"+order[0]+"-"+j, "/same/"+j+".bin", key, size)
			}
			if sums["x"] != sumX || sums["y"] != sumY {
				t.Fatalf("verified %v", sums)
			}
			for _, j := range order {
				ur, err := b.upload(t, "il-"+order[0]+"-"+j, key, sums[j], size)
				if err != nil {
					t.Fatalf("upload %s: %v", j, err)
				}
				if ur.ObjectMD5 != sums[j] {
					t.Fatalf("job %s uploaded and found md5 %s, want its own %s", j, ur.ObjectMD5, sums[j])
				}
			}
			got, meta := object(t, b.tr, key)
			if got != meta || got != sums[order[1]] {
				t.Fatalf("order %v: object bytes md5 %s, metadata %s, want the last job's %s", order, got, meta, sums[order[1]])
			}
		}
	})
	t.Run("at once", func(t *testing.T) {
		for round := range 4 {
			var wg sync.WaitGroup
			for _, j := range []struct{ name, sum string }{{"x", sumX}, {"y", sumY}} {
				wg.Go(func() {
					id := "once-" + j.name + "-" + string(rune('a'+round))
					v, err := b.actEnv().ExecuteActivity(b.tr.Small, activities.SmallInput{JobID: id, RemotePath: "/same/" + j.name + ".bin",
						Size: size, RangeSize: 8 << 20, MD5: j.sum, Key: key})
					if err != nil {
						t.Errorf("job %s: %v", id, err)
						return
					}
					var r activities.SmallResult
					v.Get(&r)
					if r.Upload.ObjectMD5 != j.sum {
						t.Errorf("job %s reports object md5 %s, want its own %s", id, r.Upload.ObjectMD5, j.sum)
					}
				})
			}
			wg.Wait()
			got, meta := object(t, b.tr, key)
			if got != meta || (got != sumX && got != sumY) {
				t.Fatalf("round %d: object bytes md5 %s, metadata %s; jobs' %s and %s", round, got, meta, sumX, sumY)
			}
		}
	})
}

// A file under completed/ that is not the one Verify checked is never uploaded.
func TestUploadRefusesAnUnverifiedFile(t *testing.T) {
	b := setup(t)
	const size = 1<<20 + 5
	b.env.WriteFile(t, "u/a.bin", size, 3)
	sum := b.hostSteps(t, "swapped", "/u/a.bin", "u/a.bin", size)
	other := make([]byte, size)
	if err := os.WriteFile(filepath.Join(b.env.Cfg.Transfer.CompletedDir, "swapped/u/a.bin"), other, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := b.upload(t, "swapped", "u/a.bin", sum, size)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != activities.ErrTypeChecksumMismatch || !app.NonRetryable() {
		t.Fatalf("upload of a swapped file: %v", err)
	}
	if _, err := b.tr.S3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(b.tr.Bucket), Key: aws.String("u/a.bin")}); err == nil {
		t.Fatal("an object was created from the swapped file")
	}
}

// With the default, a job leaves no file in staging or completed; keep_completed keeps it until
// the sweeper finds it old enough.
func TestCompletedIsEmptiedOrSwept(t *testing.T) {
	b := setup(t)
	const size = 200 << 10
	b.env.WriteFile(t, "c/a.bin", size, 4)
	run := func(id string) {
		t.Helper()
		sum := b.hostSteps(t, id, "/c/a.bin", "c/"+id, size)
		if _, err := b.upload(t, id, "c/"+id, sum, size); err != nil {
			t.Fatal(err)
		}
	}
	run("default")
	for _, dir := range []string{b.env.Cfg.Transfer.StagingDir, b.env.Cfg.Transfer.CompletedDir} {
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("%s holds %v after the job", dir, entries)
		}
	}
	b.tr.KeepCompleted = time.Hour
	run("kept")
	if n, err := activities.Sweep(b.tr); err != nil || n != 0 {
		t.Fatalf("sweep of a fresh file: %d, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(b.env.Cfg.Transfer.CompletedDir, "kept/c/kept")); err != nil {
		t.Fatalf("kept file: %v", err)
	}
	b.tr.KeepCompleted = 10 * time.Millisecond
	time.Sleep(20 * time.Millisecond)
	if n, err := activities.Sweep(b.tr); err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v", n, err)
	}
	if entries, _ := os.ReadDir(b.env.Cfg.Transfer.CompletedDir); len(entries) != 0 {
		t.Fatalf("completed holds %v after the sweep", entries)
	}
}

// A size above transfer.max_file_size (default 5 TiB) is refused at stat and at download, before
// any range is planned: a server that reports 2^62 bytes cannot exhaust the worker.
func TestFileTooLargeIsRefused(t *testing.T) {
	b := setup(t)
	b.tr.MaxFileSize = int64(b.env.Cfg.Transfer.MaxFileSize)
	if b.tr.MaxFileSize != 5<<40 {
		t.Fatalf("default max_file_size %d", b.tr.MaxFileSize)
	}
	huge := filepath.Join(b.env.Stack.SFTP.Root, "huge.bin")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(6 << 40); err != nil { // sparse: no block is written
		f.Close()
		t.Skipf("no sparse file of 6 TiB here: %v", err)
	}
	f.Close()
	_, err = b.actEnv().ExecuteActivity(b.tr.Stat, activities.StatInput{RemotePath: "/huge.bin", ExpectedSize: -1})
	if errType(err) != activities.ErrTypeTooLarge {
		t.Fatalf("stat of 6 TiB: %v", err)
	}
	start := time.Now()
	_, err = b.actEnv().ExecuteActivity(b.tr.Download, activities.DownloadInput{JobID: "huge", RemotePath: "/huge.bin", Size: 1 << 62, RangeSize: 1 << 20})
	if errType(err) != activities.ErrTypeTooLarge || time.Since(start) > 5*time.Second {
		t.Fatalf("download of 2^62 bytes: %v after %s", err, time.Since(start))
	}
	if _, err := os.Stat(filepath.Join(b.env.Cfg.Transfer.StagingDir, "huge.part")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("staging file for a refused size: %v", err)
	}
}

// A remote file rewritten during a download fails the attempt (retryable); the retry sees the new
// modification time, starts over and gets the new bytes.
func TestRemoteChangedDuringDownload(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Kafka: devstack.KafkaEmbedded, SFTPReadRate: 4 << 20})
	b := withConfig(t, env, env.Cfg)
	tr := b.tr
	const size = 4 << 20
	env.WriteFile(t, "ch/a.bin", size, 5)
	in := activities.DownloadInput{JobID: "changing", RemotePath: "/ch/a.bin", Size: size, RangeSize: 1 << 20, Connections: 2}
	rewritten := make(chan string, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		sum := env.WriteFile(t, "ch/a.bin", size, 6) // same size, other bytes
		later := time.Now().Add(time.Hour)
		os.Chtimes(filepath.Join(env.Stack.SFTP.Root, "ch/a.bin"), later, later)
		rewritten <- sum
	}()
	e := b.actEnv()
	var last progress.Progress
	e.SetOnActivityHeartbeatListener(func(_ *activity.Info, d converter.EncodedValues) { d.Get(&last) })
	_, err := e.ExecuteActivity(tr.Download, in)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != activities.ErrTypeRemoteChanged || app.NonRetryable() {
		t.Fatalf("download of a file rewritten meanwhile: %v", err)
	}
	newSum := <-rewritten
	e = b.actEnv()
	e.SetHeartbeatDetails(last)
	v, err := e.ExecuteActivity(tr.Download, in)
	if err != nil {
		t.Fatal(err)
	}
	var dl activities.DownloadResult
	v.Get(&dl)
	if dl.Resumed != 0 || dl.Fetched != size {
		t.Fatalf("retry resumed %d and fetched %d, want a fresh download", dl.Resumed, dl.Fetched)
	}
	v, err = b.actEnv().ExecuteActivity(tr.Verify, activities.VerifyInput{JobID: "changing", MD5: newSum, Size: size})
	if err != nil {
		t.Fatalf("the retry's file is not the new one: %v", err)
	}
}

// A body damaged on the way to S3 is refused by the server (a single PUT carries the verified MD5,
// a part the CRC32 the SDK computed, and over plain HTTP the SHA-256 it is signed with): the
// object never holds the damaged bytes.
func TestUploadBodyDamagedOnTheWireIsRefused(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Kafka: devstack.KafkaEmbedded})
	proxy, err := faultproxy.New(strings.TrimPrefix(env.Cfg.S3.Endpoint, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	cfg := env.Cfg
	cfg.S3.Endpoint = "http://" + proxy.Addr
	b := withConfig(t, env, cfg)
	tr := b.tr
	for _, size := range []int64{1<<20 + 3, 20<<20 + 5} { // one PUT; a multipart upload (above 16 MiB)
		key := fmt.Sprintf("wire/%d.bin", size)
		env.WriteFile(t, key, size, uint64(size))
		id := fmt.Sprint("wire-", size)
		sum := b.hostSteps(t, id, "/"+key, key, size)
		proxy.CorruptOnce(size / 2)
		_, err := b.upload(t, id, key, sum, size)
		if proxy.Corrupted.Load() == 0 {
			t.Fatalf("%d bytes: the proxy damaged nothing", size)
		}
		proxy.Corrupted.Store(0)
		if err != nil { // refused and not retried by the SDK: the activity's retry uploads again
			t.Logf("%d bytes: first upload: %v", size, err)
			if _, err := b.upload(t, id, key, sum, size); err != nil {
				t.Fatal(err)
			}
		}
		got, meta := object(t, tr, key)
		if got != sum || meta != sum {
			t.Fatalf("%d bytes: object bytes md5 %s, metadata %s, want %s", size, got, meta, sum)
		}
	}
}
