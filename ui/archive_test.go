package ui_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kafkasync/kafkasync/internal/archive"
	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/ui"
)

const (
	bucketA = "archive-a"
	bucketB = "archive-b"
	// bucketOther exists on the S3 server but is not one of the archive's.
	bucketOther = "not-kafkasyncs"
)

type archiveFixture struct {
	*fixture
	s3c *s3.Client
}

func startArchive(t *testing.T) *archiveFixture {
	t.Helper()
	f := start(t)
	srv := testenv.StartS3(t, bucketA, bucketB, bucketOther)
	return &archiveFixture{fixture: f, s3c: srv.Client()}
}

func (f *archiveFixture) server(t *testing.T, o ui.Options, presign bool) *httptest.Server {
	t.Helper()
	o.Archive = &ui.ArchiveOptions{S3: f.s3c, Buckets: []string{bucketA, bucketB}, Presign: presign}
	return f.fixture.server(t, o)
}

func md5hex(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

// put stores an object with md5 metadata, as the upload does.
func (f *archiveFixture) put(t *testing.T, bucket, key string, body []byte, sum string) {
	t.Helper()
	testenv.PutObject(t, f.s3c, bucket, key, body, sum)
}

// archived records a SUCCEEDED job for bucket/key, finished at at; submittedBy as the dashboard records it.
func (f *archiveFixture) archived(t *testing.T, id, bucket, key, sum string, at time.Time, submittedBy string) {
	t.Helper()
	queued := audit.Event{JobID: id, Step: "queued", Outcome: "started", Status: audit.StatusQueued, RemotePath: "/" + key, At: at.Add(-time.Second)}
	if submittedBy != "" {
		queued.Detail = "submitted by " + submittedBy
	}
	record(t, f.store, queued, audit.Event{JobID: id, Step: "upload", Outcome: "succeeded", Status: audit.StatusSucceeded, RemotePath: "/" + key,
		MD5Actual: sum, S3Bucket: bucket, S3Key: key, Size: 1, SizeKnown: true, Finished: true, At: at})
}

func listPage(t *testing.T, srv *httptest.Server, key, query string) (archive.Page, int, string) {
	t.Helper()
	code, body, _ := do(t, nil, "GET", srv.URL+"/api/v1/objects?"+query, key, nil)
	var p archive.Page
	if code == 200 {
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatalf("page: %v\n%s", err, body)
		}
	}
	return p, code, body
}

// listAll pages through the bucket, limit at a time, and returns every object in order.
func listAll(t *testing.T, srv *httptest.Server, key string, q url.Values, limit int) ([]archive.Object, int) {
	t.Helper()
	q.Set("limit", fmt.Sprint(limit))
	var all []archive.Object
	pages := 0
	for {
		pages++
		if pages > 50 {
			t.Fatal("paging does not end")
		}
		p, code, body := listPage(t, srv, key, q.Encode())
		if code != 200 {
			t.Fatalf("list: %d %s", code, body)
		}
		if len(p.Objects) > limit {
			t.Fatalf("page of %d objects, limit %d", len(p.Objects), limit)
		}
		all = append(all, p.Objects...)
		if p.Next == "" {
			return all, pages
		}
		q.Set("after", p.Next)
	}
}

// The archive pages through a bucket in key order, over more than one page: objects with their
// jobs, an object no job put there, jobs whose objects were removed behind kafkasync's back (in
// the middle and after the last object), each exactly once; the date filter and other buckets too.
func TestArchiveBrowse(t *testing.T) {
	f := startArchive(t)
	srv := f.server(t, ui.Options{APIKey: apiKey}, false)
	ctx := context.Background()
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	var want []string
	for i := range 23 {
		key := fmt.Sprintf("in/f%02d", i)
		body := []byte("bytes of " + key)
		f.put(t, bucketA, key, body, md5hex(body))
		want = append(want, key)
		if i == 3 {
			continue // no job
		}
		by := ""
		if i == 5 {
			by = "account:op-1"
		}
		f.archived(t, fmt.Sprintf("job-%02d", i), bucketA, key, md5hex(body), at.Add(time.Duration(i)*time.Second), by)
	}
	// Gone behind kafkasync's back: between two objects, and after the last one.
	for _, key := range []string{"in/f10a", "in/zz"} {
		body := []byte("bytes of " + key)
		f.put(t, bucketA, key, body, md5hex(body))
		f.archived(t, "job-"+strings.TrimPrefix(key, "in/"), bucketA, key, md5hex(body), at, "")
		if _, err := f.s3c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucketA), Key: aws.String(key)}); err != nil {
			t.Fatal(err)
		}
	}
	want = append(want[:11], append([]string{"in/f10a"}, want[11:]...)...)
	want = append(want, "in/zz")
	// Outside the prefix, and in the other bucket: not listed under in/ of bucket A.
	f.put(t, bucketA, "out/x", []byte("x"), md5hex([]byte("x")))
	f.put(t, bucketB, "in/b1", []byte("b"), md5hex([]byte("b")))

	all, pages := listAll(t, srv, apiKey, url.Values{"bucket": {bucketA}, "prefix": {"in/"}}, 7)
	if pages < 3 {
		t.Fatalf("%d pages of 7 for %d keys", pages, len(want))
	}
	if len(all) != len(want) {
		t.Fatalf("listed %d objects, want %d: %v", len(all), len(want), keysOf(all))
	}
	for i, o := range all {
		if o.Key != want[i] {
			t.Fatalf("position %d: %s, want %s (all: %v)", i, o.Key, want[i], keysOf(all))
		}
		wantState := archive.StateArchived
		switch o.Key {
		case "in/f03":
			wantState = archive.StateNoJob
		case "in/f10a", "in/zz":
			wantState = archive.StateObjectMissing
		}
		if o.State != wantState {
			t.Errorf("%s: state %s, want %s", o.Key, o.State, wantState)
		}
		if wantState == archive.StateArchived && (o.Job == nil || o.Job.JobID != "job-"+strings.TrimPrefix(o.Key, "in/f") ||
			o.MD5 != md5hex([]byte("bytes of "+o.Key)) || o.Size == nil || *o.Size != int64(len("bytes of "+o.Key))) {
			t.Errorf("%s: %+v, job %+v", o.Key, o, o.Job)
		}
		if wantState == archive.StateObjectMissing && (o.Size != nil || o.Job == nil) {
			t.Errorf("%s: a missing object listed with size %v, job %v", o.Key, o.Size, o.Job)
		}
	}
	if j := all[5].Job; j == nil || j.AnnouncedBy != "account:op-1" || j.Source != "default" || j.RemotePath != "/in/f05" {
		t.Errorf("in/f05's job %+v", j)
	}

	// The date filter: objects by LastModified (all now), missing jobs by their finished time.
	p, _, _ := listPage(t, srv, apiKey, url.Values{"bucket": {bucketA}, "prefix": {"in/"}, "until": {at.Add(time.Minute).Format(time.RFC3339)}}.Encode())
	if keys := keysOf(p.Objects); len(keys) != 2 || keys[0] != "in/f10a" || keys[1] != "in/zz" {
		t.Fatalf("until an hour ago: %v, want only the missing objects' jobs", keys)
	}
	tomorrow := time.Now().AddDate(0, 0, 1).UTC().Format(time.DateOnly)
	if p, _, _ := listPage(t, srv, apiKey, "prefix=in/&since="+tomorrow); len(p.Objects) != 0 || p.Next != "" {
		t.Fatalf("since tomorrow: %v next %q", keysOf(p.Objects), p.Next)
	}
	if p, _, _ := listPage(t, srv, apiKey, "bucket="+bucketB); len(p.Objects) != 1 || p.Objects[0].State != archive.StateNoJob {
		t.Fatalf("bucket B: %+v", p.Objects)
	}

	// Refused: another bucket, a bad date, a bad limit; a reader is needed.
	for q, code := range map[string]int{"bucket=" + bucketOther: 400, "since=yesterday": 400, "limit=1001": 400} {
		if got, body, _ := do(t, nil, "GET", srv.URL+"/api/v1/objects?"+q, apiKey, nil); got != code {
			t.Errorf("%s: %d %s, want %d", q, got, body, code)
		}
	}
	for _, u := range []string{"/api/v1/objects/content?key=in/f01&bucket=" + bucketOther, "/api/v1/objects/content?bucket=" + bucketA} {
		if code, body, _ := do(t, nil, "GET", srv.URL+u, apiKey, nil); code != 400 {
			t.Errorf("GET %s: %d %s, want 400", u, code, body)
		}
	}
	if code, _, _ := do(t, nil, "DELETE", srv.URL+"/api/v1/objects?key=x&bucket="+bucketOther, apiKey, nil); code != 400 {
		t.Errorf("DELETE in another bucket: %d, want 400", code)
	}
	if code, _, _ := do(t, nil, "GET", srv.URL+"/api/v1/objects", "", nil); code != 401 {
		t.Errorf("list without a key: %d", code)
	}
}

func keysOf(objs []archive.Object) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.Key
	}
	return out
}

// fetch GETs an object's content with the key, asking for trailers when te.
func fetch(t *testing.T, c *http.Client, u, key string, te bool) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if te {
		req.Header.Set("TE", "trailers")
	}
	return send(t, c, req, key)
}

// A download streams the bytes with their MD5 in the trailer; one whose bytes were replaced under
// the original md5 metadata is broken off, never delivered whole; with presign the answer is a
// redirect to a URL that serves the bytes.
func TestArchiveFetch(t *testing.T) {
	f := startArchive(t)
	srv := f.server(t, ui.Options{APIKey: apiKey}, false)
	body := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320,000 bytes: more than is held back
	sum := md5hex(body)
	f.put(t, bucketA, "in/data.bin", body, sum)
	f.archived(t, "job-data", bucketA, "in/data.bin", sum, time.Now(), "")
	u := srv.URL + "/api/v1/objects/content?" + url.Values{"bucket": {bucketA}, "key": {"in/data.bin"}}.Encode()

	resp, got, err := fetch(t, nil, u, apiKey, true)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, body) {
		t.Fatalf("fetch: %d, %d bytes, %v", resp.StatusCode, len(got), err)
	}
	if tr := resp.Trailer.Get(ui.TrailerMD5); tr != sum {
		t.Fatalf("trailer %s = %q, want %s", ui.TrailerMD5, tr, sum)
	}
	if resp.Header.Get(ui.HeaderExpectedMD5) != sum || resp.Header.Get(ui.HeaderSize) != fmt.Sprint(len(body)) ||
		resp.Header.Get("Content-Disposition") != `attachment; filename=data.bin` {
		t.Fatalf("headers %v", resp.Header)
	}
	// A browser asks for no trailer: it gets the length, so a cut-off download shows as failed.
	resp, got, err = fetch(t, nil, u, apiKey, false)
	if err != nil || !bytes.Equal(got, body) || resp.ContentLength != int64(len(body)) {
		t.Fatalf("fetch without TE: %d bytes of %d (length %d), %v", len(got), len(body), resp.ContentLength, err)
	}
	if code, _, _ := do(t, nil, "GET", srv.URL+"/api/v1/objects/content?key=in/none", apiKey, nil); code != 404 {
		t.Fatalf("a missing object: %d", code)
	}

	// The bytes replaced behind kafkasync's back, the md5 metadata kept: both ways broken off.
	bad := bytes.Clone(body)
	bad[len(bad)/2] ^= 1
	f.put(t, bucketA, "in/data.bin", bad, sum)
	for _, te := range []bool{true, false} {
		_, got, err := fetch(t, nil, u, apiKey, te)
		if err == nil {
			t.Fatalf("corrupted object (TE %v): %d bytes delivered whole", te, len(got))
		}
		if len(got) >= len(body) {
			t.Fatalf("corrupted object (TE %v): %d bytes of %d reached the client", te, len(got), len(body))
		}
		t.Logf("corrupted object, TE %v: broken off after %d of %d bytes: %v", te, len(got), len(body), err)
	}
	// Its listing says so too: the ETag of the bytes is not the job's MD5.
	if p, _, _ := listPage(t, srv, apiKey, "prefix=in/data"); len(p.Objects) != 1 || p.Objects[0].State != archive.StateMD5Differs {
		t.Fatalf("corrupted object listed as %+v", p.Objects)
	}

	// Presigned: 303 to S3, whose URL serves the bytes without any key.
	f.put(t, bucketA, "in/data.bin", body, sum)
	presigned := f.server(t, ui.Options{APIKey: apiKey}, true)
	pu := presigned.URL + "/api/v1/objects/content?" + url.Values{"key": {"in/data.bin"}}.Encode()
	resp, _, _ = fetch(t, nil, pu, apiKey, false)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "X-Amz-Signature") || resp.Header.Get(ui.HeaderExpectedMD5) != sum {
		t.Fatalf("presigned: %d %q %v", resp.StatusCode, loc, resp.Header)
	}
	if strings.Contains(loc, "X-Amz-Expires=300") == false {
		t.Errorf("presigned URL %s is not valid for 5 minutes", loc)
	}
	r2, err := http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(r2.Body)
	r2.Body.Close()
	if r2.StatusCode != 200 || !bytes.Equal(got, body) {
		t.Fatalf("the presigned URL: %d, %d bytes", r2.StatusCode, len(got))
	}
}

// Only an admin deletes, with its key or through the page's confirmation; the deletion is recorded
// with the actor, shows as deleted in the listing and on the job's timeline.
func TestArchiveDeleteRoles(t *testing.T) {
	f := startArchive(t)
	srv := f.server(t, ui.Options{}, false)
	ctx := context.Background()
	const pw = "a long enough password"
	keys := roleAccounts(t, f.store, pw)
	for _, key := range []string{"in/a.bin", "in/b.bin", "in/c.bin"} {
		body := []byte("bytes of " + key)
		f.put(t, bucketA, key, body, md5hex(body))
		f.archived(t, "job-"+strings.TrimSuffix(strings.TrimPrefix(key, "in/"), ".bin"), bucketA, key, md5hex(body), time.Now().Add(-time.Minute), "")
	}
	del := srv.URL + "/api/v1/objects?" + url.Values{"bucket": {bucketA}, "key": {"in/a.bin"}}.Encode()
	for _, role := range []string{audit.RoleViewer, audit.RoleOperator} {
		if code, body, _ := do(t, nil, "DELETE", del, keys[role], nil); code != 403 || !strings.Contains(body, "needs the admin role") {
			t.Fatalf("%s deleting: %d %s", role, code, body)
		}
	}
	code, body, _ := do(t, nil, "DELETE", del, keys[audit.RoleAdmin], nil)
	var d struct {
		Bucket    string    `json:"bucket"`
		Key       string    `json:"key"`
		VersionID *string   `json:"version_id"`
		DeletedBy string    `json:"deleted_by"`
		DeletedAt time.Time `json:"deleted_at"`
	}
	if err := json.Unmarshal([]byte(body), &d); code != 200 || err != nil || d.Key != "in/a.bin" || d.Bucket != bucketA ||
		!strings.HasSuffix(d.DeletedBy, "@admin-1") || time.Since(d.DeletedAt) > time.Minute {
		t.Fatalf("admin deleting: %d %s", code, body)
	}
	if code, _, _ := do(t, nil, "DELETE", del, keys[audit.RoleAdmin], nil); code != 404 {
		t.Fatalf("deleting it again: %d", code)
	}
	p, _, _ := listPage(t, srv, keys[audit.RoleViewer], "prefix=in/")
	if len(p.Objects) != 3 || p.Objects[0].State != archive.StateDeleted || p.Objects[0].Deletion == nil || p.Objects[0].Deletion.Actor != d.DeletedBy {
		t.Fatalf("after the deletion: %+v", p.Objects)
	}
	evs, err := f.store.Events(ctx, "job-a")
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.Step != "object_deleted" || last.Detail == nil || !strings.Contains(*last.Detail, d.DeletedBy) {
		t.Fatalf("job-a's timeline ends with %+v", last)
	}
	if code, page, _ := do(t, nil, "GET", srv.URL+"/jobs/job-a", keys[audit.RoleViewer], nil); code != 200 || !strings.Contains(page, "object_deleted") {
		t.Fatalf("job page %d does not show the deletion", code)
	}

	// The page: a viewer sees Download and no Delete; an admin deletes after typing the key.
	viewer, _, _ := loginAs(t, srv, "viewer-1", pw)
	_, page, _ := do(t, viewer, "GET", srv.URL+"/archive?prefix=in/", "", nil)
	if !strings.Contains(page, `id="nav-archive"`) || !strings.Contains(page, `class="download"`) || strings.Contains(page, "/archive/delete") ||
		!strings.Contains(page, `id="role-note"`) {
		t.Fatalf("the viewer's archive page:\n%s", page)
	}
	if code, _, _ := do(t, viewer, "POST", srv.URL+"/archive/delete", "", url.Values{"_csrf": {csrfOf(t, viewer, srv)}, "bucket": {bucketA},
		"key": {"in/b.bin"}, "confirm": {"in/b.bin"}}); code != 403 {
		t.Fatalf("a viewer's delete form: %d", code)
	}
	admin, token, _ := loginAs(t, srv, "admin-1", pw)
	_, page, _ = do(t, admin, "GET", srv.URL+"/archive?prefix=in/", "", nil)
	if !strings.Contains(page, "/archive/delete") || !strings.Contains(page, "deleted") {
		t.Fatalf("the admin's archive page:\n%s", page)
	}
	form := url.Values{"_csrf": {token}, "bucket": {bucketA}, "key": {"in/b.bin"}, "back": {"prefix=in/"}}
	code, page, _ = do(t, admin, "POST", srv.URL+"/archive/delete", "", form)
	if code != 200 || !strings.Contains(page, `id="confirm-key"`) || !strings.Contains(page, "job-b") {
		t.Fatalf("confirmation page %d:\n%s", code, page)
	}
	form.Set("confirm", "in/b.bi")
	if code, page, _ = do(t, admin, "POST", srv.URL+"/archive/delete", "", form); code != 200 || !strings.Contains(page, `id="mismatch"`) {
		t.Fatalf("a mistyped key: %d\n%s", code, page)
	}
	form.Set("confirm", "in/b.bin")
	code, _, hdr := do(t, admin, "POST", srv.URL+"/archive/delete", "", form)
	if loc := hdr.Get("Location"); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/archive?") || !strings.Contains(loc, "notice=") ||
		!strings.Contains(loc, "prefix=in%2F") {
		t.Fatalf("confirmed delete: %d, to %q", code, loc)
	}
	if _, err := f.s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("in/b.bin")}); err == nil {
		t.Fatal("in/b.bin is still in the bucket")
	}
	dels, err := f.store.ObjectDeletions(ctx, bucketA, []string{"in/b.bin"})
	if err != nil || dels["in/b.bin"].Actor != "account:admin-1" || dels["in/b.bin"].JobID == nil || *dels["in/b.bin"].JobID != "job-b" {
		t.Fatalf("recorded deletion %+v %v", dels, err)
	}
}

// csrfOf reads a CSRF token from a page the client may see.
func csrfOf(t *testing.T, c *http.Client, srv *httptest.Server) string {
	t.Helper()
	_, body, _ := do(t, c, "GET", srv.URL+"/archive", "", nil)
	return csrf(t, body)
}
