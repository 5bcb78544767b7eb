-- The event rows of one flush; RETURNING names those not written before.
INSERT INTO job_events (job_id, run_id, seq, step, outcome, detail, error, at)
SELECT $1::text, $2::text, e.seq, e.step, e.outcome, e.detail, e.error, e.at
FROM unnest($3::integer[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[])
     AS e (seq, step, outcome, detail, error, at)
ON CONFLICT (job_id, run_id, seq, activity_id, attempt) DO NOTHING
RETURNING seq
