package faults

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/kafkaops"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/ui"
)

// TestDashboardRefusesAndSecretsNeverLogged (scenario 13) runs last (zz_): replay and discard without
// the key are refused, and no log line written during the whole suite holds a secret.
func TestDashboardRefusesAndSecretsNeverLogged(t *testing.T) {
	const apiKey = "dashboard-key-5f1c9e77b2a04d3e"
	s := start(t, testenv.Options{Kafka: devstack.KafkaApache}, nil)
	s.worker(s.cfg)
	s.bridge(s.cfg)
	s.expectDead("missing", "stat", "RemoteNotFound")
	s.publishRaw([]byte("missing"), []byte(`{"id":"missing","remote_path":"/in/missing.bin"}`))
	s.wait(time.Minute)

	kc, err := kafkaops.Dial(s.cfg.Kafka.Brokers, "fault-ui")
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	if _, err := (&kafkaops.Indexer{Kafka: kc, Store: s.store, Topic: s.cfg.Kafka.DLQTopic}).CatchUp(s.ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ui.New(ui.Options{Store: s.store, APIKey: apiKey, DLQTopic: s.cfg.Kafka.DLQTopic,
		Republish: kc.Republish(s.cfg.Kafka.JobsTopic), Logger: slog.New(slog.NewJSONHandler(s.logFile("dashboard"), nil))}))
	defer srv.Close()
	dl := testenv.ReadTopic(t, s.cfg.Kafka.Brokers, s.cfg.Kafka.DLQTopic)[0]
	base := srv.URL + "/api/v1/dlq/" + itoa(int64(dl.Partition)) + "/" + itoa(dl.Offset)
	for _, action := range []string{"replay", "discard"} {
		for _, key := range []string{"", "not-the-key-0123456789"} {
			if code := post(t, base+"/"+action, key); code != http.StatusUnauthorized {
				t.Errorf("%s with key %q: %d, want 401", action, key, code)
			}
		}
	}
	if code := post(t, base+"/discard", apiKey); code != http.StatusOK {
		t.Fatalf("discard with the key: %d", code)
	}
	s.ledger() // the refused replays published nothing

	// Every log line of the suite: worker, bridge and dashboard processes of every scenario.
	keyFile, err := os.ReadFile(s.cfg.SFTP.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"S3 secret key":     s.cfg.S3.SecretKey.Reveal(),
		"dashboard API key": apiKey,
		"SSH private key":   "PRIVATE KEY",
		"SSH key material":  keyMaterial(keyFile),
		"PostgreSQL DSN":    "postgres://",
		"this suite's DSN":  s.cfg.Postgres.DSN.Reveal(),
	}
	files, _ := filepath.Glob(filepath.Join(logsDir, "*.log"))
	lines := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines += bytes.Count(b, []byte("\n"))
		for what, secret := range secrets {
			if secret != "" && bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s appears in %s", what, filepath.Base(f))
			}
		}
	}
	if lines < 50 {
		t.Fatalf("only %d log lines in %d files: the scan saw too little", lines, len(files))
	}
	t.Logf("scanned %d log lines in %d files for %d secrets: none found", lines, len(files), len(secrets))
}

func post(t *testing.T, url, key string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	if key != "" {
		req.Header.Set(ui.HeaderAPIKey, key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// keyMaterial is one line of the base64 body of a PEM private key.
func keyMaterial(pem []byte) string {
	for _, l := range strings.Split(string(pem), "\n") {
		if len(l) > 40 && !strings.Contains(l, "-----") {
			return l
		}
	}
	return ""
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
