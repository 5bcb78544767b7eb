package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/archive"
	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/ui"
)

const cliBucket = "cli-archive"

// run runs kafkasync with args, as the command line would.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errw)
	err := root.ExecuteContext(context.Background())
	return out.String(), errw.String(), err
}

// roleKeys adds an account <role><suffix> without a password for each role and returns a key of
// each, by role.
func roleKeys(t *testing.T, store *audit.Store, suffix string, roles ...string) map[string]string {
	t.Helper()
	keys := map[string]string{}
	for _, role := range roles {
		if _, err := store.AddAccount(context.Background(), role+suffix, role, "", "test"); err != nil {
			t.Fatal(err)
		}
		key, _, err := store.AddAPIKey(context.Background(), role+suffix, "test")
		if err != nil {
			t.Fatal(err)
		}
		keys[role] = key
	}
	return keys
}

func sumOf(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

// `kafkasync archive` lists across pages, downloads with the MD5 checked (and fails on a corrupted
// object, leaving no file), and deletes only with --yes and an admin's key: a viewer's and an
// operator's are refused.
func TestArchiveCLI(t *testing.T) {
	t.Setenv("KAFKASYNC_CONFIG", "")
	t.Setenv(envAPIKey, "")
	ctx := context.Background()
	store := testenv.StartStore(t)
	dir := t.TempDir()
	s3c := testenv.StartS3(t, cliBucket).Client()
	srv := httptest.NewServer(ui.New(ui.Options{Store: store, RateLimit: 1000,
		Archive: &ui.ArchiveOptions{S3: s3c, Buckets: []string{cliBucket}}}))
	t.Cleanup(srv.Close)
	keys := roleKeys(t, store, "-1", audit.RoleViewer, audit.RoleOperator, audit.RoleAdmin)
	body := bytes.Repeat([]byte("kafkasync "), 30000)
	for i := range 5 {
		key := fmt.Sprintf("in/f%d.bin", i)
		testenv.PutObject(t, s3c, cliBucket, key, body, sumOf(body))
		if err := store.Record(ctx, audit.Event{JobID: fmt.Sprintf("j%d", i), WorkflowID: "file-j", RunID: "r", Seq: 1, Step: "upload",
			Outcome: "succeeded", Status: audit.StatusSucceeded, At: time.Now(), RemotePath: "/" + key, MD5Actual: sumOf(body),
			S3Bucket: cliBucket, S3Key: key, Finished: true}); err != nil {
			t.Fatal(err)
		}
	}
	flags := []string{"--url", srv.URL}
	viewer := append([]string{"--key", keys[audit.RoleViewer]}, flags...)
	operator := append([]string{"--key", keys[audit.RoleOperator]}, flags...)
	admin := append([]string{"--key", keys[audit.RoleAdmin]}, flags...)

	out, errw, err := run(t, append([]string{"archive", "ls", "in/", "--limit", "2", "--all"}, viewer...)...)
	if err != nil || strings.Count(out, "\n") != 6 || !strings.HasPrefix(out, "KEY") || !strings.Contains(out, "in/f4.bin") ||
		strings.Count(out, "archived") != 5 {
		t.Fatalf("ls --all: %v\n%s%s", err, out, errw)
	}
	out, errw, _ = run(t, append([]string{"archive", "ls", "--limit", "2"}, viewer...)...)
	if strings.Count(out, "\n") != 3 || !strings.Contains(errw, "--all") {
		t.Fatalf("ls, one page: %s%s", out, errw)
	}
	out, _, err = run(t, append([]string{"archive", "ls", "--json", "--all"}, viewer...)...)
	var objs []archive.Object
	if err := json.Unmarshal([]byte(out), &objs); err != nil || len(objs) != 5 || objs[2].Job == nil || objs[2].Job.JobID != "j2" {
		t.Fatalf("ls --json: %v %v\n%s", err, objs, out)
	}

	file := filepath.Join(dir, "f1.bin")
	if _, errw, err = run(t, append([]string{"archive", "get", "in/f1.bin", "-o", file}, viewer...)...); err != nil || !strings.Contains(errw, "verified") {
		t.Fatalf("get: %v %s", err, errw)
	}
	if got, _ := os.ReadFile(file); !bytes.Equal(got, body) {
		t.Fatalf("get wrote %d bytes, want %d", len(got), len(body))
	}
	if _, _, err = run(t, append([]string{"archive", "get", "in/f1.bin", "-o", file}, viewer...)...); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("get over an existing file: %v", err)
	}
	bad := bytes.Clone(body)
	bad[len(bad)-10] = '!'
	testenv.PutObject(t, s3c, cliBucket, "in/f2.bin", bad, sumOf(body))
	badFile := filepath.Join(dir, "f2.bin")
	if _, _, err = run(t, append([]string{"archive", "get", "in/f2.bin", "-o", badFile}, viewer...)...); err == nil || !strings.Contains(err.Error(), "broken transfer") {
		t.Fatalf("get of a corrupted object: %v", err)
	}
	if _, err := os.Stat(badFile); err == nil {
		t.Fatal("a failed get left its file")
	}
	if matches, _ := filepath.Glob(badFile + "*"); len(matches) != 0 {
		t.Fatalf("a failed get left %v", matches)
	}

	if _, _, err = run(t, append([]string{"archive", "rm", "in/f3.bin"}, admin...)...); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("rm without --yes: %v", err)
	}
	for who, as := range map[string][]string{"viewer": viewer, "operator": operator} {
		if _, _, err = run(t, append([]string{"archive", "rm", "in/f3.bin", "--yes"}, as...)...); err == nil || !strings.HasPrefix(err.Error(), "403: ") ||
			!strings.Contains(err.Error(), "needs the admin role") {
			t.Fatalf("rm as %s: %v", who, err)
		}
	}
	if out, _, err := run(t, append([]string{"archive", "ls", "in/"}, operator...)...); err != nil || strings.Count(out, "archived") != 4 || !strings.Contains(out, "md5_differs") {
		t.Fatalf("ls as an operator: %v\n%s", err, out)
	}
	out, errw, err = run(t, append([]string{"archive", "rm", "in/f3.bin", "--yes"}, admin...)...)
	if err != nil || !strings.Contains(out, "deleted s3://"+cliBucket+"/in/f3.bin by key:") {
		t.Fatalf("rm: %v %s%s", err, out, errw)
	}
	out, _, _ = run(t, append([]string{"archive", "ls"}, viewer...)...)
	if !strings.Contains(out, "deleted by key:") {
		t.Fatalf("ls after rm:\n%s", out)
	}
	if _, _, err = run(t, append([]string{"archive", "rm", "in/none", "--yes"}, admin...)...); err == nil || !strings.HasPrefix(err.Error(), "404: ") {
		t.Fatalf("rm of a missing object: %v", err)
	}
	for _, k := range keys {
		if strings.Contains(out+errw, k) {
			t.Fatal("an API key was printed")
		}
	}
}
