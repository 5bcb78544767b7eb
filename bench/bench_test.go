package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/testproc"
)

func TestMain(m *testing.M) { testproc.Main(m) }

// TestBenchSmoke runs every scenario once on tiny inputs, so the benchmark code cannot rot. It
// checks that each scenario ran every contender and that the downloads were byte-exact (run does);
// the figures of such a run mean nothing and are not checked.
func TestBenchSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	o := options{size: 2 << 20, reps: 1, rtts: []time.Duration{20 * time.Millisecond}, jobs: 10, warmup: 3,
		scenarios: map[int]bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: true}, dir: t.TempDir(),
		k: kafkasyncSettings{Connections: 4, RangeSize: 256 << 10, ChunkSize: 256 << 10}}
	r, err := run(ctx, o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	md := r.markdown()
	for _, want := range []string{"## 1. One 2 MiB file on loopback", "## 2. One 2 MiB file at 20ms", "## 3. One 2 MiB job end to end",
		"## 4. 10 jobs of 64 KiB", "## 5. Worker memory", "## 6. Resume"} {
		if !strings.Contains(md, want) {
			t.Errorf("no section %q in\n%s", want, md)
		}
	}
	if len(r.machine) != 1 || !strings.HasPrefix(r.machine[0], "scenario4 jobs_per_s=") || !strings.Contains(r.machine[0], " ceiling_per_s=") || !strings.Contains(r.machine[0], " ratio_ceiling=") || !strings.Contains(r.machine[0], " p99_s=") {
		t.Errorf("machine-readable lines %q", r.machine)
	}
	if !strings.Contains(md, "CPU seconds per kafkasync job, by process") || !strings.Contains(md, "temporal ") || !strings.Contains(md, "kafka ") {
		t.Errorf("no CPU per job for each process in\n%s", md)
	}
	for _, c := range []string{"| kafkasync |", "| sftp |", "| lftp |", "| rclone |", "| lftp + aws s3 cp |"} {
		if !strings.Contains(md, c) {
			t.Errorf("no row %q", c)
		}
	}
}

// A run that misses a target says which and by how much, and which process spends more than the
// ceiling's, largest first.
func TestMissedTargetsAndExcessCPU(t *testing.T) {
	met := smallSummary{jobsPerSec: 112, ceiling: 180, rclone: 200, ratioCeiling: 112.0 / 180, ratioRclone: 112.0 / 200, p99: 6 * time.Second}
	if got := missedTargets(met); got != "" {
		t.Errorf("every target met: %q", got)
	}
	got := missedTargets(smallSummary{jobsPerSec: 90, ceiling: 200, rclone: 400, ratioCeiling: 0.45, ratioRclone: 0.225, p99: 16 * time.Second})
	for _, want := range []string{"100 jobs/s by 10.0", "0.6× the ceiling by 0.15× (0.45×)",
		"half of rclone's rate by 0.28× (0.23×; the engine's own ceiling is 0.50× rclone's)", "a p99 under 15 s by 1s"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	k := cpuPerJob{"postgres": 0.005, "temporal": 0.0052, "sshd": 0.0007}
	c := cpuPerJob{"postgres": 0.003, "temporal": 0.0044}
	if got, want := k.over(c), "postgres +0.0020, temporal +0.0008, sshd +0.0007; in all 0.0109 against 0.0074"; got != want {
		t.Errorf("over: %q, want %q", got, want)
	}
}
