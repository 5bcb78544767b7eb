package activities

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kafkasync/kafkasync/internal/progress"
)

// The journal is the download's progress kept next to its staging file, so a worker restarted on
// the same host resumes from what it last wrote rather than from the last heartbeat Temporal
// stored (heartbeats reach the server only every few seconds).
func journalName(staging string) string { return staging + ".ranges" }

// journalEntry is the journal's content.
type journalEntry struct {
	Boot    string            `json:"boot"`    // the kernel's boot id when it was written
	Written progress.Progress `json:"written"` // written to the staging file (page cache)
	Synced  progress.Progress `json:"synced"`  // and synced to disk
}

// journalEvery is how often the journal records the written ranges (no data sync: cheap).
const journalEvery = 50 * time.Millisecond

// progress is a snapshot of what the attempt has written.
func (d *download) progress() progress.Progress {
	d.mu.Lock()
	spans := d.done.Spans()
	part := make(map[int]int64, len(d.partial))
	for i, b := range d.partial {
		part[i] = b
	}
	bytesDone := d.done.Bytes(d.in.Size, d.in.RangeSize) + sumPartial(part)
	d.mu.Unlock()
	el := time.Since(d.start).Seconds()
	return progress.Progress{Size: d.in.Size, RangeSize: d.in.RangeSize, ModTime: d.remote.ModTime, Done: spans, Partial: part,
		BytesDone: bytesDone, BytesPerSec: float64(d.fetched.Load()) / max(el, 1e-3), Ranges: d.n, Connections: d.conns}
}

// record writes the journal; with sync it first syncs the staging file, and the journal and the
// heartbeat then record what is durable.
func (d *download) record(ctx context.Context, sync bool) {
	p := d.progress() // snapshot first: every byte it counts is written before the sync below
	if sync {
		if err := d.f.Sync(); err != nil {
			d.a.log(ctx, d.in.JobID).Warn("sync staging", "err", err)
		} else {
			d.synced = p
			heartbeat(ctx, p)
		}
	}
	if !d.journaled() {
		return
	}
	if err := d.a.writeJournal(d.name, journalEntry{Boot: bootID(), Written: p, Synced: d.synced}); err != nil {
		d.a.log(ctx, d.in.JobID).Warn("write download journal", "err", err)
	}
}

// keepJournal records the journal every journalEvery (in the page cache: it survives the worker's
// death, not the machine's) and syncs (and heartbeats) every syncEvery. stop ends it and records once more, synced,
// keeping what the attempt finished even when it failed.
func (d *download) keepJournal(ctx context.Context) (stop func()) {
	quit, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(journalEvery)
		defer t.Stop()
		lastSync := time.Now()
		for {
			select {
			case <-t.C:
				sync := time.Since(lastSync) >= d.a.syncEvery()
				if sync {
					lastSync = time.Now()
				}
				d.record(ctx, sync)
			case <-quit:
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-exited
		if d.journaled() {
			d.record(ctx, true)
		}
	}
}

// journaled: a file of one range keeps no journal. An attempt after a crash fetches it again, no
// more than the journal's own writes and syncs would cost, and Promote syncs it before it counts.
func (d *download) journaled() bool { return d.n > 1 }

var bootOnce = sync.OnceValue(func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
})

func bootID() string { return bootOnce() }

func (a *Transfer) writeJournal(staging string, p journalEntry) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	tmp := journalName(staging) + ".tmp"
	if err := a.Staging.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return a.Staging.Rename(tmp, journalName(staging))
}

func (a *Transfer) readJournal(staging string) (journalEntry, bool) {
	b, err := a.Staging.ReadFile(journalName(staging))
	if err != nil {
		return journalEntry{}, false
	}
	var j journalEntry
	return j, json.Unmarshal(b, &j) == nil
}

func (a *Transfer) removeJournal(staging string) {
	_ = a.Staging.Remove(journalName(staging))
	_ = a.Staging.Remove(journalName(staging) + ".tmp")
}
