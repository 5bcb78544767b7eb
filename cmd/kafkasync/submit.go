package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"

	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/kafkaconn"
	"github.com/kafkasync/kafkasync/internal/samplefile"
	"github.com/kafkasync/kafkasync/starter"
	"github.com/kafkasync/kafkasync/workers"
)

func (a *app) submitCmd() *cobra.Command {
	var (
		j       = job.Job{Size: -1}
		md5From string
		wait    bool
	)
	cmd := &cobra.Command{
		Use:   "submit --remote-path /path/on/sftp [--md5 HEX | --md5-from LOCAL_COPY]",
		Short: "Publish a job for one remote file to the jobs topic",
		Long: `submit publishes one job message to kafka.jobs_topic, keyed by its id. It computes nothing it
cannot see: pass the file's MD5 with --md5, or --md5-from a local copy of the file (which also sets
the size). Without either, the job carries no checksum and kafkasync records the one it computes.
With --wait it follows the job's workflow to the end and exits non-zero if it failed.`,
		Example: `  kafkasync submit --remote-path /uploads/a.bin --md5-from ./a.bin --wait
  kafkasync submit --id invoice-42 --remote-path /in/42.pdf --md5 9e107d9d372bb6826bd81d3542a419d6`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if md5From != "" {
				sum, size, err := samplefile.MD5(md5From)
				if err != nil {
					return err
				}
				if j.MD5 != "" && !strings.EqualFold(j.MD5, sum) {
					return fmt.Errorf("--md5 %s differs from the md5 of %s (%s)", j.MD5, md5From, sum)
				}
				j.MD5, j.Size = sum, size
			}
			prod, err := kafkaconn.NewProducer(a.cfg.Kafka, 0)
			if err != nil {
				return err
			}
			defer prod.Close()
			parsed, part, off, err := starter.Submit(prod, a.cfg.Kafka.JobsTopic, j)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "submitted job %s to %s[%d]@%d (workflow %s)\n", parsed.ID, a.cfg.Kafka.JobsTopic, part, off, parsed.WorkflowID())
			if !wait {
				return nil
			}
			c, err := workers.Dial(cmd.Context(), a.cfg.Temporal, a.log)
			if err != nil {
				return err
			}
			defer c.Close()
			return follow(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), c, parsed.WorkflowID(), false)
		},
	}
	f := cmd.Flags()
	f.StringVar(&j.ID, "id", "", "job id (default: derived from path and md5)")
	f.StringVar(&j.RemotePath, "remote-path", "", "absolute path of the file on the SFTP server (required)")
	f.StringVar(&j.MD5, "md5", "", "expected MD5, hex")
	f.StringVar(&md5From, "md5-from", "", "local copy of the file to take the MD5 and size from")
	f.Int64Var(&j.Size, "size", -1, "expected size in bytes")
	f.StringVar(&j.DestKey, "dest-key", "", "S3 key (default: the remote path without its leading slash)")
	f.BoolVar(&wait, "wait", false, "follow the workflow until it ends")
	_ = cmd.MarkFlagRequired("remote-path")
	return cmd
}

func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}
