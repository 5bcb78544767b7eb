package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"golang.org/x/term"

	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/ui"
	"github.com/kafkasync/kafkasync/workers"
	"github.com/kafkasync/kafkasync/workflows"
)

func (a *app) statusCmd() *cobra.Command {
	var once bool
	cmd := &cobra.Command{
		Use:   "status JOB_ID",
		Short: "Show a job's progress: follow its workflow with a progress bar until it ends",
		Long: `status reads the job's workflow (file-<JOB_ID>) from Temporal: its current step and, while it
downloads, the bytes and ranges written so far and the rate, from the download's last heartbeat.
It follows the job until the workflow ends and exits non-zero if the job failed. --once prints the
current state and returns.`,
		Example: `  kafkasync status invoice-42
  kafkasync status invoice-42 --once`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := workers.Dial(cmd.Context(), a.cfg.Temporal, a.log)
			if err != nil {
				return err
			}
			defer c.Close()
			wf := args[0]
			if !strings.HasPrefix(wf, "file-") {
				wf = job.Job{ID: wf}.WorkflowID()
			}
			return follow(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), c, wf, once)
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "print the current state and return instead of following")
	return cmd
}

// follow shows the workflow's progress on errw (a bar on a terminal, a line every few seconds
// elsewhere) until it ends, then prints the outcome on out.
func follow(ctx context.Context, out, errw io.Writer, c client.Client, wf string, once bool) error {
	read := ui.TemporalProgress(c)
	tty := false
	if f, ok := errw.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	var bar *progressbar.ProgressBar
	var lastLine time.Time
	defer func() {
		if bar != nil {
			_ = bar.Finish()
			fmt.Fprintln(errw)
		}
	}()
	for {
		p, err := read(ctx, wf, "")
		if isNotFound(err) && !once {
			select { // the bridge may not have started it yet
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
				continue
			}
		}
		if err != nil {
			return err
		}
		if !p.Running {
			break
		}
		desc := p.Step
		if desc == "" {
			desc = "waiting"
		}
		if p.Attempt > 1 {
			desc += fmt.Sprintf(" (attempt %d)", p.Attempt)
		}
		switch {
		case once:
			fmt.Fprintf(out, "%s: running, step %s", wf, desc)
			if p.Size > 0 {
				fmt.Fprintf(out, ", %d of %d bytes (%.1f %%), ranges %d/%d, %.1f MB/s", p.BytesDone, p.Size, p.Percent(),
					p.RangesDone, p.Ranges, p.BytesPerSec/1e6)
			}
			fmt.Fprintln(out)
			return nil
		case tty:
			if bar == nil {
				bar = progressbar.NewOptions64(max(p.Size, 1), progressbar.OptionSetWriter(errw), progressbar.OptionShowBytes(true),
					progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionShowCount(),
					progressbar.OptionSetPredictTime(true), progressbar.OptionFullWidth())
			}
			if p.Size > 0 {
				bar.ChangeMax64(p.Size)
				_ = bar.Set64(p.BytesDone)
			}
			bar.Describe(desc)
		case time.Since(lastLine) > 2*time.Second:
			lastLine = time.Now()
			fmt.Fprintf(errw, "%s: %s %d/%d bytes (%.1f %%)\n", wf, desc, p.BytesDone, p.Size, p.Percent())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(errw)
		bar = nil
	}
	var r workflows.Result
	run := c.GetWorkflow(ctx, wf, "")
	err := run.Get(ctx, &r)
	if err != nil {
		d, derr := c.DescribeWorkflowExecution(ctx, wf, "")
		st := "failed"
		if derr == nil {
			st = strings.ToLower(strings.TrimPrefix(d.GetWorkflowExecutionInfo().GetStatus().String(), "WORKFLOW_EXECUTION_STATUS_"))
			if d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				st = "running"
			}
		}
		return fmt.Errorf("%s %s: %w", wf, st, errors.Unwrap(err))
	}
	fmt.Fprintf(out, "%s succeeded: %d bytes, md5 %s, s3://%s/%s, download %.1f MB/s\n", wf, r.Size, r.MD5, r.Bucket, r.Key,
		r.Download.BytesPerSec/1e6)
	return nil
}
