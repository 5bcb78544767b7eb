package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// MessageRef is a job message's place on its topic.
type MessageRef struct {
	Topic     string
	Partition int32
	Offset    int64
}

// JobStatuses returns the status of each of ids that has a row; ids without one are absent.
func (s *Store) JobStatuses(ctx context.Context, ids []string) (map[string]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT job_id, status FROM jobs WHERE job_id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("job statuses: %w", err)
	}
	out := make(map[string]string, len(ids))
	var id, status string
	_, err = pgx.ForEachRow(rows, []any{&id, &status}, func() error { out[id] = status; return nil })
	if err != nil {
		return nil, fmt.Errorf("job statuses: %w", err)
	}
	return out, nil
}

// DeadLettered returns which of msgs have a dead letter written for them (by the bridge, which
// refused the message, or by the job's workflow).
func (s *Store) DeadLettered(ctx context.Context, msgs []MessageRef) (map[MessageRef]bool, error) {
	topics, parts, offsets := make([]string, len(msgs)), make([]int32, len(msgs)), make([]int64, len(msgs))
	for i, m := range msgs {
		topics[i], parts[i], offsets[i] = m.Topic, m.Partition, m.Offset
	}
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT d.origin_topic, d.origin_partition, d.origin_offset
		FROM dead_letters d JOIN unnest($1::text[], $2::integer[], $3::bigint[]) AS m(topic, part, off)
		  ON d.origin_topic = m.topic AND d.origin_partition = m.part AND d.origin_offset = m.off`, topics, parts, offsets)
	if err != nil {
		return nil, fmt.Errorf("dead-lettered messages: %w", err)
	}
	out := map[MessageRef]bool{}
	var m MessageRef
	_, err = pgx.ForEachRow(rows, []any{&m.Topic, &m.Partition, &m.Offset}, func() error { out[m] = true; return nil })
	if err != nil {
		return nil, fmt.Errorf("dead-lettered messages: %w", err)
	}
	return out, nil
}

// DeadLettersWithoutJob returns the dead letters published since since by a workflow (not refused
// by the bridge, which starts no job) whose job has no row, at most limit of them.
func (s *Store) DeadLettersWithoutJob(ctx context.Context, since time.Time, limit int) ([]DeadLetter, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+dlqColumns+` FROM dead_letters d
		WHERE d.published_at >= $1 AND d.job_id IS NOT NULL AND d.stage NOT IN ($2, $3)
		  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = d.job_id)
		ORDER BY d.published_at, d.partition, d.kafka_offset LIMIT $4`, since, StageValidate, StageStart, limit)
	if err != nil {
		return nil, fmt.Errorf("dead letters without job: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[DeadLetter])
}
