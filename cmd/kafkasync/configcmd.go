package main

import (
	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"
)

func (a *app) configCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration as TOML (secrets redacted)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return toml.NewEncoder(cmd.OutOrStdout()).Encode(a.cfg)
		},
	}
}
