package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) healthcheckCmd() *cobra.Command {
	var url string
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 when a kafkasync process answers its /healthz (for container health checks)",
		Long: `healthcheck fetches --url (default $KAFKASYNC_HEALTHCHECK_URL, else the dashboard's
http://127.0.0.1:8080/healthz) and exits 0 on a 2xx answer, 1 otherwise. The worker and the bridge
answer /healthz on their metrics port (metrics.worker_listen, metrics.bridge_listen).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" {
				url = os.Getenv("KAFKASYNC_HEALTHCHECK_URL")
			}
			if url == "" {
				url = "http://127.0.0.1:8080/healthz"
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("health %s: %w", url, err)
			}
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("health %s: %s", url, resp.Status)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "health URL (default $KAFKASYNC_HEALTHCHECK_URL)")
	return cmd
}
