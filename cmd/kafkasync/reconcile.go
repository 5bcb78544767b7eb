package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/kafkaops"
	"github.com/kafkasync/kafkasync/internal/reconcile"
	"github.com/kafkasync/kafkasync/internal/s3client"
	"github.com/kafkasync/kafkasync/workers"
)

// errDifferences is reconcile's failure when the ledger does not balance (exit code 1, as for any
// error, so cron mails it).
var errDifferences = errors.New("the ledger has differences")

func (a *app) reconcileCmd() *cobra.Command {
	var since time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "reconcile [--since 24h]",
		Short: "Check that every job message consumed in a window was archived, dead-lettered or is in flight (exit 1 on any difference)",
		Long: `reconcile keeps the ledger of a window. It reads the job messages the bridge's consumer group
consumed from the jobs topic (kafka.group, below its committed offsets) whose timestamps fall in
the window, and accounts for each, per topic and source:

  consumed = archived + dead-lettered + in flight + redelivered + differing

archived: its job is SUCCEEDED and the object is in its bucket with the job's MD5 (a HEAD checks
the md5 metadata, and the ETag of a single-part object); dead-lettered: the bridge refused it or
its workflow failed for good, with a dead letter; in flight: its workflow is running;
redelivered: a later message of a job already counted. Each difference is listed:

  object_missing               a SUCCEEDED job whose object is not in the bucket
  md5_differs                  the object's md5 metadata or bytes are not the job's
  message_without_workflow     a consumed message that started no workflow and has no dead letter
  failed_without_dead_letter   a job that failed for good whose dead letter was not published
  dead_letter_without_job      a workflow's dead letter whose job has no audit row

It reads PostgreSQL, the bucket, Kafka and Temporal. The exit code is 0 when nothing differs and
1 otherwise, for cron and monitoring:

  kafkasync reconcile --since 24h || mail -s "kafkasync: the ledger differs" ops@example.com < /dev/null
  kafkasync reconcile --since 168h --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := a.reconcile(cmd.Context(), time.Now().Add(-since))
			if err != nil {
				return err
			}
			if err := printReport(cmd.OutOrStdout(), r, asJSON); err != nil {
				return err
			}
			if len(r.Differences) > 0 {
				return fmt.Errorf("%w: %d", errDifferences, len(r.Differences))
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&since, "since", 24*time.Hour, "the window: messages and jobs this long ago or later")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// reconcile connects to what the ledger reads and reconciles the window from since.
func (a *app) reconcile(ctx context.Context, since time.Time) (reconcile.Report, error) {
	s3c, err := s3client.New(a.cfg.S3)
	if err != nil {
		return reconcile.Report{}, err
	}
	kcfg := a.cfg.Kafka
	kcfg.ClientID += "-reconcile"
	kc, err := kafkaops.DialConfig(kcfg)
	if err != nil {
		return reconcile.Report{}, err
	}
	defer kc.Close()
	tc, err := workers.Dial(ctx, a.cfg.Temporal, a.log)
	if err != nil {
		return reconcile.Report{}, err
	}
	defer tc.Close()
	var r reconcile.Report
	err = a.withStore(ctx, func(s *audit.Store) error {
		r, err = reconcile.Check(ctx, reconcile.ForConfig(a.cfg, s, s3c, kc, tc), since)
		return err
	})
	return r, err
}

func printReport(out io.Writer, r reconcile.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(out, "since %s\njobs created:", r.Since.UTC().Format(time.RFC3339))
	statuses := make([]string, 0, len(r.Statuses))
	for s := range r.Statuses {
		statuses = append(statuses, s)
	}
	sort.Strings(statuses)
	for _, s := range statuses {
		fmt.Fprintf(out, " %s %d", s, r.Statuses[s])
	}
	fmt.Fprintf(out, "\nobjects checked: %d\n", r.Checked)
	fmt.Fprintf(out, "%-24s %-16s %9s %9s %9s %9s %9s %9s\n", "TOPIC", "SOURCE", "CONSUMED", "ARCHIVED", "DEAD", "IN FLIGHT", "REDELIV", "DIFFERING")
	for _, l := range r.Ledger {
		src := l.Source
		if src == "" {
			src = "-"
		}
		fmt.Fprintf(out, "%-24s %-16s %9d %9d %9d %9d %9d %9d\n", l.Topic, src, l.Consumed, l.Archived, l.DeadLettered, l.InFlight, l.Redelivered, l.Differing)
	}
	fmt.Fprintf(out, "differences: %d\n", len(r.Differences))
	for _, d := range r.Differences {
		fmt.Fprintf(out, "  %s  %s\n", d.Kind, where(d))
		fmt.Fprintf(out, "      %s\n", d.Detail)
	}
	return nil
}

// where names what a difference is about: its job, object and message.
func where(d reconcile.Difference) string {
	s := ""
	if d.JobID != "" {
		s += "job " + d.JobID + "  "
	}
	if d.Key != "" {
		s += fmt.Sprintf("s3://%s/%s  ", d.Bucket, d.Key)
	}
	if d.Offset != nil {
		s += fmt.Sprintf("%s/%d/%d", d.Topic, *d.Partition, *d.Offset)
	}
	return s
}
