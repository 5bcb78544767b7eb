package main

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/kafkasync/kafkasync/internal/searchattr"
	"github.com/kafkasync/kafkasync/workers"
)

func (a *app) setupTemporalCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "setup-temporal",
		Short: "Register kafkasync's search attributes on a Temporal cluster (once per namespace)",
		Long: `setup-temporal registers the custom search attributes every kafkasync workflow carries in
temporal.namespace: JobID, FileName, RemoteHost, Source, JobStatus (Keyword) and FileSize (Int). With them,
jobs can be filtered in the Temporal Web UI and with, for example,
  temporal workflow list --query 'JobStatus="DEAD_LETTERED" AND RemoteHost="sftp.example.com"'
Running it again changes nothing. kafkasync dev registers them on its own dev server.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := workers.Dial(cmd.Context(), a.cfg.Temporal, a.log)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := searchattr.Register(cmd.Context(), c, a.cfg.Temporal.Namespace); err != nil {
				return err
			}
			names := make([]string, 0, len(searchattr.All))
			for n, t := range searchattr.All {
				names = append(names, fmt.Sprintf("%s (%s)", n, t))
			}
			sort.Strings(names)
			fmt.Fprintf(cmd.OutOrStdout(), "search attributes registered in namespace %s: %v\n", a.cfg.Temporal.Namespace, names)
			return nil
		},
	}
}
