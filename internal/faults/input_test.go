package faults

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/sftpserver"
	"github.com/kafkasync/kafkasync/internal/testenv"
)

const md5Zero = "00000000000000000000000000000000"

// hostile is a corpus of messages the bridge must refuse, each with the reason code it must give.
func hostile() []struct{ name, value, reason string } {
	long := "/" + strings.Repeat("a/", 2047) + "b" // 4,096 characters
	return []struct{ name, value, reason string }{
		{"empty", ``, "bad_json"},
		{"not json", `hello`, "bad_json"},
		{"json null", `null`, "bad_json"},
		{"json number", `42`, "bad_json"},
		{"json string", `"/etc/passwd"`, "bad_json"},
		{"array", `[{"remote_path":"/a"}]`, "bad_json"},
		{"truncated", `{"remote_path":"/a"`, "bad_json"},
		{"trailing data", `{"remote_path":"/a"} {"remote_path":"/b"}`, "bad_json"},
		{"unknown field", `{"remote_path":"/a","exec":"rm -rf /"}`, "bad_json"},
		{"duplicate key", `{"remote_path":"/a","remote_path":"/etc/passwd"}`, "bad_json"},
		{"path is a number", `{"remote_path":17}`, "bad_json"},
		{"path is an object", `{"remote_path":{"$ne":null}}`, "bad_json"},
		{"size is a string", `{"remote_path":"/a","size":"12"}`, "bad_size"},
		{"size negative", `{"remote_path":"/a","size":-1}`, "bad_size"},
		{"size fraction", `{"remote_path":"/a","size":1.5}`, "bad_size"},
		{"md5 is a number", `{"remote_path":"/a","md5":12345}`, "bad_json"},
		{"missing path", `{"md5":"` + md5Zero + `"}`, "missing_field"},
		{"empty path", `{"remote_path":""}`, "bad_path"},
		{"relative path", `{"remote_path":"etc/passwd"}`, "bad_path"},
		{"dot-dot escape", `{"remote_path":"/../../etc/passwd"}`, "bad_path"},
		{"dot-dot inside", `{"remote_path":"/in/../../etc/shadow"}`, "bad_path"},
		{"not normalised", `{"remote_path":"/in//a.bin"}`, "bad_path"},
		{"trailing slash", `{"remote_path":"/in/"}`, "bad_path"},
		{"root", `{"remote_path":"/"}`, "bad_path"},
		{"NUL byte", `{"remote_path":"/in/a\u0000.bin"}`, "bad_path"},
		{"newline", `{"remote_path":"/in/a\nb"}`, "bad_path"},
		{"right-to-left override", "{\"remote_path\":\"/in/invoice\u202Efdp.exe\"}", "bad_path"},
		{"zero-width space", "{\"remote_path\":\"/in/a\u200Bb.bin\"}", "bad_path"},
		{"byte-order mark", "{\"remote_path\":\"/in/\uFEFFa.bin\"}", "bad_path"},
		{"invalid UTF-8", "{\"remote_path\":\"/in/\xff\xfe.bin\"}", "bad_json"},
		{"4096-character path", `{"remote_path":"` + long + `"}`, "bad_path"},
		{"over-long segment", `{"remote_path":"/` + strings.Repeat("x", 300) + `"}`, "bad_path"},
		{"md5 too short", `{"remote_path":"/a","md5":"abc"}`, "bad_md5"},
		{"md5 not hex", `{"remote_path":"/a","md5":"zz000000000000000000000000000000"}`, "bad_md5"},
		{"sha256 instead of md5", `{"remote_path":"/a","md5":"` + strings.Repeat("ab", 32) + `"}`, "bad_md5"},
		{"dest_key absolute", `{"remote_path":"/a","dest_key":"/etc/cron.d/x"}`, "bad_dest_key"},
		{"dest_key climbs", `{"remote_path":"/a","dest_key":"../../etc/passwd"}`, "bad_dest_key"},
		{"dest_key empty", `{"remote_path":"/a","dest_key":""}`, "bad_dest_key"},
		{"legacy name with slash", `{"name":"../x","location":"/u","hash":"` + md5Zero + `"}`, "bad_path"},
		{"legacy missing location", `{"name":"a","hash":"` + md5Zero + `"}`, "missing_field"},
		{"mixed formats", `{"remote_path":"/a","name":"b"}`, "mixed_format"},
		{"oversized value", `{"remote_path":"/a","dest_key":"` + strings.Repeat("k", 900<<10) + `"}`, "too_large"},
	}
}

// TestHostileMessagesAmongGoodJobs (scenario 10): every hostile message is dead-lettered with its
// own reason while the good jobs between them all succeed.
func TestHostileMessagesAmongGoodJobs(t *testing.T) {
	s := start(t, testenv.Options{Kafka: devstack.KafkaApache}, nil)
	s.worker(s.cfg)
	s.bridge(s.cfg)
	corpus := hostile()
	if len(corpus) < 40 {
		t.Fatalf("corpus has %d messages", len(corpus))
	}
	for i, h := range corpus {
		s.refuse(fmt.Sprintf("hostile-%02d", i), []byte(h.value), h.reason)
		if i%4 == 0 {
			s.job(fmt.Sprintf("good-%02d", i), fmt.Sprintf("in/good-%02d.bin", i), int64(i)*4099, uint64(i))
		}
	}
	s.wait(2 * time.Minute)
	s.ledger()
}

// TestFileChangedAfterAnnouncement (scenario 5): the file on the server no longer matches the MD5
// the job announced: downloaded again, then dead-lettered with stage verify; staging is clean.
func TestFileChangedAfterAnnouncement(t *testing.T) {
	s := start(t, testenv.Options{Kafka: devstack.KafkaApache}, nil)
	s.worker(s.cfg)
	s.bridge(s.cfg)
	s.job("stable", "in/stable.bin", 3<<20, 1)
	sum := s.env.WriteFile(t, "in/changed.bin", 3<<20, 2)
	s.env.WriteFile(t, "in/changed.bin", 3<<20, 3) // rewritten after the announcement below was made
	s.expectDead("changed", "verify", "ChecksumMismatch")
	s.publishRaw([]byte("changed"), fmt.Appendf(nil, `{"id":"changed","remote_path":"/in/changed.bin","md5":%q}`, sum))
	s.wait(2 * time.Minute)
	s.ledger()
	var downloads int
	if err := s.store.Pool().QueryRow(s.ctx, `SELECT count(*) FROM job_events WHERE job_id='changed' AND step='download' AND outcome='succeeded'`).Scan(&downloads); err != nil || downloads != s.cfg.Transfer.VerifyAttempts {
		t.Fatalf("changed file downloaded %d times (%v), want %d", downloads, err, s.cfg.Transfer.VerifyAttempts)
	}
}

// TestUnknownOrChangedHostKey (scenario 9): a worker whose known_hosts holds another key refuses
// the server with an error naming the host and both fingerprints; the job is dead-lettered and
// nothing falls back to accepting the key.
func TestUnknownOrChangedHostKey(t *testing.T) {
	for _, tc := range []struct{ name, hostPattern, want string }{
		{"changed", "", "host key changed"},
		{"unknown", "sftp.elsewhere.example", "unknown host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, testenv.Options{Kafka: devstack.KafkaApache}, nil)
			other, _, err := sftpserver.NewHostKey()
			if err != nil {
				t.Fatal(err)
			}
			addr := s.cfg.SFTP.Addr
			if tc.hostPattern != "" {
				addr = tc.hostPattern
			}
			kh := filepath.Join(s.env.Dir, "wrong_known_hosts")
			if err := os.WriteFile(kh, []byte(sftpserver.KnownHostsLine(addr, other.PublicKey())+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			wrong := s.cfg
			wrong.SFTP.KnownHosts = kh
			s.worker(wrong)
			s.bridge(s.cfg)
			s.env.WriteFile(t, "in/secret.bin", 1<<20, 9)
			s.expectDead("hostkey", "stat", "HostKeyMismatch")
			s.publishRaw([]byte("hostkey"), []byte(`{"id":"hostkey","remote_path":"/in/secret.bin"}`))
			s.wait(time.Minute)
			s.ledger()
			reason := headers(testenv.ReadTopic(t, s.cfg.Kafka.Brokers, s.cfg.Kafka.DLQTopic)[0])["reason"]
			fps := 2
			if tc.hostPattern != "" {
				fps = 1 // nothing is known for the host: only the offered key can be named
			}
			host := strings.Split(s.cfg.SFTP.Addr, ":")[0]
			if !strings.Contains(reason, host) || strings.Count(reason, "SHA256:") < fps || !strings.Contains(reason, tc.want) {
				t.Fatalf("host key reason %q does not name the host, the fingerprints and %q", reason, tc.want)
			}
			t.Logf("dead letter reason: %s", reason)
		})
	}
}

// TestSameJobThreeTimesAcrossRebalance (scenario 11): one job published three times, once while a
// second bridge joins the group: one workflow, one object, one audit row.
func TestSameJobThreeTimesAcrossRebalance(t *testing.T) {
	s := start(t, testenv.Options{Kafka: devstack.KafkaApache}, func(c *config.Config) { c.Transfer.MinAge = 0 })
	s.worker(s.cfg)
	s.bridge(s.cfg)
	sum := s.env.WriteFile(t, "in/thrice.bin", 2<<20, 5)
	msg := fmt.Appendf(nil, `{"id":"thrice","remote_path":"/in/thrice.bin","md5":%q}`, sum)
	s.mu.Lock()
	s.want["thrice"] = want{key: "in/thrice.bin", md5: sum}
	s.mu.Unlock()
	s.publishRaw([]byte("thrice"), msg)
	for i := range 20 { // other jobs keep the partitions busy through the rebalance
		s.job(fmt.Sprintf("other-%02d", i), fmt.Sprintf("in/other-%02d.bin", i), 64<<10, uint64(100+i))
	}
	s.bridge(s.cfg) // joins: the group rebalances
	s.publishRaw([]byte("thrice"), msg)
	time.Sleep(2 * time.Second)
	s.publishRaw([]byte("thrice"), msg)
	s.wait(2 * time.Minute)
	s.ledger()
}
