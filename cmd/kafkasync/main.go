// Command kafkasync moves files announced on a Kafka topic from SFTP servers into S3-compatible
// storage, one durable Temporal workflow per file. Run `kafkasync --help`.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kafkasync/kafkasync/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafkasync:", err)
		os.Exit(1)
	}
}

// app holds what every subcommand shares: the loaded config and the logger.
type app struct {
	configFile string
	logLevel   string
	logFormat  string
	cfg        config.Config
	log        *slog.Logger
}

func newRoot() *cobra.Command {
	a := &app{}
	root := &cobra.Command{
		Use:   "kafkasync",
		Short: "Move files from SFTP servers to S3, one durable Temporal workflow per Kafka job message",
		Long: `kafkasync reads file jobs from a Kafka topic, and runs each as one Temporal workflow that
downloads the file from an SFTP server over parallel byte ranges (resuming after a crash),
verifies its MD5, promotes it atomically from staging to completed, uploads it to S3 and records
every step in PostgreSQL. Jobs that fail for good go to a dead-letter topic.

Configuration: built-in defaults, then the TOML file given by --config (or $KAFKASYNC_CONFIG),
then environment variables KAFKASYNC_<SECTION>_<KEY>, e.g. KAFKASYNC_SFTP_PASSWORD,
KAFKASYNC_KAFKA_BROKERS=a:9092,b:9092. See deploy/kafkasync.example.toml.

Start here:  kafkasync dev --demo     (every server on loopback, sample jobs, Ctrl-C stops all)`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.configFile == "" {
				a.configFile = os.Getenv("KAFKASYNC_CONFIG")
			}
			cfg, err := config.Load(a.configFile, os.Environ())
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("log-level") {
				cfg.Log.Level = a.logLevel
			}
			if cmd.Flags().Changed("log-format") {
				cfg.Log.Format = a.logFormat
			}
			if cfg.Log.Format == "" {
				cfg.Log.Format = "text"
				switch cmd.Name() {
				case "worker", "bridge", "ui", "watch":
					cfg.Log.Format = "json"
				}
			}
			a.cfg = cfg
			a.log, err = newLogger(cfg.Log)
			if err != nil {
				return err
			}
			slog.SetDefault(a.log)
			return nil
		},
	}
	root.PersistentFlags().StringVarP(&a.configFile, "config", "c", "", "TOML config file (default $KAFKASYNC_CONFIG)")
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&a.logFormat, "log-format", "", "log format: text or json (default: json for worker, bridge, watch and ui, text otherwise)")
	root.AddCommand(a.devCmd(), a.workerCmd(), a.bridgeCmd(), a.watchCmd(), a.uiCmd(), a.submitCmd(), a.statusCmd(), a.setupTemporalCmd(), a.migrateCmd(), a.healthcheckCmd(), a.configCmd(), a.userCmd(), a.reconcileCmd(), a.archiveCmd())
	return root
}

func newLogger(c config.Log) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", c.Level, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(c.Format) {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", c.Format)
}
