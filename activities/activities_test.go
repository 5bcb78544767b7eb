package activities_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"golang.org/x/crypto/ssh"

	"github.com/kafkasync/kafkasync/activities"
	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/progress"
	"github.com/kafkasync/kafkasync/internal/s3client"
	"github.com/kafkasync/kafkasync/internal/sftpdial"
	"github.com/kafkasync/kafkasync/internal/sftpserver"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/workers"
)

type bundle struct {
	env *testenv.Env
	tr  *activities.Transfer
	s   testsuite.WorkflowTestSuite
}

func setup(t *testing.T) *bundle {
	t.Helper()
	env := testenv.Start(t, testenv.Options{Kafka: devstack.KafkaEmbedded})
	return withConfig(t, env, env.Cfg)
}

// withConfig is a bundle on env whose activities run with cfg.
func withConfig(t *testing.T, env *testenv.Env, cfg config.Config) *bundle {
	t.Helper()
	tr, closeT, err := workers.NewTransfer(context.Background(), cfg, env.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeT)
	return &bundle{env: env, tr: tr}
}

func (b *bundle) actEnv() *testsuite.TestActivityEnvironment {
	e := b.s.NewTestActivityEnvironment()
	e.RegisterActivity(b.tr)
	return e
}

func errType(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Type()
	}
	return ""
}

func TestActivitiesAgainstRealServers(t *testing.T) {
	b := setup(t)
	const size = 5<<20 + 123
	sum := b.env.WriteFile(t, "in/sub/a.bin", size, 7)

	t.Run("stat", func(t *testing.T) {
		v, err := b.actEnv().ExecuteActivity(b.tr.Stat, activities.StatInput{RemotePath: "/in/sub/a.bin", ExpectedSize: -1})
		if err != nil {
			t.Fatal(err)
		}
		var st activities.StatResult
		v.Get(&st)
		if st.Size != size {
			t.Fatalf("size %d", st.Size)
		}
	})
	t.Run("stat missing file is final", func(t *testing.T) {
		_, err := b.actEnv().ExecuteActivity(b.tr.Stat, activities.StatInput{RemotePath: "/in/nope.bin", ExpectedSize: -1})
		if errType(err) != activities.ErrTypeRemoteNotFound {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("stat too young is retried later", func(t *testing.T) {
		_, err := b.actEnv().ExecuteActivity(b.tr.Stat, activities.StatInput{RemotePath: "/in/sub/a.bin", ExpectedSize: -1, MinAge: time.Hour})
		var app *temporal.ApplicationError
		if !errors.As(err, &app) || app.Type() != activities.ErrTypeTooYoung || app.NonRetryable() || app.NextRetryDelay() <= 0 {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("stat wrong size is final", func(t *testing.T) {
		_, err := b.actEnv().ExecuteActivity(b.tr.Stat, activities.StatInput{RemotePath: "/in/sub/a.bin", ExpectedSize: 3})
		if errType(err) != activities.ErrTypeSizeMismatch {
			t.Fatalf("err %v", err)
		}
	})

	in := activities.DownloadInput{JobID: "job-a", RemotePath: "/in/sub/a.bin", Size: size, RangeSize: 1 << 20, Connections: 3}
	mtime := remoteMTime(t, b, "in/sub/a.bin")
	t.Run("download then verify, promote, upload", func(t *testing.T) {
		v, err := b.actEnv().ExecuteActivity(b.tr.Download, in)
		if err != nil {
			t.Fatal(err)
		}
		var dl activities.DownloadResult
		v.Get(&dl)
		if dl.Fetched != size || dl.Resumed != 0 || dl.Connections != 3 {
			t.Fatalf("download %+v", dl)
		}
		v, err = b.actEnv().ExecuteActivity(b.tr.Verify, activities.VerifyInput{JobID: "job-a", MD5: sum, Size: size})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.actEnv().ExecuteActivity(b.tr.Promote, activities.PromoteInput{JobID: "job-a", Key: "in/sub/a.bin", Size: size}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(b.env.Cfg.Transfer.CompletedDir, "job-a/in/sub/a.bin")); err != nil {
			t.Fatalf("promoted file: %v", err)
		}
		if _, err := os.Stat(filepath.Join(b.env.Cfg.Transfer.StagingDir, "job-a.part")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("staging file still there: %v", err)
		}
		// A retried promote after the rename succeeds.
		if _, err := b.actEnv().ExecuteActivity(b.tr.Promote, activities.PromoteInput{JobID: "job-a", Key: "in/sub/a.bin", Size: size}); err != nil {
			t.Fatalf("second promote: %v", err)
		}
		up := activities.UploadInput{JobID: "job-a", Key: "in/sub/a.bin", MD5: sum, Size: size}
		v, err = b.actEnv().ExecuteActivity(b.tr.Upload, up)
		if err != nil {
			t.Fatal(err)
		}
		var ur activities.UploadResult
		v.Get(&ur)
		if ur.Skipped || ur.ObjectSize != size || ur.ObjectMD5 != sum {
			t.Fatalf("first upload %+v", ur)
		}
		// The object is verified: the local copy is gone.
		if _, err := os.Stat(filepath.Join(b.env.Cfg.Transfer.CompletedDir, "job-a")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("completed folder of job-a after its upload: %v", err)
		}
		v, err = b.actEnv().ExecuteActivity(b.tr.Upload, up)
		if err != nil {
			t.Fatal(err)
		}
		v.Get(&ur)
		if !ur.Skipped {
			t.Fatal("second upload of the same object was not skipped")
		}
	})
	t.Run("download resumes from heartbeat details", func(t *testing.T) {
		in := in
		in.JobID = "job-resume"
		// A previous attempt finished ranges 0-2 and 4: those bytes are already in the staging file.
		full, err := os.ReadFile(filepath.Join(b.env.Stack.SFTP.Root, "in/sub/a.bin"))
		if err != nil {
			t.Fatal(err)
		}
		part := make([]byte, size)
		copy(part[:3<<20], full[:3<<20])
		copy(part[4<<20:5<<20], full[4<<20:5<<20])
		if err := os.WriteFile(filepath.Join(b.env.Cfg.Transfer.StagingDir, "job-resume.part"), part, 0o644); err != nil {
			t.Fatal(err)
		}
		e := b.actEnv()
		e.SetHeartbeatDetails(progress.Progress{Size: size, RangeSize: 1 << 20, ModTime: mtime,
			Done: []progress.Span{{From: 0, To: 3}, {From: 4, To: 5}}})
		before := b.env.Stack.SFTP.Server.BytesSent()
		v, err := e.ExecuteActivity(b.tr.Download, in)
		if err != nil {
			t.Fatal(err)
		}
		var dl activities.DownloadResult
		v.Get(&dl)
		wantFetched := int64(size - 4<<20) // range 3 and the 123-byte tail
		if dl.Resumed != 4<<20 || dl.Fetched != wantFetched {
			t.Fatalf("resume fetched %d resumed %d, want %d and %d", dl.Fetched, dl.Resumed, wantFetched, 4<<20)
		}
		if sent := b.env.Stack.SFTP.Server.BytesSent() - before; sent != wantFetched {
			t.Fatalf("server sent %d bytes, want %d", sent, wantFetched)
		}
		if _, err := b.actEnv().ExecuteActivity(b.tr.Verify, activities.VerifyInput{JobID: "job-resume", MD5: sum, Size: size}); err != nil {
			t.Fatalf("resumed file: %v", err)
		}
	})
	t.Run("download resumes from the local journal, inside ranges", func(t *testing.T) {
		in := in
		in.JobID = "job-journal"
		// The killed attempt had written range 0 and 300,000 bytes of range 2, and its journal says so
		// for this boot (the page cache outlives the worker); nothing was synced yet. The heartbeat
		// Temporal kept is older: only range 0.
		full, err := os.ReadFile(filepath.Join(b.env.Stack.SFTP.Root, "in/sub/a.bin"))
		if err != nil {
			t.Fatal(err)
		}
		part := make([]byte, size)
		copy(part[:1<<20], full[:1<<20])
		copy(part[2<<20:2<<20+300000], full[2<<20:2<<20+300000])
		staging := filepath.Join(b.env.Cfg.Transfer.StagingDir, "job-journal.part")
		if err := os.WriteFile(staging, part, 0o644); err != nil {
			t.Fatal(err)
		}
		boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
		if err != nil {
			t.Skip("no boot id on this system")
		}
		written := progress.Progress{Size: size, RangeSize: 1 << 20, ModTime: mtime, Done: []progress.Span{{From: 0, To: 1}},
			Partial: map[int]int64{2: 300000}}
		j, _ := json.Marshal(map[string]any{"boot": strings.TrimSpace(string(boot)), "written": written,
			"synced": progress.Progress{Size: size, RangeSize: 1 << 20}})
		if err := os.WriteFile(staging+".ranges", j, 0o644); err != nil {
			t.Fatal(err)
		}
		e := b.actEnv()
		e.SetHeartbeatDetails(progress.Progress{Size: size, RangeSize: 1 << 20, ModTime: mtime, Done: []progress.Span{{From: 0, To: 1}}})
		before := b.env.Stack.SFTP.Server.BytesSent()
		v, err := e.ExecuteActivity(b.tr.Download, in)
		if err != nil {
			t.Fatal(err)
		}
		var dl activities.DownloadResult
		v.Get(&dl)
		wantResumed := int64(1<<20 + 300000)
		if dl.Resumed != wantResumed || dl.Fetched != size-wantResumed {
			t.Fatalf("fetched %d resumed %d, want %d and %d", dl.Fetched, dl.Resumed, size-wantResumed, wantResumed)
		}
		if sent := b.env.Stack.SFTP.Server.BytesSent() - before; sent != size-wantResumed {
			t.Fatalf("server sent %d bytes, want %d", sent, size-wantResumed)
		}
		if _, err := os.Stat(staging + ".ranges"); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("journal left after a complete download: %v", err)
		}
		if _, err := b.actEnv().ExecuteActivity(b.tr.Verify, activities.VerifyInput{JobID: "job-journal", MD5: sum, Size: size}); err != nil {
			t.Fatalf("resumed file: %v", err)
		}
	})
	t.Run("a remote file rewritten at the same size since the last attempt starts over", func(t *testing.T) {
		in := in
		in.JobID = "job-rewritten"
		full, err := os.ReadFile(filepath.Join(b.env.Stack.SFTP.Root, "in/sub/a.bin"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(b.env.Cfg.Transfer.StagingDir, "job-rewritten.part"), full, 0o644); err != nil {
			t.Fatal(err)
		}
		e := b.actEnv()
		e.SetHeartbeatDetails(progress.Progress{Size: size, RangeSize: 1 << 20, ModTime: mtime.Add(-time.Hour),
			Done: []progress.Span{{From: 0, To: 5}}})
		v, err := e.ExecuteActivity(b.tr.Download, in)
		if err != nil {
			t.Fatal(err)
		}
		var dl activities.DownloadResult
		v.Get(&dl)
		if dl.Fetched != size || dl.Resumed != 0 || !dl.ModTime.Equal(mtime) {
			t.Fatalf("fetched %d resumed %d mtime %s, want a full download of the file modified %s", dl.Fetched, dl.Resumed, dl.ModTime, mtime)
		}
	})
	t.Run("heartbeat not trusted when the staging file is gone", func(t *testing.T) {
		in := in
		in.JobID = "job-stale"
		e := b.actEnv()
		e.SetHeartbeatDetails(progress.Progress{Size: size, RangeSize: 1 << 20, Done: []progress.Span{{From: 0, To: 6}}})
		v, err := e.ExecuteActivity(b.tr.Download, in)
		if err != nil {
			t.Fatal(err)
		}
		var dl activities.DownloadResult
		v.Get(&dl)
		if dl.Fetched != size || dl.Resumed != 0 {
			t.Fatalf("fetched %d resumed %d, want a full download", dl.Fetched, dl.Resumed)
		}
	})
	t.Run("verify mismatch deletes the staging file", func(t *testing.T) {
		_, err := b.actEnv().ExecuteActivity(b.tr.Verify, activities.VerifyInput{JobID: "job-stale", MD5: "00000000000000000000000000000000", Size: size})
		if errType(err) != activities.ErrTypeChecksumMismatch {
			t.Fatalf("err %v", err)
		}
		if _, err := os.Stat(filepath.Join(b.env.Cfg.Transfer.StagingDir, "job-stale.part")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("staging file kept after mismatch: %v", err)
		}
	})
	t.Run("promote cannot leave completed through a symlink", func(t *testing.T) {
		outside := t.TempDir()
		if err := os.MkdirAll(filepath.Join(b.env.Cfg.Transfer.CompletedDir, "job-evil"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, filepath.Join(b.env.Cfg.Transfer.CompletedDir, "job-evil", "evil")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(b.env.Cfg.Transfer.StagingDir, "job-evil.part"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := b.actEnv().ExecuteActivity(b.tr.Promote, activities.PromoteInput{JobID: "job-evil", Key: "evil/passwd", Size: 1})
		if err == nil {
			t.Fatal("promote followed a symlink out of completed/")
		}
		if entries, _ := os.ReadDir(outside); len(entries) != 0 {
			t.Fatalf("file written outside completed/: %v", entries)
		}
	})
}

func TestUnknownHostKeyIsRefused(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Kafka: devstack.KafkaEmbedded})
	other, _, err := sftpserver.NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte(sftpserver.KnownHostsLine(env.Stack.SFTP.Addr, other.PublicKey())+"\n"), 0o644)
	cfg := env.Cfg.SFTP
	cfg.KnownHosts = kh
	d, err := sftpdial.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr := &activities.Transfer{Sources: map[string]*activities.Source{"default": {Name: "default", SFTP: d}}}
	var s testsuite.WorkflowTestSuite
	e := s.NewTestActivityEnvironment()
	e.RegisterActivity(tr)
	env.WriteFile(t, "x.bin", 1, 1)
	_, err = e.ExecuteActivity(tr.Stat, activities.StatInput{RemotePath: "/x.bin", ExpectedSize: -1})
	if errType(err) != activities.ErrTypeHostKey {
		t.Fatalf("err %v, want HostKeyMismatch", err)
	}
	// A pinned key that differs is refused too; the right one is accepted.
	cfg.KnownHosts, cfg.HostKey = "", string(ssh.MarshalAuthorizedKey(other.PublicKey()))
	if d, err = sftpdial.New(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dial(context.Background()); !errors.Is(err, sftpdial.ErrHostKey) {
		t.Fatalf("pinned wrong key: %v", err)
	}
}

// Two workers (two Transfers with their own staging folders and lock connections) run six
// downloads at once against a server limited to 3 connections and 2 jobs: the server never sees
// more than 3 SFTP sessions, and every download completes.
func TestHostLimitsHoldAcrossWorkers(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Kafka: devstack.KafkaEmbedded, SFTPReadRate: 24 << 20})
	srv := env.Stack.SFTP.Server
	var trs []*activities.Transfer
	for w := range 2 {
		cfg := env.Cfg
		cfg.SFTP.MaxConnections, cfg.SFTP.MaxJobs = 3, 2
		cfg.Transfer.StagingDir = filepath.Join(env.Dir, fmt.Sprint("w", w), "staging")
		cfg.Transfer.CompletedDir = filepath.Join(env.Dir, fmt.Sprint("w", w), "completed")
		tr, closeT, err := workers.NewTransfer(context.Background(), cfg, env.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(closeT)
		trs = append(trs, tr)
	}
	const size = 6 << 20
	for i := range 6 {
		env.WriteFile(t, fmt.Sprintf("lim/%d.bin", i), size, uint64(i))
	}
	srv.ResetPeak()
	var s testsuite.WorkflowTestSuite
	var wg sync.WaitGroup
	conns := make([]int, 6)
	for i := range 6 {
		wg.Go(func() {
			tr := trs[i%2]
			e := s.NewTestActivityEnvironment()
			e.RegisterActivity(tr)
			v, err := e.ExecuteActivity(tr.Download, activities.DownloadInput{JobID: fmt.Sprint("lim-", i),
				RemotePath: fmt.Sprintf("/lim/%d.bin", i), Size: size, RangeSize: 1 << 20, Connections: 4})
			if err != nil {
				t.Errorf("download %d: %v", i, err)
				return
			}
			var dl activities.DownloadResult
			v.Get(&dl)
			conns[i] = dl.Connections
		})
	}
	wg.Wait()
	t.Logf("6 downloads of 4 connections each over 2 workers, limit 3 connections / 2 jobs: server peak %d sessions and %d files read at once; connections per download %v",
		srv.PeakSessions(), srv.PeakFilesRead(), conns)
	if p := srv.PeakFilesRead(); p > 2 || p < 1 {
		t.Fatalf("peak %d files read at once, job limit 2", p)
	}
	if p := srv.PeakSessions(); p > 3 || p < 2 {
		t.Fatalf("peak %d SFTP sessions, limit 3", p)
	}
	for i, c := range conns {
		if c < 1 || c > 3 {
			t.Fatalf("download %d used %d connections", i, c)
		}
	}
}

// A small file larger than the worker's budget for small files in memory is refused, not held.
func TestSmallFileOverTheMemoryBudget(t *testing.T) {
	b := setup(t)
	const size = 64 << 10
	sum := b.env.WriteFile(t, "small/big.bin", size, 12)
	b.tr.SmallMemory = size - 1
	_, err := b.actEnv().ExecuteActivity(b.tr.Small, activities.SmallInput{JobID: "small-big", RemotePath: "/small/big.bin", Size: size,
		RangeSize: 1 << 20, MD5: sum, Key: "small/big.bin"})
	if errType(err) != activities.ErrTypeTooLarge || activities.FailedStep(err) != "download" {
		t.Fatalf("over the small-file budget: %v (step %q)", err, activities.FailedStep(err))
	}
}

// Small runs the host steps of a small file in memory: nothing is left in staging or completed, a
// second run reads the file again and skips the upload of the object already there, and a wrong
// MD5 fails in step verify.
func TestSmallFileInOneActivity(t *testing.T) {
	b := setup(t)
	const size = 300<<10 + 5
	sum := b.env.WriteFile(t, "small/s.bin", size, 11)
	in := activities.SmallInput{JobID: "small-s", RemotePath: "/small/s.bin", Size: size, RangeSize: 1 << 20, MD5: sum, Key: "small/s.bin"}
	v, err := b.actEnv().ExecuteActivity(b.tr.Small, in)
	if err != nil {
		t.Fatal(err)
	}
	var r activities.SmallResult
	v.Get(&r)
	if r.MD5 != sum || r.Download.Fetched != size || r.Upload.Key != "small/s.bin" || r.Upload.Skipped || r.Upload.ObjectMD5 != sum {
		t.Fatalf("first run %+v", r)
	}
	for _, dir := range []string{b.tr.Staging.Name(), b.tr.Completed.Name()} {
		if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
			t.Fatalf("a small file left %v on disk", left)
		}
	}
	fetched := b.env.Stack.SFTP.Server.BytesSent()
	v, err = b.actEnv().ExecuteActivity(b.tr.Small, in)
	if err != nil {
		t.Fatal(err)
	}
	v.Get(&r)
	if !r.Upload.Skipped || b.env.Stack.SFTP.Server.BytesSent() < fetched+size {
		t.Fatalf("second run %+v, %d more bytes fetched", r, b.env.Stack.SFTP.Server.BytesSent()-fetched)
	}
	// Another object at the key (the conditional PUT is refused, the HEAD finds other bytes) is replaced.
	testenv.PutObject(t, b.tr.S3, b.tr.Bucket, "small/s.bin", []byte("other bytes"), "5a2d1b5fbc0e3f4a8d7c6b5a4f3e2d1c")
	v, err = b.actEnv().ExecuteActivity(b.tr.Small, in)
	if err != nil {
		t.Fatal(err)
	}
	v.Get(&r)
	head, err := b.tr.S3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(b.tr.Bucket), Key: aws.String("small/s.bin")})
	if err != nil || r.Upload.Skipped || head.Metadata[s3client.MetaMD5] != sum || aws.ToInt64(head.ContentLength) != size {
		t.Fatalf("third run over another object %+v; object %v (%v)", r, head, err)
	}

	bad := in
	bad.JobID, bad.Key, bad.MD5 = "small-bad", "small/bad.bin", "0123456789abcdef0123456789abcdef"
	_, err = b.actEnv().ExecuteActivity(b.tr.Small, bad)
	if errType(err) != activities.ErrTypeChecksumMismatch || activities.FailedStep(err) != "verify" {
		t.Fatalf("wrong md5: %v (step %q)", err, activities.FailedStep(err))
	}
}

// Small's first attempt takes the file as the stat before it saw it: a file whose time moved since
// is refused as changed, to be retried, and not uploaded; one as the stat saw it is moved.
func TestSmallFileFirstAttemptTakesTheStat(t *testing.T) {
	b := setup(t)
	const size = 64 << 10
	sum := b.env.WriteFile(t, "small/seen.bin", size, 13)
	seen := remoteMTime(t, b, "small/seen.bin")
	in := activities.SmallInput{JobID: "small-seen", RemotePath: "/small/seen.bin", Size: size, ModTime: seen.Add(-time.Minute),
		RangeSize: 1 << 20, MD5: sum, Key: "small/seen.bin"}
	_, err := b.actEnv().ExecuteActivity(b.tr.Small, in)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != activities.ErrTypeRemoteChanged || activities.FailedStep(err) != "download" || app.NonRetryable() {
		t.Fatalf("file newer than the stat saw: %v (step %q)", err, activities.FailedStep(err))
	}
	if _, err := b.tr.S3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(b.tr.Bucket), Key: aws.String(in.Key)}); err == nil {
		t.Fatal("a file changed since its stat was uploaded")
	}
	in.ModTime = seen
	v, err := b.actEnv().ExecuteActivity(b.tr.Small, in)
	if err != nil {
		t.Fatal(err)
	}
	var r activities.SmallResult
	v.Get(&r)
	if r.MD5 != sum || !r.Download.ModTime.Equal(seen) || r.Upload.ObjectMD5 != sum {
		t.Fatalf("file as the stat saw it: %+v", r)
	}
}

// remoteMTime is the modification time the SFTP server reports for rel: whole seconds.
func remoteMTime(t *testing.T, b *bundle, rel string) time.Time {
	t.Helper()
	fi, err := os.Stat(filepath.Join(b.env.Stack.SFTP.Root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime().Truncate(time.Second).UTC()
}

// Stat and Small carry the audit events their workflow has not written yet: a step that runs
// longer than a second writes them while it runs, one that fails before it returns (so the failed
// attempt's row finds its job), and a quick one that succeeds leaves them to the workflow.
func TestStepsWriteTheTrailTheyCarry(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Kafka: devstack.KafkaEmbedded})
	cfg := env.Cfg
	cfg.SFTP.Bandwidth = 64 << 10 // 160 KiB take about two seconds
	b := withConfig(t, env, cfg)
	tr := b.tr
	ctx := context.Background()
	trail := func(id, path string) []audit.Event {
		return []audit.Event{{JobID: id, WorkflowID: "file-" + id, RunID: "run-" + id, Seq: 1, Step: "queued", Outcome: "started",
			Status: audit.StatusQueued, At: time.Now().UTC(), RemotePath: path}}
	}
	status := func(id string) string {
		j, err := tr.Audit.Job(ctx, id)
		if errors.Is(err, audit.ErrNotFound) {
			return ""
		} else if err != nil {
			t.Fatal(err)
		}
		return j.Status
	}

	const size = 160 << 10
	sum := env.WriteFile(t, "trail/slow.bin", size, 21)
	ended := make(chan error, 1)
	go func() {
		_, err := b.actEnv().ExecuteActivity(tr.Small, activities.SmallInput{JobID: "trail-slow", RemotePath: "/trail/slow.bin", Size: size,
			RangeSize: 1 << 20, MD5: sum, Key: "trail/slow.bin", Trail: trail("trail-slow", "/trail/slow.bin")})
		ended <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); status("trail-slow") == ""; time.Sleep(50 * time.Millisecond) {
		if len(ended) > 0 || time.Now().After(deadline) {
			t.Fatal("Small ended, or ran ten seconds, before its trail was written")
		}
	}
	if err := <-ended; err != nil {
		t.Fatal(err)
	}

	env.WriteFile(t, "trail/quick.bin", 10, 22)
	began := time.Now()
	if _, err := b.actEnv().ExecuteActivity(tr.Stat, activities.StatInput{RemotePath: "/trail/quick.bin", ExpectedSize: -1,
		Trail: trail("trail-quick", "/trail/quick.bin")}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took >= time.Second {
		t.Logf("the quick stat took %s: not a quick one on this machine now", took)
	} else if s := status("trail-quick"); s != "" {
		t.Fatalf("a stat of %s wrote its trail (%s): the workflow writes it with the outcome", took, s)
	}

	_, err := b.actEnv().ExecuteActivity(tr.Stat, activities.StatInput{RemotePath: "/trail/missing.bin", ExpectedSize: -1,
		Trail: trail("trail-missing", "/trail/missing.bin")})
	if errType(err) != activities.ErrTypeRemoteNotFound {
		t.Fatalf("stat of a missing file: %v", err)
	}
	if s := status("trail-missing"); s != audit.StatusQueued {
		t.Fatalf("a failed stat left the job %q, want its trail written (QUEUED)", s)
	}
}
