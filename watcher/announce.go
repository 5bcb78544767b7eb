package watcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/metrics"
)

// JobID is the id of the job announcing a file: the same file (source, path, size, mtime) always
// gets the same id, so however often it is announced the bridge starts one workflow for it, and a
// changed file is a new job.
func JobID(source, path string, size int64, mtime time.Time) string {
	h := sha256.New()
	for _, s := range []string{source, path, strconv.FormatInt(size, 10), strconv.FormatInt(mtime.Unix(), 10)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "w-" + hex.EncodeToString(h.Sum(nil))[:24]
}

// message is the job message of a file; source is left out for the default source.
type message struct {
	ID         string `json:"id"`
	RemotePath string `json:"remote_path"`
	Size       int64  `json:"size"`
	Source     string `json:"source,omitempty"`
}

// announce publishes the job messages of due on topic and records the files Kafka acknowledged; it
// returns how many it recorded. A file whose message the bridge would refuse is skipped instead.
func (w *Watcher) announce(ctx context.Context, src, topic string, due []file) (int, error) {
	msgs := make([]*sarama.ProducerMessage, 0, len(due))
	for i, f := range due {
		m := message{ID: JobID(src, f.path, f.size, f.mtime), RemotePath: f.path, Size: f.size}
		if src != config.DefaultSource {
			m.Source = src
		}
		value, _ := json.Marshal(m)
		if _, err := w.policy.Parse([]byte(m.ID), value); err != nil {
			w.skips.skip(src, f.path, "no job may name it: "+err.Error())
			continue
		}
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(m.ID),
			Value: sarama.ByteEncoder(value), Metadata: i})
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	sendErr := w.prod.SendMessages(msgs)
	acked := acknowledged(due, msgs, sendErr)
	if err := w.recordAnnounced(ctx, src, acked); err != nil {
		return 0, errors.Join(sendErr, err)
	}
	metrics.WatchAnnounced.WithLabelValues(src).Add(float64(len(acked)))
	if sendErr != nil {
		return len(acked), fmt.Errorf("announce on %s: %d of %d messages not acknowledged: %w", topic,
			len(msgs)-len(acked), len(msgs), sendErr)
	}
	return len(acked), nil
}

// acknowledged returns the files whose messages Kafka acknowledged, given SendMessages' error:
// sarama.ProducerErrors names the messages that failed; any other error fails them all.
func acknowledged(due []file, msgs []*sarama.ProducerMessage, err error) []file {
	var perrs sarama.ProducerErrors
	if err != nil && !errors.As(err, &perrs) {
		return nil
	}
	failed := map[int]bool{}
	for _, pe := range perrs {
		failed[pe.Msg.Metadata.(int)] = true
	}
	acked := make([]file, 0, len(msgs))
	for _, m := range msgs {
		if i := m.Metadata.(int); !failed[i] {
			acked = append(acked, due[i])
		}
	}
	return acked
}

// recordAnnounced marks the files announced. It runs to its end even when ctx ends: Kafka has the
// messages, and a file left unmarked is announced again. It tries three times, as a failure here
// means sending the messages again.
func (w *Watcher) recordAnnounced(ctx context.Context, src string, files []file) error {
	if len(files) == 0 {
		return nil
	}
	paths, sizes, mtimes := columns(files)
	ids := make([]string, len(files))
	for i, f := range files {
		ids[i] = JobID(src, f.path, f.size, f.mtime)
	}
	var err error
	for try := range 3 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_, err = w.db.Exec(rctx, qAnnounced, src, paths, sizes, mtimes, ids)
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
	}
	return fmt.Errorf("record %d announced files (they will be announced again, under the same job ids): %w", len(files), err)
}
