package config

import (
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/caarlos0/env/v11"

	"github.com/kafkasync/kafkasync/internal/job"
)

// DefaultSource names the source of the [sftp] section, and of a job message without "source".
const DefaultSource = job.DefaultSource

// Source is one SFTP server and account that jobs read from: the [sftp] section (the source named
// "default") or a [sources.<name>] section.
type Source struct {
	// Addr is host:port; or give Host and Port (default 22).
	Addr     string `toml:"addr" env:"ADDR"`
	Host     string `toml:"host" env:"HOST"`
	Port     int    `toml:"port" env:"PORT"`
	User     string `toml:"user" env:"USER"`
	Password Secret `toml:"password" env:"PASSWORD"`
	KeyFile  string `toml:"key_file" env:"KEY_FILE"`
	// KeyPassphrase decrypts an encrypted KeyFile.
	KeyPassphrase Secret `toml:"key_passphrase" env:"KEY_PASSPHRASE"`
	// KnownHosts is an OpenSSH known_hosts file holding the server's host key.
	KnownHosts string `toml:"known_hosts" env:"KNOWN_HOSTS"`
	// HostKey pins the server's public key ("ssh-ed25519 AAAA…"); used when KnownHosts is empty.
	HostKey     string   `toml:"host_key" env:"HOST_KEY"`
	DialTimeout Duration `toml:"dial_timeout" env:"DIAL_TIMEOUT"`
	// MaxConnections and MaxJobs bound the SFTP connections open to the source and the jobs
	// downloading from it, across all workers together (slots are PostgreSQL advisory locks). A
	// download takes one job slot and as many connection slots as are free, at least one, up to
	// transfer.connections. 0: no limit.
	MaxConnections int `toml:"max_connections" env:"MAX_CONNECTIONS"`
	MaxJobs        int `toml:"max_jobs" env:"MAX_JOBS"`
	// SharedConnections is how many SSH connections each worker keeps open for stats and files of
	// one range, which share them (each also holds a connection slot); 0: every such operation
	// opens its own connection.
	SharedConnections int `toml:"shared_connections" env:"SHARED_CONNECTIONS"`
	// AllowedPaths: when set, only jobs for files in these directories (or below them) are
	// accepted; others are refused at validation. Empty: every path the account can read.
	AllowedPaths []string `toml:"allowed_paths" env:"ALLOWED_PATHS" envSeparator:","`
	// Bandwidth caps the bytes per second each worker reads from this source, over all its
	// connections to it; 0: no cap. A fleet-wide cap is Bandwidth × workers.
	Bandwidth ByteSize `toml:"bandwidth" env:"BANDWIDTH"`
	// Bucket and KeyPrefix place this source's objects: Bucket replaces s3.bucket, KeyPrefix goes
	// before every key (dest_key too).
	Bucket    string `toml:"bucket" env:"BUCKET"`
	KeyPrefix string `toml:"key_prefix" env:"KEY_PREFIX"`
	// OnSuccess is what happens to the remote file once its object is verified and the job
	// SUCCEEDED: "keep", "delete" or "move:<dir>". OnFailure, for a dead-lettered job: "keep" or
	// "move:<dir>". Default keep.
	OnSuccess string `toml:"on_success" env:"ON_SUCCESS"`
	OnFailure string `toml:"on_failure" env:"ON_FAILURE"`
	// Watch lists the directories `kafkasync watch` lists and announces new files of (file only).
	Watch []Watch `toml:"watch" env:"-"`
}

// Watch is one directory of a source that the watcher lists.
type Watch struct {
	Dir string `toml:"dir"`
	// Pattern is a glob (path.Match) on the file name; empty: every file.
	Pattern   string `toml:"pattern"`
	Recursive bool   `toml:"recursive"`
	// MinAge: a file is announced only once its size and mtime have not changed for this long.
	MinAge   Duration `toml:"min_age"`
	Interval Duration `toml:"interval"`
	// Topic is where its jobs are announced; default kafka.jobs_topic.
	Topic string `toml:"topic"`
}

// Address is the source's host:port.
func (s Source) Address() string {
	if s.Addr != "" {
		return s.Addr
	}
	return net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
}

// Action is what happens to a remote file after its job ends: Kind is keep, delete or move; Dir is
// the directory of a move.
type Action struct {
	Kind string
	Dir  string
}

// ParseAction reads "keep", "delete" or "move:<dir>" ("" is keep).
func ParseAction(s string) (Action, error) {
	switch {
	case s == "" || s == "keep":
		return Action{Kind: "keep"}, nil
	case s == "delete":
		return Action{Kind: "delete"}, nil
	case strings.HasPrefix(s, "move:"):
		dir := strings.TrimPrefix(s, "move:")
		if !strings.HasPrefix(dir, "/") || path.Clean(dir) != dir {
			return Action{}, fmt.Errorf("%q: the directory of move: must be absolute and normalised", s)
		}
		return Action{Kind: "move", Dir: dir}, nil
	}
	return Action{}, fmt.Errorf("%q is not keep, delete or move:<dir>", s)
}

// OnSuccessAction and OnFailureAction parse the validated settings.
func (s Source) OnSuccessAction() Action { a, _ := ParseAction(s.OnSuccess); return a }
func (s Source) OnFailureAction() Action { a, _ := ParseAction(s.OnFailure); return a }

// sourceDefaults are the settings of a [sources.<name>] section that leaves them out.
func sourceDefaults() Source {
	return Source{Port: 22, DialTimeout: Duration(10 * time.Second), MaxConnections: 64, SharedConnections: 4}
}

// SourceEnvPrefix is where the environment overrides a named source's settings:
// KAFKASYNC_SOURCES_<NAME>_<KEY>, the name upper-cased with - as _. KAFKASYNC_SOURCES lists
// sources (comma-separated) the file does not name.
func SourceEnvPrefix(name string) string {
	return EnvPrefix + "SOURCES_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_"
}

// decodeSources reads the [sources.<name>] sections over their defaults. A [sources.default]
// section replaces [sftp], which the file must not also set.
func (c *Config) decodeSources(md toml.MetaData, raw map[string]toml.Primitive) error {
	c.Sources = map[string]Source{}
	for name, prim := range raw {
		src := sourceDefaults()
		if err := md.PrimitiveDecode(prim, &src); err != nil {
			return fmt.Errorf("sources.%s: %w", name, err)
		}
		if name == DefaultSource {
			if md.IsDefined("sftp") {
				return fmt.Errorf("sources.default and sftp both set: they are the same source, keep one")
			}
			c.SFTP = src
			continue
		}
		c.Sources[name] = src
	}
	return nil
}

// sourcesFromEnv adds the sources KAFKASYNC_SOURCES lists and overlays every named source with its
// KAFKASYNC_SOURCES_<NAME>_* variables.
func (c *Config) sourcesFromEnv(envs map[string]string) error {
	if c.Sources == nil {
		c.Sources = map[string]Source{}
	}
	for _, name := range strings.Split(envs[EnvPrefix+"SOURCES"], ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		if _, ok := c.Sources[name]; !ok && name != DefaultSource {
			c.Sources[name] = sourceDefaults()
		}
	}
	for name, src := range c.Sources {
		if err := env.ParseWithOptions(&src, env.Options{Prefix: SourceEnvPrefix(name), Environment: envs}); err != nil {
			return fmt.Errorf("environment of source %s: %w", name, err)
		}
		c.Sources[name] = src
	}
	return nil
}

// SourceNames lists every source, "default" first.
func (c Config) SourceNames() []string {
	names := []string{DefaultSource}
	for name := range c.Sources {
		names = append(names, name)
	}
	slices.Sort(names[1:])
	return names
}

// Source returns the named source ("" is default).
func (c Config) Source(name string) (Source, bool) {
	if name == "" || name == DefaultSource {
		return c.SFTP, true
	}
	s, ok := c.Sources[name]
	return s, ok
}

// BucketFor is the bucket of a source's objects.
func (c Config) BucketFor(s Source) string {
	if s.Bucket != "" {
		return s.Bucket
	}
	return c.S3.Bucket
}

// validateSource lists what cannot work in one source.
func validateSource(name string, s Source) []error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("%s: "+format, append([]any{sourceKey(name)}, args...)...))
		}
	}
	check(name == DefaultSource || job.ValidSource(name), "name %q: lower-case letters, digits and -, at most 63", name)
	check(s.Addr != "" || s.Host != "", "set addr or host")
	check(s.Addr == "" || s.Host == "", "set addr or host, not both")
	check(s.Port >= 0 && s.Port <= 65535, "port %d not in 1..65535", s.Port)
	check(s.KnownHosts != "" || s.HostKey != "", "set known_hosts or host_key (host keys are always verified)")
	check(s.KeyFile != "" || s.Password != "", "set key_file or password")
	check(s.MaxConnections >= 0 && s.MaxJobs >= 0, "max_connections, max_jobs: 0 (no limit) or more")
	check(s.SharedConnections >= 0, "shared_connections: 0 (none) or more")
	check(s.Bandwidth == 0 || s.Bandwidth >= 64<<10, "bandwidth %s: 0 (no cap) or at least 64KiB", s.Bandwidth)
	check(!strings.HasPrefix(s.KeyPrefix, "/"), "key_prefix %q must not start with /", s.KeyPrefix)
	for _, p := range s.AllowedPaths {
		check(strings.HasPrefix(p, "/") && path.Clean(p) == strings.TrimSuffix(p, "/") || p == "/",
			"allowed_paths: %q is not an absolute, normalised directory", p)
	}
	if _, err := ParseAction(s.OnSuccess); err != nil {
		check(false, "on_success: %v", err)
	}
	if a, err := ParseAction(s.OnFailure); err != nil || a.Kind == "delete" {
		check(false, "on_failure: %q is not keep or move:<dir>", s.OnFailure)
	}
	for i, w := range s.Watch {
		check(strings.HasPrefix(w.Dir, "/") && path.Clean(w.Dir) == w.Dir, "watch[%d].dir %q is not an absolute, normalised directory", i, w.Dir)
		if _, err := path.Match(w.Pattern, ""); err != nil {
			check(false, "watch[%d].pattern %q: %v", i, w.Pattern, err)
		}
		check(w.MinAge >= 0 && w.Interval >= 0, "watch[%d]: min_age and interval must not be negative", i)
	}
	return errs
}

func sourceKey(name string) string {
	if name == DefaultSource {
		return "sftp"
	}
	return "sources." + name
}

// fillWatch sets the defaults of the watch entries: every 30 s, files unchanged for 30 s, announced
// on the jobs topic.
func (s *Source) fillWatch(jobsTopic string) {
	for i := range s.Watch {
		w := &s.Watch[i]
		if w.Interval == 0 {
			w.Interval = Duration(30 * time.Second)
		}
		if w.MinAge == 0 {
			w.MinAge = Duration(30 * time.Second)
		}
		if w.Topic == "" {
			w.Topic = jobsTopic
		}
	}
}
