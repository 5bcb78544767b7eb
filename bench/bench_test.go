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
