package watcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/metrics"
)

// A file still being written is not announced; once it stops growing it is, min_age later and
// once, with its final size. A file already complete is announced meanwhile.
func TestGrowingFileAnnouncedOnceItStops(t *testing.T) {
	const minAge = time.Second
	cfg := testConfig(map[string][]config.Watch{"slow": {entry("/slow", "t-slow", minAge)}})
	writeFile(t, "/slow/done.bin", "complete")
	f, err := os.Create(remote(t, "/slow/growing.bin"))
	if err != nil {
		t.Fatal(err)
	}
	log, _ := newLog(t)
	ctx, cancel := context.WithCancel(context.Background())
	w := newWatcher(t, cfg, nil, log)
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	defer wg.Wait() // before the producer closes
	defer cancel()

	chunk := strings.Repeat("x", 1024)
	var lastWrite time.Time
	for range 25 { // 2.5 s, longer than min_age
		f.WriteString(chunk)
		lastWrite = time.Now()
		time.Sleep(100 * time.Millisecond)
	}
	f.Close()
	jobs := readJobs(t, cfg, "t-slow")
	if len(jobs["/slow/growing.bin"]) != 0 {
		t.Fatalf("announced while it grew: %+v", jobs["/slow/growing.bin"])
	}
	if len(jobs["/slow/done.bin"]) != 1 {
		t.Fatalf("the complete file: %d announcements while the other grew, want 1", len(jobs["/slow/done.bin"]))
	}
	jobs = waitJobs(t, cfg, "t-slow", 2, 15*time.Second)
	if took := time.Since(lastWrite); took < minAge {
		t.Fatalf("announced %v after the last write, min_age is %v", took, minAge)
	}
	time.Sleep(500 * time.Millisecond) // several more rounds
	jobs = readJobs(t, cfg, "t-slow")
	onceEach(t, jobs, []string{"/slow/done.bin", "/slow/growing.bin"})
	if j := jobs["/slow/growing.bin"][0]; j.Size != 25*1024 {
		t.Fatalf("announced size %d, the file has %d bytes", j.Size, 25*1024)
	}
}

// interrupting stops the watcher (calls stop) once the first batch of messages was sent. With
// lose set, it then reports the batch as failed, as when the process dies after Kafka acknowledged
// the messages and before their rows were marked.
type interrupting struct {
	sarama.SyncProducer
	stop func()
	lose bool
	once sync.Once
}

func (p *interrupting) SendMessages(msgs []*sarama.ProducerMessage) error {
	err := p.SyncProducer.SendMessages(msgs)
	first := false
	p.once.Do(func() { first = true; p.stop() })
	if first && p.lose && err == nil {
		return errors.New("connection lost before the acknowledgement")
	}
	return err
}

// writeFiles writes n small files into dir and returns their paths.
func writeFiles(t testing.TB, dir string, n int) []string {
	t.Helper()
	local := filepath.Dir(remote(t, dir+"/f"))
	paths := make([]string, n)
	for i := range paths {
		name := fmt.Sprintf("f%05d.dat", i)
		paths[i] = dir + "/" + name
		if err := os.WriteFile(filepath.Join(local, name), []byte(paths[i]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

// A watcher stopped in the middle of announcing a listing, then started again, announces every
// file once; one that dies after Kafka's acknowledgement and before the row was marked announces
// those files again, under the same job ids (one workflow each).
func TestRestartMidListing(t *testing.T) {
	for _, tc := range []struct {
		name, topic string
		lose        bool
	}{{"restart", "t-restart", false}, {"crash", "t-crash", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(map[string][]config.Watch{tc.name: {entry("/"+tc.name, tc.topic, time.Millisecond)}})
			paths := writeFiles(t, "/"+tc.name, 3*batchSize-100)
			log, _ := newLog(t)
			first := newWatcher(t, cfg, nil, log)
			if err := first.Once(context.Background()); err != nil { // first sight: nothing due
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stopped := newWatcher(t, cfg, &interrupting{SyncProducer: producer(t), stop: cancel, lose: tc.lose}, log)
			if err := stopped.Once(ctx); !errors.Is(err, context.Canceled) && !tc.lose {
				t.Fatalf("interrupted round: %v, want context.Canceled", err)
			}
			partial := count(readJobs(t, cfg, tc.topic))
			if partial != batchSize {
				t.Fatalf("%d messages before the restart, want one batch of %d", partial, batchSize)
			}
			again := newWatcher(t, cfg, nil, log)
			for range 2 {
				if err := again.Once(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			jobs := readJobs(t, cfg, tc.topic)
			if !tc.lose {
				onceEach(t, jobs, paths)
				return
			}
			ids := map[string]bool{}
			for _, p := range paths {
				for _, j := range jobs[p] {
					ids[j.ID] = true
				}
			}
			if len(ids) != len(paths) || count(jobs) != len(paths)+batchSize {
				t.Fatalf("%d messages with %d job ids for %d files: want the lost batch of %d again under the same ids",
					count(jobs), len(ids), len(paths), batchSize)
			}
		})
	}
}

// A source whose lock another watcher holds is left alone until the lock is free; two watchers
// running at once on the same sources announce each file once.
func TestTwoWatchersShareTheSources(t *testing.T) {
	held := holdLock(t, "pair-locked")
	locked := testConfig(map[string][]config.Watch{"pair-locked": {entry("/pair/locked", "t-pair", time.Millisecond)}})
	want := writeFiles(t, "/pair/locked", 20)
	log, _ := newLog(t)
	for range 2 {
		if err := newWatcher(t, locked, nil, log).Once(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := value(metrics.WatchRounds.WithLabelValues("pair-locked", "locked")); n != 2 {
		t.Fatalf("rounds skipped for the lock: %v, want 2", n)
	}
	if n := count(readJobs(t, locked, "t-pair")); n != 0 {
		t.Fatalf("%d files announced while another watcher held the source", n)
	}
	held.Close(context.Background())

	sources := map[string][]config.Watch{"pair-locked": locked.Sources["pair-locked"].Watch}
	for _, s := range []string{"pair-a", "pair-b", "pair-c", "pair-d"} {
		sources[s] = []config.Watch{entry("/pair/"+s, "t-pair", 200*time.Millisecond)}
		want = append(want, writeFiles(t, "/pair/"+s, 60)...)
	}
	cfg := testConfig(sources)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		w := newWatcher(t, cfg, nil, log)
		wg.Go(func() { w.Run(ctx) })
	}
	waitJobs(t, cfg, "t-pair", len(want), 20*time.Second)
	time.Sleep(600 * time.Millisecond) // rounds enough for a second announcement to show
	cancel()
	wg.Wait()
	onceEach(t, readJobs(t, cfg, "t-pair"), want)
	busy := 0.0
	for s := range sources {
		busy += value(metrics.WatchRounds.WithLabelValues(s, "locked"))
	}
	t.Logf("rounds skipped because the other watcher held the source: %v", busy-2)
}

// holdLock takes the source's advisory lock as another watcher would.
func holdLock(t *testing.T, source string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, srv.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(ctx) })
	class, key := lockKeys(source)
	var ok bool
	if err := c.QueryRow(ctx, "SELECT pg_try_advisory_lock($1::int4, $2::int4)", class, key).Scan(&ok); err != nil || !ok {
		t.Fatalf("lock %s: %v %v", source, ok, err)
	}
	return c
}

// Entries that cannot be read, are not regular files, or name a path no job may have are skipped,
// each logged once with its source, path and reason; the watch entry whose directory is missing
// too. The readable file is announced.
func TestUnreadableEntriesSkipped(t *testing.T) {
	cfg := testConfig(map[string][]config.Watch{"skip": {
		entry("/skip", "t-skip", time.Millisecond), entry("/skip-missing", "t-skip", time.Millisecond)}})
	writeFile(t, "/skip/good.csv", "ok")
	writeFile(t, "/skip/dir/inside.csv", "not listed: not recursive")
	writeFile(t, "/skip/bad\nname.csv", "a newline in its name")
	for link, target := range map[string]string{"/skip/outside": "/etc/hostname", "/skip/dangling": "nowhere", "/skip/dirlink": "dir"} {
		if err := os.Symlink(target, remote(t, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(remote(t, "/skip/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	log, logs := newLog(t)
	w := newWatcher(t, cfg, nil, log)
	for range 3 {
		if err := w.Once(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	onceEach(t, readJobs(t, cfg, "t-skip"), []string{"/skip/good.csv"})
	want := map[string]string{
		"/skip/outside":       "cannot stat the link's target",
		"/skip/dangling":      "cannot stat the link's target",
		"/skip/dirlink":       "a link to a directory",
		"/skip/fifo":          "not a regular file",
		"/skip/bad\nname.csv": "no job may name it: bad_path",
		"/skip-missing":       "cannot list the directory",
	}
	got := map[string]string{}
	for _, r := range logs.records("watch: skipped") {
		p, _ := r["path"].(string)
		if _, dup := got[p]; dup {
			t.Errorf("%q logged more than once", p)
		}
		got[p], _ = r["reason"].(string)
		if r["source"] != "skip" {
			t.Errorf("%q logged with source %v", p, r["source"])
		}
	}
	for p, reason := range want {
		if !strings.HasPrefix(got[p], reason) {
			t.Errorf("%q: reason %q, want %q…", p, got[p], reason)
		}
	}
	if len(got) != len(want) {
		t.Errorf("skipped %v, want %v", got, want)
	}
}

// pattern matches file names only; recursive lists the directories below; each entry announces on
// its own topic; a message of the default source has no source field; a file that changes is
// announced again as a new job.
func TestPatternAndRecursive(t *testing.T) {
	flat := entry("/tree", "t-flat", time.Millisecond)
	flat.Pattern = "*.csv"
	deep := flat
	deep.Recursive, deep.Topic = true, "t-deep"
	cfg := testConfig(map[string][]config.Watch{config.DefaultSource: {flat}, "deep": {deep}})
	for _, p := range []string{"/tree/a.csv", "/tree/b.txt", "/tree/sub/c.csv", "/tree/sub/e.txt", "/tree/sub/deeper/d.csv", "/tree/y.csv/f.txt"} {
		writeFile(t, p, p)
	}
	log, _ := newLog(t)
	w := newWatcher(t, cfg, nil, log)
	rounds := func() {
		for range 2 {
			if err := w.Once(context.Background()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	rounds()
	flatJobs := readJobs(t, cfg, "t-flat")
	onceEach(t, flatJobs, []string{"/tree/a.csv"})
	onceEach(t, readJobs(t, cfg, "t-deep"), []string{"/tree/a.csv", "/tree/sub/c.csv", "/tree/sub/deeper/d.csv"})
	a := flatJobs["/tree/a.csv"][0]
	if want := fmt.Sprintf(`{"id":%q,"remote_path":"/tree/a.csv","size":11}`, a.ID); a.raw != want || a.key != a.ID {
		t.Fatalf("message %s key %s, want %s keyed by its id", a.raw, a.key, want)
	}
	if d := readJobs(t, cfg, "t-deep")["/tree/a.csv"][0]; d.Source != "deep" || d.ID == a.ID {
		t.Fatalf("the deep source's message %s: want source deep and its own id", d.raw)
	}

	writeFile(t, "/tree/a.csv", "changed, and longer")
	rounds()
	again := readJobs(t, cfg, "t-flat")["/tree/a.csv"]
	if len(again) == 2 && again[0].ID != a.ID { // partitions are read side by side: any order
		again[0], again[1] = again[1], again[0]
	}
	if len(again) != 2 || again[0].ID != a.ID || again[1].ID == a.ID || again[1].Size != 19 {
		t.Fatalf("after a change: %+v, want a second job with a new id and the new size", again)
	}
}

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	c.Write(&m)
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
