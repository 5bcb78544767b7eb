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
	if cfg.Kafka.JobsTopic != "in" || cfg.Kafka.DLQTopic != "in.dlq" {
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
	if cfg.Metrics.WorkerListen == "" || cfg.Transfer.StallTimeout.D() != 30*time.Second {
		t.Fatalf("example config not read: %+v %+v", cfg.Metrics, cfg.Transfer)
	}
}
