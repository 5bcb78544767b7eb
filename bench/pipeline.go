package main

import (
	"context"
	"io"
)

func pipelineScenarios(ctx context.Context, o options, sshd *SSHD, dir string, r *report, w io.Writer) error {
	return nil
}
