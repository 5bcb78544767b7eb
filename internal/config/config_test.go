package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadLayers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "k.toml")
	os.WriteFile(file, []byte(`
[kafka]
brokers = ["a:9092"]
jobs_topic = "in"
[sftp]
password = "file-secret"
[transfer]
range_size = "4MiB"
min_age = "30s"
`), 0o600)
	cfg, err := Load(file, []string{"KAFKASYNC_KAFKA_BROKERS=b:1,c:2", "KAFKASYNC_TRANSFER_CONNECTIONS=9", "OTHER=1",
		"KAFKASYNC_S3_SECRET_KEY=env-secret"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Kafka.Brokers, ","); got != "b:1,c:2" {
		t.Fatalf("brokers %s: the environment wins over the file", got)
	}
	if cfg.Kafka.JobsTopic != "in" || cfg.Kafka.DLQTopic != "in.dlq" || cfg.Kafka.DoneTopic != "in.done" {
		t.Fatalf("topics %s %s", cfg.Kafka.JobsTopic, cfg.Kafka.DLQTopic)
	}
	if cfg.Transfer.RangeSize != 4<<20 || cfg.Transfer.MinAge.D() != 30*time.Second || cfg.Transfer.Connections != 9 {
		t.Fatalf("transfer %+v", cfg.Transfer)
	}
	if cfg.SFTP.Password.Reveal() != "file-secret" || cfg.S3.SecretKey.Reveal() != "env-secret" {
		t.Fatal("secrets not loaded")
	}
	// Secrets never print, whatever the verb.
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg.SFTP)} {
		if strings.Contains(s, "file-secret") || strings.Contains(s, "env-secret") {
			t.Fatalf("secret printed: %s", s)
		}
	}
}

func TestLoadRefuses(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown key":     "[kafka]\nbrokerz = [\"a\"]\n",
		"no host key":     "[sftp]\nknown_hosts = \"\"\n",
		"bad size":        "[transfer]\nrange_size = \"lots\"\n",
		"tiny part":       "[s3]\npart_size = \"1MiB\"\n",
		"same dlq":        "[kafka]\njobs_topic = \"x\"\ndlq_topic = \"x\"\n",
		"bad duration":    "[transfer]\nmin_age = \"soon\"\n",
		"zero conns":      "[transfer]\nconnections = 0\n",
		"bad host id":     "[transfer]\nhost_id = \"a b\"\n",
		"not toml at all": "[[[",
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".toml")
			os.WriteFile(f, []byte(body), 0o600)
			if _, err := Load(f, nil); err == nil {
				t.Fatalf("accepted %q", body)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"8MiB": 8 << 20, "10MB": 10e6, "4096": 4096, "1GiB": 1 << 30, "512KiB": 512 << 10} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Fatalf("%s: %d %v", in, got, err)
		}
	}
	if ByteSize(8<<20).String() != "8MiB" {
		t.Fatal(ByteSize(8 << 20).String())
	}
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load("../../deploy/kafkasync.example.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Metrics.WorkerListen == "" || cfg.Metrics.WatchListen != "0.0.0.0:9466" || cfg.Transfer.StallTimeout.D() != 30*time.Second {
		t.Fatalf("example config not read: %+v %+v", cfg.Metrics, cfg.Transfer)
	}
}

func TestSources(t *testing.T) {
	file := filepath.Join(t.TempDir(), "k.toml")
	os.WriteFile(file, []byte(`
[sources.partner-a]
host = "sftp.a.example"
user = "kafkasync"
key_file = "/etc/kafkasync/a_key"
known_hosts = "/etc/kafkasync/known_hosts"
bandwidth = "4MiB"
bucket = "partner-a"
key_prefix = "a/"
on_success = "move:/done"
on_failure = "move:/failed"
[[sources.partner-a.watch]]
dir = "/outbox"
pattern = "*.csv"
`), 0o600)
	cfg, err := Load(file, []string{"KAFKASYNC_SOURCES_PARTNER_A_PASSWORD=env-secret",
		"KAFKASYNC_SOURCES=partner-b", "KAFKASYNC_SOURCES_PARTNER_B_ADDR=b:2022", "KAFKASYNC_SOURCES_PARTNER_B_PASSWORD=pw",
		"KAFKASYNC_SOURCES_PARTNER_B_HOST_KEY=ssh-ed25519 AAAA"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.SourceNames(), ","); got != "default,partner-a,partner-b" {
		t.Fatalf("sources %s", got)
	}
	a, _ := cfg.Source("partner-a")
	if a.Address() != "sftp.a.example:22" || a.Password.Reveal() != "env-secret" || a.MaxConnections != 64 || a.Bandwidth != 4<<20 {
		t.Fatalf("partner-a %+v: defaults, file and environment", a)
	}
	if a.OnSuccessAction() != (Action{Kind: "move", Dir: "/done"}) || cfg.BucketFor(a) != "partner-a" {
		t.Fatalf("partner-a actions %+v bucket %s", a.OnSuccessAction(), cfg.BucketFor(a))
	}
	if w := a.Watch[0]; w.Interval.D() != 30*time.Second || w.Topic != cfg.Kafka.JobsTopic || w.Recursive {
		t.Fatalf("watch defaults %+v", w)
	}
	if b, _ := cfg.Source("partner-b"); b.Address() != "b:2022" || cfg.BucketFor(b) != cfg.S3.Bucket {
		t.Fatalf("partner-b %+v", b)
	}
	p := cfg.JobPolicy()
	if p.Sources["partner-a"].KeyPrefix != "a/" || len(p.Sources) != 3 {
		t.Fatalf("policy %+v", p)
	}
	// A child process started with Environ sees the same sources.
	again, err := Load("", cfg.Environ())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := again.Source("partner-a"); got.Password.Reveal() != "env-secret" || got.KeyPrefix != "a/" || got.Host != "sftp.a.example" {
		t.Fatalf("partner-a through Environ: %+v", got)
	}
	if strings.Contains(fmt.Sprintf("%+v", cfg), "env-secret") {
		t.Fatal("a source's secret printed")
	}
}

func TestSourcesRefused(t *testing.T) {
	dir := t.TempDir()
	ok := "host = \"h\"\nknown_hosts = \"k\"\npassword = \"p\"\n"
	for name, body := range map[string]string{
		"unknown key":           "[sources.a]\n" + ok + "hots = \"x\"\n",
		"bad name":              "[sources.Partner]\n" + ok,
		"no host key":           "[sources.a]\nhost = \"h\"\npassword = \"p\"\n",
		"no credentials":        "[sources.a]\nhost = \"h\"\nknown_hosts = \"k\"\n",
		"no host":               "[sources.a]\nknown_hosts = \"k\"\npassword = \"p\"\n",
		"addr and host":         "[sources.a]\n" + ok + "addr = \"h:22\"\n",
		"bad on_success":        "[sources.a]\n" + ok + "on_success = \"archive\"\n",
		"relative move":         "[sources.a]\n" + ok + "on_success = \"move:done\"\n",
		"delete on failure":     "[sources.a]\n" + ok + "on_failure = \"delete\"\n",
		"tiny bandwidth":        "[sources.a]\n" + ok + "bandwidth = \"1KiB\"\n",
		"relative watch":        "[sources.a]\n" + ok + "[[sources.a.watch]]\ndir = \"in\"\n",
		"sftp and default":      "[sftp]\nuser = \"u\"\n[sources.default]\n" + ok,
		"unknown watch key":     "[sources.a]\n" + ok + "[[sources.a.watch]]\ndir = \"/in\"\nglob = \"*\"\n",
		"bad pattern":           "[sources.a]\n" + ok + "[[sources.a.watch]]\ndir = \"/in\"\npattern = \"[\"\n",
		"allowed path relative": "[sources.a]\n" + ok + "allowed_paths = [\"in\"]\n",
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".toml")
			os.WriteFile(f, []byte(body), 0o600)
			if _, err := Load(f, nil); err == nil {
				t.Fatalf("accepted %q", body)
			}
		})
	}
	// [sources.default] alone is the default source.
	f := filepath.Join(dir, "default.toml")
	os.WriteFile(f, []byte("[sources.default]\n"+ok), 0o600)
	cfg, err := Load(f, nil)
	if err != nil || cfg.SFTP.Host != "h" || len(cfg.Sources) != 0 {
		t.Fatalf("sources.default: %+v %v", cfg.SFTP, err)
	}
}
