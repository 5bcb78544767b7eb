package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kafkasync/kafkasync/internal/archive"
	"github.com/kafkasync/kafkasync/ui"
)

// envAPIKey holds the API key `kafkasync archive` sends, unless --key is given.
const envAPIKey = "KAFKASYNC_API_KEY"

// maxPages bounds `archive ls --all`: a million objects at the largest page size.
const maxPages = 1000

// archiveClient calls the dashboard's archive API.
type archiveClient struct {
	base, key, bucket string
	hc                *http.Client
	// expected is the MD5 a redirect to a presigned URL announced (X-Kafkasync-Expected-MD5).
	expected string
}

func (a *app) archiveCmd() *cobra.Command {
	c := &archiveClient{}
	cmd := &cobra.Command{
		Use:   "archive",
		Short: "Browse, download and delete the archive's objects, through the dashboard's API",
		Long: `archive talks to the dashboard (kafkasync ui) over HTTP with an API key: an account's key
(kafkasync user key NAME) or the shared ui.api_key. Reading needs a viewer, deleting an admin.
The key comes from --key or, better (it then stays out of the process list), $KAFKASYNC_API_KEY;
it is never printed. The dashboard's URL is --url, else ui.public_url of the config.

Each object is shown with its state: archived (the object and its job agree), md5_differs (a
single-part object whose bytes are not what its job verified), no_job (no job of kafkasync's put
it there), object_missing (its job succeeded, the object is gone), deleted (through kafkasync).`,
		Example: `  export KAFKASYNC_API_KEY=ks_...
  kafkasync archive ls in/2024/ --since 2024-05-01 --all
  kafkasync archive get in/2024/report.csv -o report.csv
  kafkasync archive rm in/2024/report.csv --yes`,
	}
	cmd.PersistentFlags().StringVar(&c.base, "url", "", "the dashboard's URL (default ui.public_url, else http://<ui.listen>)")
	cmd.PersistentFlags().StringVar(&c.key, "key", "", "API key (default $"+envAPIKey+")")
	cmd.PersistentFlags().StringVar(&c.bucket, "bucket", "", "bucket (default the config's s3.bucket, as the dashboard has it)")
	cmd.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if err := cmd.Root().PersistentPreRunE(cmd, args); err != nil {
			return err
		}
		return c.init(a)
	}
	cmd.AddCommand(c.lsCmd(), c.getCmd(), c.rmCmd())
	return cmd
}

func (c *archiveClient) init(a *app) error {
	if c.base == "" {
		c.base = a.cfg.UI.PublicURL
	}
	if c.base == "" {
		c.base = "http://" + a.cfg.UI.Listen
	}
	c.base = strings.TrimRight(c.base, "/")
	if c.key == "" {
		c.key = os.Getenv(envAPIKey)
	}
	if c.key == "" {
		return fmt.Errorf("no API key: set $%s (or --key)", envAPIKey)
	}
	c.hc = &http.Client{
		// No overall timeout: a download takes as long as the object needs. Waiting for an answer does not.
		Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: time.Minute, IdleConnTimeout: time.Minute},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > 3 {
				return errors.New("too many redirects")
			}
			// The dashboard redirects a download to a presigned S3 URL: the key stays with the dashboard.
			req.Header.Del(ui.HeaderAPIKey)
			if req.Response != nil {
				if m := req.Response.Header.Get(ui.HeaderExpectedMD5); m != "" {
					c.expected = m
				}
			}
			return nil
		},
	}
	return nil
}

func (c *archiveClient) get(ctx context.Context, method, p string, q url.Values, trailers bool) (*http.Response, error) {
	if c.bucket != "" {
		q.Set("bucket", c.bucket)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+p+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(ui.HeaderAPIKey, c.key)
	if trailers {
		req.Header.Set("TE", "trailers")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, c.base+p, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, apiError(resp)
	}
	return resp, nil
}

// apiError is the API's own message: "403: this action needs the admin role; …".
func apiError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return fmt.Errorf("%d: %s", resp.StatusCode, e.Error)
	}
	return fmt.Errorf("%d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
}

func (c *archiveClient) lsCmd() *cobra.Command {
	var since, until, after string
	var asJSON, all bool
	var limit int
	cmd := &cobra.Command{
		Use:   "ls [PREFIX]",
		Short: "List the objects under a prefix, each with its state and job",
		Long: `ls lists a page of objects in key order (--limit, default 100), with the SUCCEEDED jobs whose
objects are gone merged in; --all follows the pages to the end. --since and --until take a date
(2024-05-01, UTC; --until includes that day), an RFC 3339 time, or a duration back from now (24h).`,
		Example: `  kafkasync archive ls
  kafkasync archive ls in/2024/ --since 168h --all
  kafkasync archive ls --bucket partner-b --json --all | jq '.[] | select(.state != "archived")'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if len(args) == 1 {
				q.Set("prefix", args[0])
			}
			for name, v := range map[string]string{"since": since, "until": until} {
				t, err := cliTime(v)
				if err != nil {
					return fmt.Errorf("--%s: %w", name, err)
				}
				if t != "" {
					q.Set(name, t)
				}
			}
			if after != "" {
				q.Set("after", after)
			}
			return c.ls(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), q, asJSON, all)
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "objects modified at or after this date, time or duration ago")
	cmd.Flags().StringVar(&until, "until", "", "objects modified before this time, or up to the end of this date")
	cmd.Flags().StringVar(&after, "after", "", "start after this key (the cursor ls prints)")
	cmd.Flags().IntVar(&limit, "limit", archive.DefaultLimit, "objects per page, 1..1000")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the objects as a JSON array")
	cmd.Flags().BoolVar(&all, "all", false, "follow the pages to the end")
	return cmd
}

// cliTime passes a date or RFC 3339 time on, and turns a duration into the time that long ago.
func cliTime(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return time.Now().Add(-d).UTC().Format(time.RFC3339), nil
	}
	if _, err := time.Parse(time.DateOnly, v); err == nil {
		return v, nil
	}
	if _, err := time.Parse(time.RFC3339, v); err == nil {
		return v, nil
	}
	return "", fmt.Errorf("%q: a date (2024-05-01), an RFC 3339 time or a duration (24h)", v)
}

func (c *archiveClient) ls(ctx context.Context, out, errw io.Writer, q url.Values, asJSON, all bool) error {
	var objs []archive.Object
	next := ""
	for pages := 0; pages < maxPages; pages++ {
		resp, err := c.get(ctx, http.MethodGet, "/api/v1/objects", q, false)
		if err != nil {
			return err
		}
		var p archive.Page
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("the dashboard's answer: %w", err)
		}
		objs, next = append(objs, p.Objects...), p.Next
		if !all || next == "" {
			break
		}
		q.Set("after", next)
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if objs == nil {
			objs = []archive.Object{}
		}
		if err := enc.Encode(objs); err != nil {
			return err
		}
	} else if err := printObjects(out, objs); err != nil {
		return err
	}
	if next != "" {
		fmt.Fprintf(errw, "more objects after %s: --all lists them all, --after %q goes on from here\n", next, next)
	}
	return nil
}

func printObjects(out io.Writer, objs []archive.Object) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tSIZE\tMODIFIED\tSTATE\tJOB")
	for _, o := range objs {
		size, mod, job := "-", "-", "-"
		if o.Size != nil {
			size = strconv.FormatInt(*o.Size, 10)
		}
		if o.LastModified != nil {
			mod = o.LastModified.UTC().Format(time.RFC3339)
		}
		if o.Job != nil {
			job = o.Job.JobID
		}
		state := o.State
		if d := o.Deletion; d != nil {
			state += " by " + d.Actor + " " + d.DeletedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", o.Key, size, mod, state, job)
	}
	return tw.Flush()
}

func (c *archiveClient) getCmd() *cobra.Command {
	var version, output string
	var force bool
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Download an object, its MD5 checked against the bytes received",
		Long: `get downloads an object through the dashboard (or from the presigned URL it redirects to, with
ui.presign) into -o FILE (default: the key's base name here; - for standard output). The MD5 of
the bytes received must equal the MD5 the dashboard computed as it sent them (the trailer
X-Kafkasync-MD5) and the MD5 expected of the object; the dashboard breaks a download off when the
object's bytes do not match. On a mismatch or a broken transfer get exits non-zero and leaves no
FILE behind (with -o - the bytes already written stay written).`,
		Example: `  kafkasync archive get in/2024/report.csv
  kafkasync archive get in/2024/report.csv -o /tmp/r.csv --force
  kafkasync archive get in/2024/big.bin -o - | sha256sum`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" {
				output = path.Base(args[0])
			}
			return c.download(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], version, output, force)
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "a version id (default the current object)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "file to write, - for standard output (default the key's base name)")
	cmd.Flags().BoolVar(&force, "force", false, "replace FILE if it exists")
	return cmd
}

func (c *archiveClient) download(ctx context.Context, stdout, errw io.Writer, key, version, output string, force bool) error {
	if output != "-" && !force {
		if _, err := os.Stat(output); err == nil {
			return fmt.Errorf("%s exists: --force replaces it", output)
		}
	}
	q := url.Values{"key": {key}}
	if version != "" {
		q.Set("version", version)
	}
	resp, err := c.get(ctx, http.MethodGet, "/api/v1/objects/content", q, true)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	base, _ := url.Parse(c.base)
	presigned := base != nil && resp.Request.URL.Host != base.Host
	want := resp.Header.Get(ui.HeaderExpectedMD5)
	if presigned {
		want = c.expected
	}
	dst, commit, abort, err := openOutput(stdout, output)
	if err != nil {
		return err
	}
	v := archive.Verify(resp.Body, want)
	if _, err := io.Copy(dst, v); err != nil {
		abort()
		return fmt.Errorf("broken transfer after %d bytes of %s: %w (the dashboard breaks a download off when the object's bytes do not match its MD5: its log says which)", v.N(), key, err)
	}
	if err := c.checkDownload(resp, v, presigned); err != nil {
		abort()
		return err
	}
	if err := commit(); err != nil {
		return err
	}
	where := output
	if output == "-" {
		where = "standard output"
	}
	fmt.Fprintf(errw, "%s: %d bytes, md5 %s (verified) -> %s\n", key, v.N(), v.Sum(), where)
	return nil
}

// checkDownload compares the bytes received with what the dashboard sent and what was expected.
func (c *archiveClient) checkDownload(resp *http.Response, v *archive.Verifier, presigned bool) error {
	if err := v.Check(); err != nil {
		return fmt.Errorf("md5 mismatch: %w", err)
	}
	if presigned {
		return nil // S3 sends no trailer; the expected MD5 was checked above
	}
	sent := resp.Trailer.Get(ui.TrailerMD5)
	switch {
	case sent == "":
		return fmt.Errorf("broken transfer: no %s trailer after %d bytes (a proxy that drops trailers, or a transfer cut short)", ui.TrailerMD5, v.N())
	case sent != v.Sum():
		return fmt.Errorf("md5 mismatch: the dashboard sent bytes with md5 %s, %d bytes received have %s", sent, v.N(), v.Sum())
	}
	if n := resp.Header.Get(ui.HeaderSize); n != "" && n != strconv.FormatInt(v.N(), 10) {
		return fmt.Errorf("broken transfer: %d bytes received, the object has %s", v.N(), n)
	}
	return nil
}

// openOutput writes to standard output, or to FILE.part renamed to FILE on commit and removed on
// abort, so a failed download never leaves a FILE that looks complete.
func openOutput(stdout io.Writer, output string) (io.Writer, func() error, func(), error) {
	if output == "-" {
		return stdout, func() error { return nil }, func() {}, nil
	}
	part := output + ".part"
	f, err := os.OpenFile(part, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, nil, nil, err
	}
	commit := func() error {
		if err := f.Close(); err != nil {
			os.Remove(part)
			return err
		}
		return os.Rename(part, output)
	}
	abort := func() { f.Close(); os.Remove(part) }
	return f, commit, abort, nil
}

func (c *archiveClient) rmCmd() *cobra.Command {
	var version string
	var yes bool
	cmd := &cobra.Command{
		Use:   "rm KEY --yes",
		Short: "Delete an object (admin role); the audit trail records who did",
		Long: `rm deletes an object from the bucket through the dashboard, which records the deletion
(table object_deletions, and the job's timeline when a job archived it) with the key's account.
It needs an admin's key and --yes. On a versioned bucket, without --version the current version
gets a delete marker; with --version that version is deleted for good.`,
		Example: `  kafkasync archive rm in/2024/report.csv --yes
  kafkasync archive rm in/2024/report.csv --version 3HL4kqtJlcpXroDTDmJ --yes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return fmt.Errorf("rm deletes %s from the bucket: add --yes to confirm", args[0])
			}
			q := url.Values{"key": {args[0]}}
			if version != "" {
				q.Set("version", version)
			}
			resp, err := c.get(cmd.Context(), http.MethodDelete, "/api/v1/objects", q, false)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var d struct {
				Bucket    string    `json:"bucket"`
				Key       string    `json:"key"`
				VersionID *string   `json:"version_id"`
				DeletedBy string    `json:"deleted_by"`
				DeletedAt time.Time `json:"deleted_at"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
				return fmt.Errorf("the dashboard's answer: %w", err)
			}
			v := ""
			if d.VersionID != nil {
				v = " (version " + *d.VersionID + ")"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted s3://%s/%s%s by %s at %s\n", d.Bucket, d.Key, v, d.DeletedBy, d.DeletedAt.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "a version id (default the current object)")
	cmd.Flags().BoolVar(&yes, "yes", false, "really delete")
	return cmd
}
