// Package config loads kafkasync's configuration: built-in defaults, then one TOML file, then
// environment variables named KAFKASYNC_<SECTION>_<KEY>. Secrets are typed so that they never print.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/caarlos0/env/v11"

	"github.com/kafkasync/kafkasync/internal/job"
)

// EnvPrefix starts the name of every environment variable that overrides a config key.
const EnvPrefix = "KAFKASYNC_"

// Config is the whole configuration. Each component receives only its own section.
type Config struct {
	Kafka    Kafka    `toml:"kafka" envPrefix:"KAFKA_"`
	Temporal Temporal `toml:"temporal" envPrefix:"TEMPORAL_"`
	// SFTP is the source named "default"; Sources holds the others (and "default", when the file
	// names it there instead).
	SFTP     Source            `toml:"sftp" envPrefix:"SFTP_"`
	Sources  map[string]Source `toml:"-" env:"-"`
	Transfer Transfer          `toml:"transfer" envPrefix:"TRANSFER_"`
	S3       S3                `toml:"s3" envPrefix:"S3_"`
	Postgres Postgres          `toml:"postgres" envPrefix:"POSTGRES_"`
	UI       UI                `toml:"ui" envPrefix:"UI_"`
	Metrics  Metrics           `toml:"metrics" envPrefix:"METRICS_"`
	Log      Log               `toml:"log" envPrefix:"LOG_"`
	Dev      Dev               `toml:"dev" envPrefix:"DEV_"`
}

// Kafka is where jobs come from and where dead letters go.
type Kafka struct {
	Brokers   []string `toml:"brokers" env:"BROKERS" envSeparator:","`
	JobsTopic string   `toml:"jobs_topic" env:"JOBS_TOPIC"`
	// DLQTopic defaults to JobsTopic + ".dlq".
	DLQTopic string `toml:"dlq_topic" env:"DLQ_TOPIC"`
	// DoneTopic receives one message per archived job (defaults to JobsTopic + ".done").
	DoneTopic string `toml:"done_topic" env:"DONE_TOPIC"`
	Group     string `toml:"group" env:"GROUP"`
	ClientID  string `toml:"client_id" env:"CLIENT_ID"`
	// CommitInterval is how often the bridge commits the offsets of the messages it has handled.
	CommitInterval Duration `toml:"commit_interval" env:"COMMIT_INTERVAL"`
	// StartsInFlight is how many messages of one partition the bridge starts at once; offsets are
	// still committed in order, each only after every message before it was started.
	StartsInFlight int `toml:"starts_in_flight" env:"STARTS_IN_FLIGHT"`
	// Linger is how long a worker's done event or dead letter waits for others, sent by the
	// workflows it runs at the same time, to share its produce request: each request costs the
	// broker more than its messages do. The bridge, the watcher and submit send at once.
	Linger Duration `toml:"linger" env:"LINGER"`
	TLS    TLS      `toml:"tls" envPrefix:"TLS_"`
	SASL   SASL     `toml:"sasl" envPrefix:"SASL_"`
}

// TLS secures a connection: the server is verified against CAFile (else the system's roots); a
// client certificate (CertFile, KeyFile) is sent when the server asks for one (mutual TLS).
type TLS struct {
	Enable     bool   `toml:"enable" env:"ENABLE"`
	CAFile     string `toml:"ca_file" env:"CA_FILE"`
	CertFile   string `toml:"cert_file" env:"CERT_FILE"`
	KeyFile    string `toml:"key_file" env:"KEY_FILE"`
	ServerName string `toml:"server_name" env:"SERVER_NAME"` // default: the host dialled
}

// ClientConfig builds the client side of t: TLS 1.2 at least, the server verified against CAFile
// (else the system's roots), the client certificate when one is set.
func (t TLS) ClientConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// SASL authenticates to Kafka: Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: none).
type SASL struct {
	Mechanism string `toml:"mechanism" env:"MECHANISM"`
	User      string `toml:"user" env:"USER"`
	Password  Secret `toml:"password" env:"PASSWORD"`
}

// Temporal says how to reach the Temporal frontend.
type Temporal struct {
	Address   string `toml:"address" env:"ADDRESS"`
	Namespace string `toml:"namespace" env:"NAMESPACE"`
	TaskQueue string `toml:"task_queue" env:"TASK_QUEUE"`
	// UIURL is the Temporal Web UI's base URL, used for links from the dashboard.
	UIURL string `toml:"ui_url" env:"UI_URL"`
	// TLS (mutual TLS with cert_file and key_file) and an API key, e.g. for Temporal Cloud.
	TLS    TLS    `toml:"tls" envPrefix:"TLS_"`
	APIKey Secret `toml:"api_key" env:"API_KEY"`
	// Compression of gRPC requests to the server: "none" or "gzip". A job's requests are a few
	// hundred bytes, which gzip barely shrinks while both ends pay its CPU on every request.
	Compression string `toml:"compression" env:"COMPRESSION"`
}

// Transfer tunes the workflow and the worker's local directories.
type Transfer struct {
	StagingDir   string   `toml:"staging_dir" env:"STAGING_DIR"`
	CompletedDir string   `toml:"completed_dir" env:"COMPLETED_DIR"`
	Connections  int      `toml:"connections" env:"CONNECTIONS"`
	RangeSize    ByteSize `toml:"range_size" env:"RANGE_SIZE"`
	// MinAge refuses files modified more recently than this (they may still be growing).
	MinAge Duration `toml:"min_age" env:"MIN_AGE"`
	// HostID names this worker's host-specific task queue; default: the hostname.
	HostID           string   `toml:"host_id" env:"HOST_ID"`
	HeartbeatTimeout Duration `toml:"heartbeat_timeout" env:"HEARTBEAT_TIMEOUT"`
	// StallTimeout ends a download attempt that received no bytes for this long; the retry resumes.
	StallTimeout Duration `toml:"stall_timeout" env:"STALL_TIMEOUT"`
	// HostTimeout is how long a host-bound step may wait for its host before the workflow moves the
	// job to another host (schedule-to-start timeout).
	HostTimeout    Duration `toml:"host_timeout" env:"HOST_TIMEOUT"`
	MaxAttempts    int      `toml:"max_attempts" env:"MAX_ATTEMPTS"`
	VerifyAttempts int      `toml:"verify_attempts" env:"VERIFY_ATTEMPTS"`
	RetryInterval  Duration `toml:"retry_interval" env:"RETRY_INTERVAL"`
	// HostMoves bounds how often a job may move to another host.
	HostMoves int `toml:"host_moves" env:"HOST_MOVES"`
	// SmallFile: files up to this size run download, verify, promote and upload as one activity,
	// saving three task round trips through Temporal; 0 turns it off.
	SmallFile ByteSize `toml:"small_file" env:"SMALL_FILE"`
	// SmallMemory bounds the bytes of small files one worker holds in memory at once.
	SmallMemory ByteSize `toml:"small_memory" env:"SMALL_MEMORY"`
	// MaxFileSize refuses larger remote files at stat and at download (default 5TiB, S3's limit
	// for one object).
	MaxFileSize ByteSize `toml:"max_file_size" env:"MAX_FILE_SIZE"`
	// KeepCompleted keeps a file in completed/ this long after its upload was verified (a sweeper
	// removes older ones); 0 removes it at once.
	KeepCompleted Duration `toml:"keep_completed" env:"KEEP_COMPLETED"`
}

// S3 is the destination bucket.
type S3 struct {
	Endpoint    string   `toml:"endpoint" env:"ENDPOINT"`
	Region      string   `toml:"region" env:"REGION"`
	Bucket      string   `toml:"bucket" env:"BUCKET"`
	AccessKey   string   `toml:"access_key" env:"ACCESS_KEY"`
	SecretKey   Secret   `toml:"secret_key" env:"SECRET_KEY"`
	PathStyle   bool     `toml:"path_style" env:"PATH_STYLE"`
	PartSize    ByteSize `toml:"part_size" env:"PART_SIZE"`
	Concurrency int      `toml:"concurrency" env:"CONCURRENCY"`
	// CAFile, a PEM file, replaces the system's roots for an https endpoint (a private CA).
	CAFile string `toml:"ca_file" env:"CA_FILE"`
	// AllowedKeyPrefixes: when set, a job's object key must start with one of these; others are
	// refused at validation. Empty: any key.
	AllowedKeyPrefixes []string `toml:"allowed_key_prefixes" env:"ALLOWED_KEY_PREFIXES" envSeparator:","`
}

// Postgres is the audit database.
type Postgres struct {
	DSN Secret `toml:"dsn" env:"DSN"`
}

// UI is the dashboard.
type UI struct {
	Listen string `toml:"listen" env:"LISTEN"`
	// PublicURL is how users reach the dashboard; default http://<Listen>.
	PublicURL string `toml:"public_url" env:"PUBLIC_URL"`
	// APIKey is an admin's key, kept for deployments from before accounts (header X-API-Key, or a
	// login session); accounts and their keys live in the audit database.
	APIKey Secret `toml:"api_key" env:"API_KEY"`
	// PublicRead lets anyone read the pages and the read-only API without logging in.
	PublicRead bool `toml:"public_read" env:"PUBLIC_READ"`
	// RateLimit is the requests per second allowed per client address (burst: twice that).
	RateLimit float64 `toml:"rate_limit" env:"RATE_LIMIT"`
	// ReconcileEvery is how often the dashboard reconciles the last day, for the
	// kafkasync_reconcile_differences gauge; 0: never.
	ReconcileEvery Duration `toml:"reconcile_every" env:"RECONCILE_EVERY"`
	// Presign answers an archive download with a redirect to a presigned S3 URL (valid 5 minutes)
	// instead of streaming the bytes through the dashboard: the browser must reach S3 itself, and
	// the dashboard no longer checks the bytes' MD5 on the way.
	Presign bool `toml:"presign" env:"PRESIGN"`
}

// Metrics says where the worker, the bridge and the watcher serve Prometheus metrics (the dashboard
// serves them at /metrics on its own port). Empty: not served.
type Metrics struct {
	WorkerListen string `toml:"worker_listen" env:"WORKER_LISTEN"`
	BridgeListen string `toml:"bridge_listen" env:"BRIDGE_LISTEN"`
	WatchListen  string `toml:"watch_listen" env:"WATCH_LISTEN"`
}

// Log configures log/slog.
type Log struct {
	Level string `toml:"level" env:"LEVEL"`
	// Format is text or json; empty: json for the long-running services (worker, bridge, watch,
	// ui), text for dev and the one-shot commands.
	Format string `toml:"format" env:"FORMAT"`
}

// Dev configures the embedded stack of `kafkasync dev`: the data directory and one port per server.
type Dev struct {
	Dir    string `toml:"dir" env:"DIR"`
	BinDir string `toml:"bin_dir" env:"BIN_DIR"`
	// Kafka is the broker `kafkasync dev` runs: "apache" (Apache Kafka from bin/kafka, one KRaft
	// node) or "embedded" (an in-process Kafka-protocol broker: starts at once, needs no Java).
	Kafka string `toml:"kafka" env:"KAFKA"`
	// Temporal is the engine `kafkasync dev` runs: "server" (the Temporal server from bin/, its
	// state in the stack's PostgreSQL, with the Temporal Web UI) or "dev" (the Temporal CLI's dev
	// server, its state in one SQLite file).
	Temporal     string `toml:"temporal" env:"TEMPORAL"`
	KafkaPort    int    `toml:"kafka_port" env:"KAFKA_PORT"`
	TemporalPort int    `toml:"temporal_port" env:"TEMPORAL_PORT"`
	TemporalUI   int    `toml:"temporal_ui_port" env:"TEMPORAL_UI_PORT"`
	SFTPPort     int    `toml:"sftp_port" env:"SFTP_PORT"`
	S3Port       int    `toml:"s3_port" env:"S3_PORT"`
	PGPort       int    `toml:"postgres_port" env:"POSTGRES_PORT"`
	UIPort       int    `toml:"ui_port" env:"UI_PORT"`
}

// Default returns the built-in defaults: every endpoint points at the embedded dev stack.
func Default() Config {
	return Config{
		Kafka: Kafka{
			Brokers:        []string{"127.0.0.1:9092"},
			JobsTopic:      "kafkasync.jobs",
			Group:          "kafkasync-bridge",
			ClientID:       "kafkasync",
			CommitInterval: Duration(time.Second),
			StartsInFlight: 32,
			Linger:         Duration(20 * time.Millisecond),
		},
		Temporal: Temporal{
			Address:     "127.0.0.1:7233",
			Namespace:   "default",
			TaskQueue:   "kafkasync",
			UIURL:       "http://127.0.0.1:8233",
			Compression: "none",
		},
		SFTP: Source{
			Addr:        "127.0.0.1:2222",
			User:        "kafkasync",
			KnownHosts:  ".kafkasync/sftp/known_hosts",
			KeyFile:     ".kafkasync/sftp/client_key",
			DialTimeout: Duration(10 * time.Second),
			// OpenSSH serves 10 sessions per connection and throttles beyond 10 handshakes at
			// once (MaxStartups); 64 connections from all workers is a polite default.
			MaxConnections:    64,
			SharedConnections: 4,
		},
		Transfer: Transfer{
			StagingDir:       ".kafkasync/data/staging",
			CompletedDir:     ".kafkasync/data/completed",
			Connections:      8,
			RangeSize:        8 << 20,
			HeartbeatTimeout: Duration(30 * time.Second),
			StallTimeout:     Duration(30 * time.Second),
			HostTimeout:      Duration(5 * time.Minute),
			MaxAttempts:      8,
			VerifyAttempts:   2,
			RetryInterval:    Duration(time.Second),
			HostMoves:        3,
			SmallFile:        4 << 20,
			SmallMemory:      256 << 20,
			MaxFileSize:      5 << 40,
		},
		S3: S3{
			Endpoint:    "http://127.0.0.1:9000",
			Region:      "us-east-1",
			Bucket:      "kafkasync",
			AccessKey:   "kafkasync",
			SecretKey:   "kafkasync-dev-secret",
			PathStyle:   true,
			PartSize:    8 << 20,
			Concurrency: 4,
		},
		Postgres: Postgres{DSN: "postgres://postgres@127.0.0.1:5433/kafkasync?sslmode=disable"},
		UI:       UI{Listen: "127.0.0.1:8080", RateLimit: 50, ReconcileEvery: Duration(15 * time.Minute)},
		Metrics:  Metrics{WorkerListen: "127.0.0.1:9464", BridgeListen: "127.0.0.1:9465", WatchListen: "127.0.0.1:9466"},
		Log:      Log{Level: "info"},
		Dev: Dev{
			Dir:          ".kafkasync",
			BinDir:       "bin",
			Kafka:        "apache",
			Temporal:     "server",
			KafkaPort:    9092,
			TemporalPort: 7233,
			TemporalUI:   8233,
			SFTPPort:     2222,
			S3Port:       9000,
			PGPort:       5433,
			UIPort:       8080,
		},
	}
}

// Load returns the defaults overlaid with the TOML file at path (skipped when path is empty) and then
// with KAFKASYNC_* environment variables from environ (os.Environ() format).
func Load(path string, environ []string) (Config, error) {
	cfg := Default()
	if path != "" {
		// Sources are decoded one by one, each over its defaults.
		file := struct {
			*Config
			Sources map[string]toml.Primitive `toml:"sources"`
		}{Config: &cfg}
		md, err := toml.DecodeFile(path, &file)
		if err != nil {
			return Config{}, fmt.Errorf("config %s: %w", path, err)
		}
		if err := cfg.decodeSources(md, file.Sources); err != nil {
			return Config{}, fmt.Errorf("config %s: %w", path, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			keys := make([]string, len(und))
			for i, k := range und {
				keys[i] = k.String()
			}
			return Config{}, fmt.Errorf("config %s: unknown keys: %s", path, strings.Join(keys, ", "))
		}
	}
	envs := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			envs[k] = v
		}
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Prefix: EnvPrefix, Environment: envs}); err != nil {
		return Config{}, fmt.Errorf("environment: %w", err)
	}
	if err := cfg.sourcesFromEnv(envs); err != nil {
		return Config{}, err
	}
	cfg.fill()
	return cfg, cfg.Validate()
}

func (c *Config) fill() {
	if c.Kafka.DLQTopic == "" {
		c.Kafka.DLQTopic = c.Kafka.JobsTopic + ".dlq"
	}
	if c.Kafka.DoneTopic == "" {
		c.Kafka.DoneTopic = c.Kafka.JobsTopic + ".done"
	}
	if c.Transfer.HostID == "" {
		c.Transfer.HostID, _ = os.Hostname()
	}
	if c.UI.PublicURL == "" {
		c.UI.PublicURL = "http://" + c.UI.Listen
	}
	if c.Sources == nil {
		c.Sources = map[string]Source{}
	}
	c.SFTP.fillWatch(c.Kafka.JobsTopic)
	for name, s := range c.Sources {
		s.fillWatch(c.Kafka.JobsTopic)
		c.Sources[name] = s
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(len(c.Kafka.Brokers) > 0, "kafka.brokers: empty")
	check(c.Kafka.JobsTopic != "", "kafka.jobs_topic: empty")
	check(c.Kafka.DLQTopic != c.Kafka.JobsTopic, "kafka.dlq_topic: must differ from jobs_topic")
	check(c.Kafka.DoneTopic == "" || c.Kafka.DoneTopic != c.Kafka.JobsTopic && c.Kafka.DoneTopic != c.Kafka.DLQTopic, "kafka.done_topic: must differ from jobs_topic and dlq_topic")
	check(c.Temporal.TaskQueue != "", "temporal.task_queue: empty")
	check(c.Temporal.Compression == "none" || c.Temporal.Compression == "gzip", "temporal.compression: %q is neither none nor gzip", c.Temporal.Compression)
	check(c.Transfer.Connections >= 1 && c.Transfer.Connections <= 64, "transfer.connections: %d not in 1..64", c.Transfer.Connections)
	check(c.Dev.Temporal == "server" || c.Dev.Temporal == "dev", "dev.temporal: %q is neither server nor dev", c.Dev.Temporal)
	check(c.Kafka.StartsInFlight >= 1 && c.Kafka.StartsInFlight <= 1024, "kafka.starts_in_flight: %d not in 1..1024", c.Kafka.StartsInFlight)
	check(c.Kafka.Linger >= 0 && c.Kafka.Linger <= Duration(time.Second), "kafka.linger: %s not in 0..1s", c.Kafka.Linger)
	check(c.Transfer.RangeSize >= 64<<10, "transfer.range_size: %s below 64KiB", c.Transfer.RangeSize)
	check(c.Transfer.MaxAttempts >= 1, "transfer.max_attempts: must be at least 1")
	check(c.Transfer.VerifyAttempts >= 1, "transfer.verify_attempts: must be at least 1")
	check(c.Transfer.HeartbeatTimeout >= Duration(time.Second), "transfer.heartbeat_timeout: below 1s")
	check(c.Transfer.StallTimeout >= Duration(time.Second), "transfer.stall_timeout: below 1s")
	check(c.Transfer.StagingDir != "" && c.Transfer.CompletedDir != "", "transfer: staging_dir and completed_dir are required")
	check(c.S3.Bucket != "", "s3.bucket: empty")
	check(c.UI.RateLimit > 0, "ui.rate_limit: must be above 0")
	check(c.UI.ReconcileEvery == 0 || c.UI.ReconcileEvery >= Duration(time.Minute), "ui.reconcile_every: 0 (never) or at least 1m")
	switch c.Kafka.SASL.Mechanism {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		check(false, "kafka.sasl.mechanism: %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.Kafka.SASL.Mechanism)
	}
	check(c.Kafka.SASL.Mechanism != "PLAIN" || c.Kafka.TLS.Enable, "kafka.sasl: PLAIN needs kafka.tls.enable (the password would cross the network in clear)")
	check(c.Kafka.SASL.Mechanism == "" || c.Kafka.SASL.User != "", "kafka.sasl.user: empty")
	check((c.Kafka.TLS.CertFile == "") == (c.Kafka.TLS.KeyFile == ""), "kafka.tls: set both cert_file and key_file, or neither")
	check(c.UI.APIKey == "" || len(c.UI.APIKey) >= 16, "ui.api_key: shorter than 16 characters")
	check(c.S3.PartSize >= 5<<20, "s3.part_size: %s below the S3 minimum of 5MiB", c.S3.PartSize)
	check(c.Transfer.HostID != "" && !strings.ContainsAny(c.Transfer.HostID, " /\t"), "transfer.host_id: %q unusable in a task queue name", c.Transfer.HostID)
	check(c.Transfer.MaxFileSize > 0, "transfer.max_file_size: must be above 0")
	check(c.Transfer.KeepCompleted >= 0, "transfer.keep_completed: negative")
	check(c.Transfer.SmallMemory >= c.Transfer.SmallFile, "transfer.small_memory: %d is less than transfer.small_file (%d)", c.Transfer.SmallMemory, c.Transfer.SmallFile)
	for _, name := range c.SourceNames() {
		s, _ := c.Source(name)
		errs = append(errs, validateSource(name, s)...)
	}
	for _, p := range c.S3.AllowedKeyPrefixes {
		check(p != "" && !strings.HasPrefix(p, "/"), "s3.allowed_key_prefixes: %q must be non-empty and not start with /", p)
	}
	return errors.Join(errs...)
}

// JobPolicy is the deployment's own limits on the jobs it accepts: its sources, with the paths
// each allows and the key prefix each puts before its keys, and the key prefixes of the bucket.
func (c Config) JobPolicy() job.Policy {
	p := job.Policy{Sources: map[string]job.SourcePolicy{}, AllowedKeyPrefixes: c.S3.AllowedKeyPrefixes}
	for _, name := range c.SourceNames() {
		s, _ := c.Source(name)
		p.Sources[name] = job.SourcePolicy{AllowedPaths: s.AllowedPaths, KeyPrefix: s.KeyPrefix}
	}
	return p
}

// Environ returns the configuration as KAFKASYNC_* environment variables, secrets included: it is
// meant for starting a child process with this configuration, never for printing. Watch entries,
// which only the file sets, are left out.
func (c Config) Environ() []string {
	var out []string
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := range t.NumField() {
			f, fv := t.Field(i), v.Field(i)
			if p, ok := f.Tag.Lookup("envPrefix"); ok {
				walk(fv, prefix+p)
				continue
			}
			name, ok := f.Tag.Lookup("env")
			if !ok || name == "-" {
				continue
			}
			var s string
			switch x := fv.Interface().(type) {
			case Secret:
				s = x.Reveal()
			case []string:
				s = strings.Join(x, f.Tag.Get("envSeparator"))
			case fmt.Stringer:
				s = x.String()
			default:
				s = fmt.Sprint(x)
			}
			out = append(out, prefix+name+"="+s)
		}
	}
	walk(reflect.ValueOf(c), EnvPrefix)
	var names []string
	for _, name := range c.SourceNames()[1:] {
		names = append(names, name)
		walk(reflect.ValueOf(c.Sources[name]), SourceEnvPrefix(name))
	}
	return append(out, EnvPrefix+"SOURCES="+strings.Join(names, ","))
}

// Secret is a string that never prints: String, GoString and MarshalText redact it.
type Secret string

// String returns a placeholder, never the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts like String.
func (s Secret) GoString() string { return s.String() }

// MarshalText redacts like String, so encoders never write the secret either.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText stores the secret.
func (s *Secret) UnmarshalText(b []byte) error { *s = Secret(b); return nil }

// Reveal returns the secret itself, for the one call that needs it.
func (s Secret) Reveal() string { return string(s) }

// Duration is a time.Duration written as "30s", "5m".
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// ByteSize is a size in bytes written as a number or with a unit: "512KiB", "8MiB", "1GiB", "10MB".
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// ParseByteSize parses "8MiB", "10MB", "4096".
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a whole number with an optional unit (KiB, MiB, GiB, KB, MB, GB)", s)
	}
	return ByteSize(n * mult), nil
}

// UnmarshalText parses a size string.
func (b *ByteSize) UnmarshalText(t []byte) error {
	v, err := ParseByteSize(string(t))
	*b = v
	return err
}

// MarshalText writes the size in the largest binary unit that divides it.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// String writes the size in the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		s string
		m int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.m == 0 {
			return strconv.FormatInt(int64(b)/u.m, 10) + u.s
		}
	}
	return strconv.FormatInt(int64(b), 10)
}
