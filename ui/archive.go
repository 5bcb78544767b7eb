package ui

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/labstack/echo/v4"

	"github.com/kafkasync/kafkasync/internal/archive"
	"github.com/kafkasync/kafkasync/internal/audit"
)

// ArchiveOptions offers the archive: its objects browsed, fetched and deleted.
type ArchiveOptions struct {
	S3 *s3.Client
	// Buckets may be browsed (archive.Buckets: the default bucket first, then the sources' own);
	// a request naming another is refused.
	Buckets []string
	// Presign answers a download with a redirect to a presigned URL instead of the bytes.
	Presign bool
}

// Headers of an object download. The trailer carries the MD5 of the bytes sent, computed as they
// went out; a download whose bytes do not match the expected MD5 is broken off instead.
const (
	HeaderExpectedMD5 = "X-Kafkasync-Expected-MD5"
	HeaderSize        = "X-Kafkasync-Size"
	HeaderVersionID   = "X-Kafkasync-Version-Id"
	TrailerMD5        = "X-Kafkasync-MD5"
)

const (
	// maxKeyLen is S3's own bound on a key; versions, cursors and prefixes are held to it too.
	maxKeyLen = 1024
	// presignTTL is how long a presigned download URL works.
	presignTTL = 5 * time.Minute
	// holdBack is how much of an object's end waits until its MD5 is checked.
	holdBack = 64 << 10
	// stallTimeout is how long one write of a download may take: the server's write timeout
	// bounds a page, not a large object.
	stallTimeout = time.Minute
)

func (h *handlers) archive() (*ArchiveOptions, error) {
	if h.o.Archive == nil || h.o.Archive.S3 == nil || len(h.o.Archive.Buckets) == 0 {
		return nil, echo.NewHTTPError(http.StatusNotImplemented, "the archive is not available here: no S3 client")
	}
	return h.o.Archive, nil
}

// bucket is the request's bucket, the default when it names none; another than the archive's is
// refused.
func (ao *ArchiveOptions) bucket(b string) (string, error) {
	if b == "" {
		return ao.Buckets[0], nil
	}
	if !slices.Contains(ao.Buckets, b) {
		return "", echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("bucket %q is not one of the archive's: %s", b, strings.Join(ao.Buckets, ", ")))
	}
	return b, nil
}

func bounded(name, v string) error {
	if len(v) > maxKeyLen {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("%s longer than %d bytes", name, maxKeyLen))
	}
	return nil
}

// parseDay reads an RFC 3339 time or a date (UTC); a date as an end is the end of that day.
func parseDay(name, s string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, echo.NewHTTPError(http.StatusBadRequest, name+": a date (2006-01-02) or an RFC 3339 time")
	}
	if end {
		d = d.AddDate(0, 0, 1)
	}
	return d, nil
}

func (h *handlers) archiveQuery(c echo.Context, ao *ArchiveOptions) (archive.Query, error) {
	var q archive.Query
	var err error
	if q.Bucket, err = ao.bucket(c.QueryParam("bucket")); err != nil {
		return q, err
	}
	q.Prefix, q.After = c.QueryParam("prefix"), c.QueryParam("after")
	for name, v := range map[string]string{"prefix": q.Prefix, "after": q.After} {
		if err := bounded(name, v); err != nil {
			return q, err
		}
	}
	if q.Since, err = parseDay("since", c.QueryParam("since"), false); err != nil {
		return q, err
	}
	if q.Until, err = parseDay("until", c.QueryParam("until"), true); err != nil {
		return q, err
	}
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > archive.MaxLimit {
			return q, echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("limit: want 1..%d", archive.MaxLimit))
		}
		q.Limit = n
	}
	return q, nil
}

func (h *handlers) objects(c echo.Context) (archive.Page, *ArchiveOptions, error) {
	ao, err := h.archive()
	if err != nil {
		return archive.Page{}, nil, err
	}
	q, err := h.archiveQuery(c, ao)
	if err != nil {
		return archive.Page{}, ao, err
	}
	p, err := archive.List(c.Request().Context(), h.o.Store, ao.S3, q)
	if err != nil {
		return p, ao, echo.NewHTTPError(http.StatusBadGateway, "cannot list the bucket now: try again shortly").SetInternal(err)
	}
	return p, ao, nil
}

func (h *handlers) apiObjects(c echo.Context) error {
	p, _, err := h.objects(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

type archiveData struct {
	Page    archive.Page
	Buckets []string
	// Since and Until are the filter as typed; Back is this page's query, for the delete form.
	Since, Until, Back string
	NextURL            string
	Notice             string
}

func (h *handlers) archivePage(c echo.Context) error {
	p, ao, err := h.objects(c)
	if err != nil {
		return err
	}
	back := archiveBack(c.QueryParams())
	d := archiveData{Page: p, Buckets: ao.Buckets, Since: c.QueryParam("since"), Until: c.QueryParam("until"), Back: back.Encode(),
		Notice: c.QueryParam("notice")}
	if p.Next != "" {
		back.Set("after", p.Next)
		d.NextURL = "/archive?" + back.Encode()
	}
	return c.Render(http.StatusOK, "archive.html", d)
}

// archiveBack keeps the archive page's own parameters of a query, so a form can return there.
func archiveBack(q url.Values) url.Values {
	out := url.Values{}
	for _, k := range []string{"bucket", "prefix", "since", "until", "after", "limit"} {
		if v := q.Get(k); v != "" && len(v) <= maxKeyLen {
			out.Set(k, v)
		}
	}
	return out
}

// objectRef is the bucket, key and version a request names.
type objectRef struct{ bucket, key, version string }

// objectRef reads the object a request names (get reads its parameters) and checks it against the
// archive, which it returns too.
func (h *handlers) objectRef(get func(string) string) (*ArchiveOptions, objectRef, error) {
	ao, err := h.archive()
	if err != nil {
		return nil, objectRef{}, err
	}
	r := objectRef{key: get("key"), version: get("version")}
	if r.bucket, err = ao.bucket(get("bucket")); err != nil {
		return ao, r, err
	}
	if r.key == "" {
		return ao, r, echo.NewHTTPError(http.StatusBadRequest, "key: required")
	}
	for name, v := range map[string]string{"key": r.key, "version": r.version} {
		if err := bounded(name, v); err != nil {
			return ao, r, err
		}
	}
	return ao, r, nil
}

func (r objectRef) String() string {
	s := "s3://" + r.bucket + "/" + r.key
	if r.version != "" {
		s += " version " + r.version
	}
	return s
}

func notFound(r objectRef) error {
	return echo.NewHTTPError(http.StatusNotFound, "no object "+r.String())
}

// objectContent sends an object's bytes with the caller's authorisation, checking them against the
// expected MD5 on the way; or, with Presign, redirects to a presigned URL.
func (h *handlers) objectContent(c echo.Context) error {
	ao, ref, err := h.objectRef(c.QueryParam)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if ao.Presign {
		return h.presigned(c, ao, ref)
	}
	body, info, err := archive.Open(ctx, ao.S3, ref.bucket, ref.key, ref.version)
	if errors.Is(err, archive.ErrNotFound) {
		return notFound(ref)
	}
	if err != nil {
		return echo.NewHTTPError(http.StatusBadGateway, "cannot read the object now: try again shortly").SetInternal(err)
	}
	defer body.Close()
	want, err := archive.ExpectedMD5(ctx, h.o.Store, info)
	if err != nil {
		return err
	}
	hdr := c.Response().Header()
	downloadHeaders(hdr, info, want)
	// HTTP/1.1 carries a trailer only in a chunked body, which has no Content-Length: a client
	// that asks for trailers (TE: trailers) gets them, the size in X-Kafkasync-Size; a browser
	// gets Content-Length, so a download cut short shows as failed. HTTP/2 carries both.
	trailers := c.Request().ProtoMajor >= 2 || acceptsTrailers(c.Request())
	if trailers {
		hdr.Set("Trailer", TrailerMD5)
	}
	if !trailers || c.Request().ProtoMajor >= 2 {
		hdr.Set(echo.HeaderContentLength, strconv.FormatInt(info.Size, 10))
	}
	c.Response().WriteHeader(http.StatusOK)
	rc := http.NewResponseController(c.Response())
	sum, err := archive.CopyVerified(stallWriter{w: c.Response(), rc: rc}, body, want, holdBack)
	if err != nil {
		h.o.Logger.Error("archive download broken off", "bucket", ref.bucket, "key", ref.key, "version", info.VersionID,
			"expected_md5", want, "md5", sum, "actor", actorFrom(c), "err", err)
		_ = rc.Flush()
		// The client must see a broken transfer, never a complete body with the wrong bytes.
		panic(http.ErrAbortHandler)
	}
	hdr.Set(TrailerMD5, sum)
	h.o.Logger.Info("archive download", "bucket", ref.bucket, "key", ref.key, "version", info.VersionID, "bytes", info.Size,
		"md5", sum, "actor", actorFrom(c))
	return nil
}

func downloadHeaders(hdr http.Header, info archive.Info, want string) {
	hdr.Set(echo.HeaderContentType, echo.MIMEOctetStream)
	hdr.Set(echo.HeaderContentDisposition, mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(info.Key)}))
	hdr.Set(HeaderSize, strconv.FormatInt(info.Size, 10))
	hdr.Set("Cache-Control", "no-store")
	if want != "" {
		hdr.Set(HeaderExpectedMD5, want)
	}
	if info.VersionID != "" {
		hdr.Set(HeaderVersionID, info.VersionID)
	}
}

func acceptsTrailers(r *http.Request) bool {
	for _, v := range r.Header.Values("TE") {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), "trailers") {
				return true
			}
		}
	}
	return false
}

// presigned redirects to a presigned URL of an object that exists, saying what its MD5 should be.
func (h *handlers) presigned(c echo.Context, ao *ArchiveOptions, ref objectRef) error {
	ctx := c.Request().Context()
	info, err := archive.Stat(ctx, ao.S3, ref.bucket, ref.key, ref.version)
	if errors.Is(err, archive.ErrNotFound) {
		return notFound(ref)
	}
	if err != nil {
		return echo.NewHTTPError(http.StatusBadGateway, "cannot read the object now: try again shortly").SetInternal(err)
	}
	want, err := archive.ExpectedMD5(ctx, h.o.Store, info)
	if err != nil {
		return err
	}
	u, err := archive.Presign(ctx, ao.S3, ref.bucket, ref.key, ref.version, presignTTL)
	if err != nil {
		return err
	}
	if want != "" {
		c.Response().Header().Set(HeaderExpectedMD5, want)
	}
	h.o.Logger.Info("archive download presigned", "bucket", ref.bucket, "key", ref.key, "version", ref.version, "actor", actorFrom(c))
	return c.Redirect(http.StatusSeeOther, u)
}

// stallWriter moves the write deadline on with every write: a large object may take longer than
// the server's write timeout, a client that stops reading may not hold the connection.
type stallWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (s stallWriter) Write(p []byte) (int, error) {
	_ = s.rc.SetWriteDeadline(time.Now().Add(stallTimeout)) // unsupported by a test recorder: no deadline then
	return s.w.Write(p)
}

// deleteObject deletes an object as the caller and records it.
func (h *handlers) deleteObject(c echo.Context, ref objectRef) (audit.ObjectDeletion, error) {
	ao, err := h.archive()
	if err != nil {
		return audit.ObjectDeletion{}, err
	}
	d, err := archive.Delete(c.Request().Context(), h.o.Store, ao.S3, ref.bucket, ref.key, ref.version, actorFrom(c))
	switch {
	case errors.Is(err, archive.ErrNotFound):
		return d, notFound(ref)
	case err != nil && d.Actor != "":
		// Deleted, but not recorded: say so, for the logs and the caller.
		return d, echo.NewHTTPError(http.StatusInternalServerError, "the object was deleted, but the audit trail could not record it").SetInternal(err)
	case err != nil:
		return d, echo.NewHTTPError(http.StatusBadGateway, "cannot delete the object now: try again shortly").SetInternal(err)
	}
	h.o.Logger.Info("archive object deleted", "bucket", d.Bucket, "key", d.Key, "version", deref(d.VersionID), "job_id", deref(d.JobID),
		"actor", d.Actor)
	return d, nil
}

func (h *handlers) apiDeleteObject(c echo.Context) error {
	_, ref, err := h.objectRef(c.QueryParam)
	if err != nil {
		return err
	}
	d, err := h.deleteObject(c, ref)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

type confirmData struct {
	Bucket, Key, Version, Back, BackURL string
	Job                                 *audit.ArchivedJob
	// Mismatch: what was typed is not the key.
	Mismatch bool
}

// archiveDeleteForm asks for the key to be typed first (a confirmation page), and deletes only when
// the form carries confirm=<key>; then back to the archive page with a notice.
func (h *handlers) archiveDeleteForm(c echo.Context) error {
	_, ref, err := h.objectRef(c.FormValue)
	if err != nil {
		return err
	}
	back, _ := url.ParseQuery(c.FormValue("back"))
	back = archiveBack(back)
	if confirm := c.FormValue("confirm"); confirm != ref.key {
		jobs, err := h.o.Store.ArchivedJobs(c.Request().Context(), ref.bucket, []string{ref.key})
		if err != nil {
			return err
		}
		d := confirmData{Bucket: ref.bucket, Key: ref.key, Version: ref.version, Back: back.Encode(),
			BackURL: "/archive?" + back.Encode(), Mismatch: confirm != ""}
		if j, ok := jobs[ref.key]; ok {
			d.Job = &j
		}
		return c.Render(http.StatusOK, "archive_confirm.html", d)
	}
	d, err := h.deleteObject(c, ref)
	if err != nil {
		return err
	}
	back.Set("notice", fmt.Sprintf("Deleted s3://%s/%s%s by %s", d.Bucket, d.Key, versionNote(d.VersionID), d.Actor))
	return c.Redirect(http.StatusSeeOther, "/archive?"+back.Encode())
}

func versionNote(v *string) string {
	if v == nil {
		return ""
	}
	return " (version " + *v + ")"
}
