package audit_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kafkasync/kafkasync/internal/audit"
)

// The archive's lookup of a page of keys reads them through the jobs_object index, also in the
// generic plan a prepared statement ends up with: read otherwise, it compared every row of a large
// table with every key of the page.
func TestArchivedJobsUsesTheObjectIndex(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	c, err := s.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	sql := strings.NewReplacer("@bucket", "$1", "@keys", "$2").Replace(audit.ArchivedJobsSQL)
	for _, stmt := range []string{
		`INSERT INTO jobs (job_id, status, remote_path, s3_bucket, s3_key, workflow_id, run_id, created_at, updated_at, source)
		 SELECT 'p' || g, 'SUCCEEDED', '/in/f' || g, 'bucket', 'in/f' || g, 'file-p' || g, 'r', now(), now(), ''
		 FROM generate_series(1, 20000) g`,
		`ANALYZE jobs`,
		`SET plan_cache_mode = force_generic_plan`,
		`PREPARE archived(text, text[]) AS ` + sql,
	} {
		if _, err := c.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	rows, err := c.Query(ctx, `EXPLAIN EXECUTE archived('bucket', ARRAY['in/f1', 'in/f2', 'in/f3'])`)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if rows.Err() != nil || !strings.Contains(strings.Join(plan, "\n"), "jobs_object") {
		t.Fatalf("the archive's key lookup does not use jobs_object (%v):\n%s", rows.Err(), strings.Join(plan, "\n"))
	}
}
