package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kafkasync/kafkasync/internal/audit"
)

func (a *app) userCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage the dashboard's accounts and their API keys (in postgres.dsn)",
		Long: `user manages the accounts that log into the dashboard or call its API, directly in the audit
database (postgres.dsn), so whoever can run it needs that database's credentials.

Roles: viewer (read the pages and the API), operator (also submit, replay and discard), admin (also
manage accounts and keys). A password is 12 to 72 bytes, stored as a bcrypt hash. An API key is
shown once, when it is made, and stored as its SHA-256; send it in the X-API-Key header. Every
change records who made it: cli:<the system user running this command>. An admin can do the same
on the dashboard's Accounts page (/accounts) and its API (/api/v1/accounts).

  kafkasync user add alice --role operator      # asks for the password on the terminal
  printf '%s' "$PW" | kafkasync user add ci --role viewer --password-stdin
  kafkasync user add deploy-bot --role operator --no-password   # keys only
  kafkasync user key deploy-bot                 # prints a new key, once
  kafkasync user list
  kafkasync user revoke-key ks_AbCdEfGh
  kafkasync user disable alice                  # also revokes alice's keys; her sessions end`,
	}
	cmd.AddCommand(a.userAddCmd(), a.userListCmd(), a.userDisableCmd(), a.userKeyCmd(), a.userRevokeKeyCmd())
	return cmd
}

// withStore runs f on the migrated audit store.
func (a *app) withStore(ctx context.Context, f func(*audit.Store) error) error {
	store, err := audit.OpenMigrated(ctx, a.cfg.Postgres.DSN.Reveal())
	if err != nil {
		return err
	}
	defer store.Close()
	return f(store)
}

// cliActor names whoever runs the command in what it records.
func cliActor() string {
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	return "cli:unknown"
}

func (a *app) userAddCmd() *cobra.Command {
	var role string
	var stdin, none bool
	cmd := &cobra.Command{
		Use:   "add NAME --role viewer|operator|admin",
		Short: "Add an account (the password is asked for, or read from stdin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw := ""
			if !none {
				var err error
				if pw, err = readPassword(cmd.InOrStdin(), cmd.ErrOrStderr(), stdin); err != nil {
					return err
				}
			}
			return a.withStore(cmd.Context(), func(s *audit.Store) error {
				acct, err := s.AddAccount(cmd.Context(), args[0], role, pw, cliActor())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "added %s (%s)\n", acct.Name, acct.Role)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "viewer, operator or admin (required)")
	cmd.Flags().BoolVar(&stdin, "password-stdin", false, "read the password from stdin instead of asking")
	cmd.Flags().BoolVar(&none, "no-password", false, "no password: the account uses API keys only")
	cmd.MarkFlagRequired("role")
	return cmd
}

// readPassword reads the password: from a terminal without echo, asked twice; else one line of in.
func readPassword(in io.Reader, prompt io.Writer, fromStdin bool) (string, error) {
	if f, ok := in.(*os.File); ok && !fromStdin && term.IsTerminal(int(f.Fd())) {
		ask := func(q string) (string, error) {
			fmt.Fprint(prompt, q)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(prompt)
			return string(b), err
		}
		pw, err := ask("password: ")
		if err != nil {
			return "", err
		}
		if again, err := ask("again: "); err != nil || again != pw {
			return "", fmt.Errorf("the passwords differ")
		}
		return pw, nil
	}
	line, err := bufio.NewReader(io.LimitReader(in, 1024)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (a *app) userListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the accounts and their keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(s *audit.Store) error {
				accts, err := s.Accounts(cmd.Context())
				if err != nil {
					return err
				}
				keys, err := s.APIKeys(cmd.Context(), "")
				if err != nil {
					return err
				}
				return printAccounts(cmd.OutOrStdout(), accts, keys)
			})
		},
	}
}

func printAccounts(out io.Writer, accts []audit.Account, keys []audit.APIKey) error {
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tROLE\tPASSWORD\tCREATED\tBY\tSTATE")
	for _, a := range accts {
		state := "enabled"
		if a.DisabledAt != nil {
			state = "disabled " + a.DisabledAt.UTC().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\n", a.Name, a.Role, a.HasPass, a.CreatedAt.UTC().Format(time.DateTime), a.CreatedBy, state)
	}
	fmt.Fprintln(tw, "\nKEY\tACCOUNT\tCREATED\tBY\tLAST USED\tSTATE")
	for _, k := range keys {
		used, state := "never", "live"
		if k.LastUsed != nil {
			used = k.LastUsed.UTC().Format(time.DateTime)
		}
		if k.RevokedAt != nil {
			state = "revoked " + k.RevokedAt.UTC().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s…\t%s\t%s\t%s\t%s\t%s\n", k.Prefix, k.Account, k.CreatedAt.UTC().Format(time.DateTime), k.CreatedBy, used, state)
	}
	return tw.Flush()
}

func (a *app) userDisableCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "disable NAME",
		Short: "Disable an account: its keys are revoked and its sessions end",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd.Context(), func(s *audit.Store) error {
				if err := s.DisableAccount(cmd.Context(), args[0], cliActor()); err != nil {
					return fmt.Errorf("disable %s: %w", args[0], err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "disabled %s\n", args[0])
				return nil
			})
		},
	}
}

func (a *app) userKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "key NAME",
		Short: "Make a new API key for an account and print it (the only time it is shown)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd.Context(), func(s *audit.Store) error {
				key, k, err := s.AddAPIKey(cmd.Context(), args[0], cliActor())
				if err != nil {
					return fmt.Errorf("key for %s: %w", args[0], err)
				}
				fmt.Fprintln(cmd.OutOrStdout(), key)
				fmt.Fprintf(cmd.ErrOrStderr(), "key %s… for %s: send it in X-API-Key; it is not shown again\n", k.Prefix, k.Account)
				return nil
			})
		},
	}
}

func (a *app) userRevokeKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke-key PREFIX",
		Short: "Revoke the API key that starts with PREFIX (as `user list` shows it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd.Context(), func(s *audit.Store) error {
				if _, err := s.RevokeAPIKey(cmd.Context(), strings.TrimSuffix(args[0], "…"), cliActor()); err != nil {
					return fmt.Errorf("revoke %s: %w", args[0], err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[0])
				return nil
			})
		},
	}
}
