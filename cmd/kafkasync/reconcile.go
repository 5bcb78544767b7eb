package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/reconcile"
	"github.com/kafkasync/kafkasync/internal/s3client"
)

func (a *app) reconcileCmd() *cobra.Command {
	var since time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "reconcile [--since 24h]",
		Short: "Check that every job archived in a window has its object, with its MD5 (exit 1 on any difference)",
		Long: `reconcile reads the jobs created in the window from the audit trail (postgres.dsn), counts them by
status, and checks each SUCCEEDED job's object in its bucket with a HEAD: the object must exist,
its md5 metadata must be the MD5 the job verified, and so must its ETag when that is a plain MD5
(a single-part object). Each difference is listed with its job:

  object_missing   the row says SUCCEEDED; the bucket has no such object
  md5_differs      the object's md5 metadata or bytes are not the job's

The exit code is 0 when there is none and 1 otherwise, for cron and monitoring:

  kafkasync reconcile --since 24h || mail -s "kafkasync: archive differs" ops@example.com < /dev/null
  kafkasync reconcile --since 168h --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s3c, err := s3client.New(a.cfg.S3)
			if err != nil {
				return err
			}
			var r reconcile.Report
			err = a.withStore(cmd.Context(), func(s *audit.Store) error {
				r, err = reconcile.Check(cmd.Context(), s, s3c, time.Now().Add(-since))
				return err
			})
			if err != nil {
				return err
			}
			if err := printReport(cmd.OutOrStdout(), r, asJSON); err != nil {
				return err
			}
			if len(r.Differences) > 0 {
				os.Exit(1)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&since, "since", 24*time.Hour, "the window: jobs created this long ago or later")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func printReport(out io.Writer, r reconcile.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(out, "jobs since %s:", r.Since.UTC().Format(time.RFC3339))
	statuses := make([]string, 0, len(r.Statuses))
	for s := range r.Statuses {
		statuses = append(statuses, s)
	}
	sort.Strings(statuses)
	for _, s := range statuses {
		fmt.Fprintf(out, " %s %d", s, r.Statuses[s])
	}
	fmt.Fprintf(out, "\nobjects checked: %d, differences: %d\n", r.Checked, len(r.Differences))
	for _, d := range r.Differences {
		fmt.Fprintf(out, "  %s  job %s  s3://%s/%s  %s\n", d.Kind, d.JobID, d.Bucket, d.Key, d.Detail)
	}
	return nil
}
