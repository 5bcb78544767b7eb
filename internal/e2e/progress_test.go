package e2e

// Live progress with the shipped heartbeat settings, against the real Temporal dev server, the
// pkg/sftp server (read rate limited), versitygw and PostgreSQL; Kafka is the in-process broker.

import (
	"context"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/ui"
)

// The progress the dashboard reads from Temporal moves within 2.5 s (heartbeats go every second)
// while a download runs, with the shipped transfer.heartbeat_timeout: the SDK's default throttle
// (0.8 × 30 s) would hold each heartbeat back for 24 s.
func TestProgressMovesWithinSecondsWithTheShippedConfig(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Kafka: devstack.KafkaEmbedded, SFTPReadRate: 3 << 20})
	shipped := config.Default().Transfer
	env.Cfg.Transfer.HeartbeatTimeout, env.Cfg.Transfer.StallTimeout = shipped.HeartbeatTimeout, shipped.StallTimeout
	if env.Cfg.Transfer.HeartbeatTimeout.D() != 30*time.Second {
		t.Fatalf("shipped heartbeat timeout %s", env.Cfg.Transfer.HeartbeatTimeout)
	}
	p := startPipeline(t, env, true)
	const size = 24 << 20 // about 8 s at 3 MiB/s
	sum := env.WriteFile(t, "slow/a.bin", size, 21)
	p.publish(t, "slow", `{"id":"slow","remote_path":"/slow/a.bin","md5":"`+sum+`"}`)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	progress := ui.TemporalProgress(p.client)
	var (
		changes  []time.Time
		last     int64 = -1
		maxGap   time.Duration
		finished bool
	)
	for !finished && ctx.Err() == nil {
		pr, err := progress(ctx, "file-slow", "")
		switch {
		case err != nil && isNotFound(err):
		case err != nil:
			t.Fatal(err)
		case pr.Step == "Download" && pr.BytesDone != last:
			now := time.Now()
			if len(changes) > 0 {
				maxGap = max(maxGap, now.Sub(changes[len(changes)-1]))
			}
			changes, last = append(changes, now), pr.BytesDone
		case pr.BytesDone >= size || (!pr.Running && len(changes) > 0):
			finished = true
		}
		if last >= size {
			finished = true
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := p.wait(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	t.Logf("progress changed %d times during the download; longest gap %s", len(changes), maxGap.Round(time.Millisecond))
	// Heartbeats go every second; one that arrives a little late, on a busy machine, leaves a gap
	// of just over two. The SDK's own throttle would leave 24 s.
	if len(changes) < 4 || maxGap > 2500*time.Millisecond {
		t.Fatalf("progress changed %d times, longest gap %s: want a change at least every 2.5 s", len(changes), maxGap)
	}
}
