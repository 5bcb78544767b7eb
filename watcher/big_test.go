package watcher

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/sftpdial"
)

// Twenty thousand files are each announced once, in one directory and in twenty of a thousand
// (recursive); 2,000 in one directory first, for comparison. The test reports the heap's and the
// process's peak while they are listed and announced; the in-process SFTP server, which reads a
// directory whole as well, counts in both.
func TestTwentyThousandFiles(t *testing.T) {
	var want []string
	sources := map[string][]config.Watch{}
	for _, c := range []struct {
		files, dirs int
		linkFrom    string // where the files are already, to link rather than write them anew
	}{{2000, 1, ""}, {20000, 1, ""}, {20000, 20, "/big-20000-1/d00"}} {
		src := fmt.Sprintf("big-%d-%d", c.files, c.dirs)
		e := entry("/"+src, "t-big", time.Millisecond)
		e.Recursive = true
		sources[src] = []config.Watch{e}
		cfg := testConfig(map[string][]config.Watch{src: {e}})
		per := c.files / c.dirs
		for d := range c.dirs {
			dir := fmt.Sprintf("/%s/d%02d", src, d)
			if c.linkFrom == "" {
				want = append(want, writeFiles(t, dir, per)...)
			} else {
				want = append(want, linkFiles(t, c.linkFrom, dir, d*per, per)...)
			}
		}
		w := newWatcher(t, cfg, nil, nil)
		var took [2]time.Duration
		m := measure(func() {
			for i := range took {
				start := time.Now()
				if err := w.Once(context.Background()); err != nil {
					t.Fatal(err)
				}
				took[i] = time.Since(start)
			}
		})
		t.Logf("%d files in %d directories: first listing %v, announcing listing %v; live heap %.1f MiB before, peak %.1f MiB (+%.1f MiB); heap objects peak %.1f MiB; peak RSS %.1f MiB",
			c.files, c.dirs, took[0].Round(time.Millisecond), took[1].Round(time.Millisecond),
			mib(m.base), mib(m.peakLive), mib(m.peakLive-m.base), mib(m.peakHeap), mib(m.rss))
		if grew := m.peakLive - m.base; grew > 32<<20 {
			t.Errorf("the live heap grew by %.1f MiB for %d files", mib(grew), c.files)
		}
	}
	onceEach(t, readJobs(t, testConfig(sources), "t-big"), want)
	listingHeap(t, testConfig(sources), "big-20000-1", "/big-20000-1/d00")
}

// linkFiles hard-links files first to first+n-1 of writeFiles' dir from into dir, which is ten
// times quicker than writing them.
func linkFiles(t testing.TB, from, dir string, first, n int) []string {
	t.Helper()
	remote(t, dir+"/f")
	paths := make([]string, n)
	for i := range paths {
		name := fmt.Sprintf("f%05d.dat", first+i)
		paths[i] = dir + "/" + name
		if err := os.Link(remote(t, from+"/"+name), remote(t, paths[i])); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

// listingHeap reports what pkg/sftp's listing of dir holds on the client's side alone.
func listingHeap(t *testing.T, cfg config.Config, src, dir string) {
	s, _ := cfg.Source(src)
	d, err := sftpdial.New(s)
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.DialRetry(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := liveHeap()
	fis, err := c.ReadDirContext(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	held := liveHeap() - before
	t.Logf("pkg/sftp's listing of %d entries holds %.1f MiB (%d bytes each)", len(fis), mib(held), held/uint64(len(fis)))
	runtime.KeepAlive(fis)
}

// liveHeap collects twice (the first leaves what sync.Pools held in their victim caches) and
// returns what stayed.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

type memory struct{ base, peakLive, peakHeap, rss uint64 }

// measure runs f and samples the heap meanwhile, every 5 ms: peakLive is the most the heap held
// live at the end of a collection, peakHeap the most it held with garbage; rss is the process's
// peak resident size during f (VmHWM, reset before f where the kernel allows it).
func measure(f func()) memory {
	// Frequent collections, so that the live heap is sampled near its peak.
	defer debug.SetGCPercent(debug.SetGCPercent(20))
	m := memory{base: liveHeap()}
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(samples)
			m.peakLive = max(m.peakLive, samples[0].Value.Uint64())
			m.peakHeap = max(m.peakHeap, samples[1].Value.Uint64())
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(stop)
	<-done
	m.rss = peakRSS()
	return m
}

func peakRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			var kb uint64
			fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
			return kb << 10
		}
	}
	return 0
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
