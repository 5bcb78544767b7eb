package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Dead-letter states, as stored in dead_letters.state.
const (
	DLQOpen      = "open"
	DLQReplayed  = "replayed"
	DLQDiscarded = "discarded"
)

// Stages at which the bridge refuses a job message (dead_letters.stage).
const (
	StageValidate = "validate" // not a valid job
	StageStart    = "start"    // Temporal refused to start its workflow for good
)

// ErrDLQState is returned when a dead letter was already replayed or discarded.
var ErrDLQState = errors.New("dead letter already handled")

// DeadLetter is one row of table dead_letters: a message on the dead-letter topic.
type DeadLetter struct {
	Topic           string     `json:"topic"`
	Partition       int32      `json:"partition"`
	Offset          int64      `json:"offset"`
	JobID           *string    `json:"job_id"`
	Key             []byte     `json:"key"`
	Value           []byte     `json:"value"`
	Reason          string     `json:"reason"`
	Stage           string     `json:"stage"`
	ErrorType       *string    `json:"error_type"`
	Attempts        *int       `json:"attempts"`
	WorkflowID      *string    `json:"workflow_id"`
	OriginTopic     *string    `json:"origin_topic"`
	OriginPartition *int32     `json:"origin_partition"`
	OriginOffset    *int64     `json:"origin_offset"`
	PublishedAt     time.Time  `json:"published_at"`
	IndexedAt       time.Time  `json:"indexed_at"`
	State           string     `json:"state"`
	ActedAt         *time.Time `json:"acted_at"`
	ActedBy         *string    `json:"acted_by"`
	ReplayPartition *int32     `json:"replay_partition"`
	ReplayOffset    *int64     `json:"replay_offset"`
	Source          *string    `json:"source"`
}

const dlqColumns = `topic, partition, kafka_offset, job_id, msg_key, msg_value, reason, stage, error_type, attempts,
	workflow_id, origin_topic, origin_partition, origin_offset, published_at, indexed_at, state, acted_at,
	acted_by, replay_partition, replay_offset, source`

// AddDeadLetter indexes one message read from the dead-letter topic. Adding it again is a no-op,
// except that a row the bridge recorded (RecordRefusal) is then marked read.
func (s *Store) AddDeadLetter(ctx context.Context, d DeadLetter) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO dead_letters (topic, partition, kafka_offset, job_id, msg_key, msg_value,
		reason, stage, error_type, attempts, workflow_id, origin_topic, origin_partition, origin_offset, published_at, source)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)
		ON CONFLICT (topic, partition, kafka_offset) DO UPDATE SET read_from_topic = true`,
		d.Topic, d.Partition, d.Offset, d.JobID, d.Key, nonNil(d.Value), d.Reason, d.Stage, d.ErrorType, d.Attempts,
		d.WorkflowID, d.OriginTopic, d.OriginPartition, d.OriginOffset, d.PublishedAt, d.Source)
	if err != nil {
		return fmt.Errorf("index dead letter %s/%d/%d: %w", d.Topic, d.Partition, d.Offset, err)
	}
	return nil
}

// originRef names the job message a bridge refusal is about: its topic, partition and offset.
func originRef(topic string, partition int32, offset int64) string {
	return fmt.Sprintf("%s/%d/%d", topic, partition, offset)
}

// RefusalRecorded reports whether RecordRefusal already recorded the job message at
// topic/partition/offset.
func (s *Store) RefusalRecorded(ctx context.Context, topic string, partition int32, offset int64) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM dead_letters WHERE origin_ref = $1)`,
		originRef(topic, partition, offset)).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up refusal of %s/%d/%d: %w", topic, partition, offset, err)
	}
	return ok, nil
}

// RecordRefusal records a dead letter the bridge just wrote for the job message d.Origin*, which
// must be set. Recording the same job message again, or a message the indexer already read, is a
// no-op.
func (s *Store) RecordRefusal(ctx context.Context, d DeadLetter) error {
	if d.OriginTopic == nil || d.OriginPartition == nil || d.OriginOffset == nil {
		return fmt.Errorf("record refusal %s/%d/%d: origin unknown", d.Topic, d.Partition, d.Offset)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO dead_letters (topic, partition, kafka_offset, job_id, msg_key, msg_value,
		reason, stage, error_type, attempts, workflow_id, origin_topic, origin_partition, origin_offset, published_at,
		origin_ref, read_from_topic, source)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,false,$17) ON CONFLICT DO NOTHING`,
		d.Topic, d.Partition, d.Offset, d.JobID, d.Key, nonNil(d.Value), d.Reason, d.Stage, d.ErrorType, d.Attempts,
		d.WorkflowID, d.OriginTopic, d.OriginPartition, d.OriginOffset, d.PublishedAt,
		originRef(*d.OriginTopic, *d.OriginPartition, *d.OriginOffset), d.Source)
	if err != nil {
		return fmt.Errorf("record refusal %s/%d/%d: %w", d.Topic, d.Partition, d.Offset, err)
	}
	return nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// NextDLQOffsets returns, per partition of topic, the offset after the last message the indexer read.
func (s *Store) NextDLQOffsets(ctx context.Context, topic string) (map[int32]int64, error) {
	// Rows the bridge recorded do not count: the indexer may not have read the messages before them.
	rows, err := s.pool.Query(ctx, `SELECT partition, max(kafka_offset) + 1 FROM dead_letters
		WHERE topic = $1 AND read_from_topic GROUP BY partition`, topic)
	if err != nil {
		return nil, fmt.Errorf("dead-letter offsets: %w", err)
	}
	out := map[int32]int64{}
	var p int32
	var o int64
	_, err = pgx.ForEachRow(rows, []any{&p, &o}, func() error { out[p] = o; return nil })
	return out, err
}

// DLQFilter selects dead letters; zero fields select all. Pages go by (published_at, partition, offset).
type DLQFilter struct {
	State    string
	BeforeAt time.Time
	BeforeP  int32
	BeforeO  int64
	Paged    bool
	Limit    int
}

// DeadLetters lists dead letters newest first.
func (s *Store) DeadLetters(ctx context.Context, f DLQFilter) ([]DeadLetter, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT `+dlqColumns+` FROM dead_letters
		WHERE (@state::text = '' OR state = @state)
		  AND (NOT @paged::bool OR (published_at, partition, kafka_offset) < (@before_at, @before_p, @before_o))
		ORDER BY published_at DESC, partition DESC, kafka_offset DESC LIMIT @lim`,
		pgx.NamedArgs{"state": f.State, "paged": f.Paged, "before_at": f.BeforeAt, "before_p": f.BeforeP,
			"before_o": f.BeforeO, "lim": f.Limit})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[DeadLetter])
}

// DeadLetterAt returns one dead letter, or ErrNotFound.
func (s *Store) DeadLetterAt(ctx context.Context, topic string, partition int32, offset int64) (DeadLetter, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+dlqColumns+` FROM dead_letters WHERE topic=$1 AND partition=$2 AND kafka_offset=$3`,
		topic, partition, offset)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("get dead letter: %w", err)
	}
	d, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[DeadLetter])
	if errors.Is(err, pgx.ErrNoRows) {
		return DeadLetter{}, ErrNotFound
	}
	return d, err
}

// CountDeadLetters returns the number of dead letters in each state.
func (s *Store) CountDeadLetters(ctx context.Context) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT state, count(*) FROM dead_letters GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	out := map[string]int64{}
	var st string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&st, &n}, func() error { out[st] = n; return nil })
	return out, err
}

// Publish sends a replayed job message and returns where it went.
type Publish func(ctx context.Context, d DeadLetter) (partition int32, offset int64, err error)

// ResolveDeadLetter marks an open dead letter replayed (after publish succeeded) or discarded, and
// adds an event to the job's timeline when the job has a row. The row stays locked while publish
// runs, so two concurrent replays publish once: the second finds the letter handled (ErrDLQState).
func (s *Store) ResolveDeadLetter(ctx context.Context, topic string, partition int32, offset int64, action, actor string, publish Publish) (DeadLetter, error) {
	if action != DLQReplayed && action != DLQDiscarded {
		return DeadLetter{}, fmt.Errorf("unknown dead-letter action %q", action)
	}
	var out DeadLetter
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+dlqColumns+` FROM dead_letters WHERE topic=$1 AND partition=$2 AND kafka_offset=$3 FOR UPDATE`,
			topic, partition, offset)
		if err != nil {
			return err
		}
		d, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[DeadLetter])
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if d.State != DLQOpen {
			out = d
			return ErrDLQState
		}
		var rp *int32
		var ro *int64
		if action == DLQReplayed {
			p, o, err := publish(ctx, d)
			if err != nil {
				return fmt.Errorf("replay: %w", err)
			}
			rp, ro = &p, &o
		}
		if err := tx.QueryRow(ctx, `UPDATE dead_letters SET state=$4, acted_at=now(), acted_by=$5, replay_partition=$6, replay_offset=$7
			WHERE topic=$1 AND partition=$2 AND kafka_offset=$3 RETURNING state, acted_at, acted_by, replay_partition, replay_offset`,
			topic, partition, offset, action, actor, rp, ro).Scan(&d.State, &d.ActedAt, &d.ActedBy, &d.ReplayPartition, &d.ReplayOffset); err != nil {
			return err
		}
		if d.JobID != nil {
			detail := fmt.Sprintf("dead letter %s/%d/%d %s by %s", topic, partition, offset, action, actor)
			if ro != nil {
				detail += fmt.Sprintf(": job message republished at partition %d offset %d", *rp, *ro)
			}
			// Only when the job has a row: a malformed message never had one.
			if _, err := tx.Exec(ctx, `INSERT INTO job_events (job_id, run_id, seq, step, outcome, detail, at)
				SELECT $1, $2, 0, 'dead_letter', $3, $4, now() WHERE EXISTS (SELECT 1 FROM jobs WHERE job_id=$1)
				ON CONFLICT DO NOTHING`,
				*d.JobID, fmt.Sprintf("dlq/%s/%d/%d", topic, partition, offset), action, detail); err != nil {
				return err
			}
		}
		out = d
		return nil
	})
	return out, err
}

// Overview is the dashboard's summary.
type Overview struct {
	Counts      map[string]int64 `json:"counts"`
	FilesHour   int64            `json:"files_last_hour"`
	BytesHour   int64            `json:"bytes_last_hour"`
	FilesDay    int64            `json:"files_last_day"`
	BytesDay    int64            `json:"bytes_last_day"`
	FailedDay   int64            `json:"failed_last_day"`
	SuccessRate *float64         `json:"success_rate_last_day"` // nil when nothing finished
	Slowest     []Job            `json:"slowest_recent"`
	Largest     []Job            `json:"largest_recent"`
	DeadLetters map[string]int64 `json:"dead_letters"`
}

// Overview summarises the jobs finished in the last hour and day (as of now) and the recent
// slowest and largest ones.
func (s *Store) Overview(ctx context.Context, now time.Time) (Overview, error) {
	var o Overview
	var err error
	if o.Counts, err = s.CountByStatus(ctx); err != nil {
		return o, err
	}
	if o.DeadLetters, err = s.CountDeadLetters(ctx); err != nil {
		return o, err
	}
	err = s.pool.QueryRow(ctx, `SELECT
		count(*) FILTER (WHERE status='SUCCEEDED' AND finished_at > $1::timestamptz - interval '1 hour'),
		coalesce(sum(size_bytes) FILTER (WHERE status='SUCCEEDED' AND finished_at > $1::timestamptz - interval '1 hour'), 0)::bigint,
		count(*) FILTER (WHERE status='SUCCEEDED'),
		coalesce(sum(size_bytes) FILTER (WHERE status='SUCCEEDED'), 0)::bigint,
		count(*) FILTER (WHERE status IN ('FAILED','DEAD_LETTERED'))
		FROM jobs WHERE finished_at > $1::timestamptz - interval '1 day'`, now).Scan(&o.FilesHour, &o.BytesHour, &o.FilesDay, &o.BytesDay, &o.FailedDay)
	if err != nil {
		return o, fmt.Errorf("overview: %w", err)
	}
	if n := o.FilesDay + o.FailedDay; n > 0 {
		r := float64(o.FilesDay) / float64(n)
		o.SuccessRate = &r
	}
	recent := func(order string) ([]Job, error) {
		rows, err := s.pool.Query(ctx, `SELECT job_id, status, remote_path, size_bytes, md5_expected, md5_actual, s3_bucket,
			s3_key, workflow_id, run_id, host, attempts, bytes_per_sec, error, created_at, started_at, finished_at, updated_at, source
			FROM jobs WHERE status='SUCCEEDED' AND finished_at > $1::timestamptz - interval '1 day' AND started_at IS NOT NULL
			ORDER BY `+order+` LIMIT 5`, now)
		if err != nil {
			return nil, fmt.Errorf("overview: %w", err)
		}
		return pgx.CollectRows(rows, pgx.RowToStructByPos[Job])
	}
	if o.Slowest, err = recent("finished_at - started_at DESC, job_id"); err != nil {
		return o, err
	}
	o.Largest, err = recent("size_bytes DESC NULLS LAST, job_id")
	return o, err
}
