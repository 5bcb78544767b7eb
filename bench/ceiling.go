package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"golang.org/x/sync/errgroup"

	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/starter"
	"github.com/kafkasync/kafkasync/workers"
)

// ceiling measures what the Temporal server allows: workflows that do no work but run as many
// local activities as a small kafkasync job, started as the bridge starts jobs (same options,
// search attributes, eager start, as many starts at once), on a worker with the worker's options,
// on the same server and client. A job's end is its last local activity, as kafkasync's is the
// audit row that turns it SUCCEEDED.
type ceiling struct {
	mu   sync.Mutex
	done map[string]time.Time
}

const ceilingQueue = "bench-ceiling"

func (c *ceiling) workflow(ctx workflow.Context, id string, steps int) error {
	ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 30 * time.Second})
	for i := range steps {
		if err := workflow.ExecuteLocalActivity(ctx, c.step, id, i == steps-1).Get(ctx, nil); err != nil {
			return err
		}
	}
	return nil
}

func (c *ceiling) step(_ context.Context, id string, last bool) error {
	if last {
		c.mu.Lock()
		c.done[id] = time.Now()
		c.mu.Unlock()
	}
	return nil
}

// runCeiling starts n such workflows, inFlight at a time, their ids starting with prefix, and
// returns their rate per second to the last one's last local activity, and the CPU they took
// until the engine lists every one closed, as smallJobs does. Its worker runs until then, so none
// is left waiting for a worker.
func (s *stack) runCeiling(ctx context.Context, meter cpuMeter, prefix string, n, steps, inFlight int) (float64, cpuPerJob, error) {
	before := meter.sample()
	c := &ceiling{done: map[string]time.Time{}}
	w := worker.New(s.c, ceilingQueue, workers.Options(5*time.Second))
	w.RegisterWorkflowWithOptions(c.workflow, workflow.RegisterOptions{Name: "BenchCeiling"})
	if err := w.Start(); err != nil {
		return 0, nil, err
	}
	defer w.Stop()
	ids := make(chan int)
	g, gctx := errgroup.WithContext(ctx)
	t0 := time.Now()
	for range inFlight {
		g.Go(func() error {
			for i := range ids {
				j := job.Job{ID: fmt.Sprintf("%s-%05d", prefix, i), RemotePath: fmt.Sprintf("/%s/f%05d.bin", prefix, i), Size: 64 << 10}
				msg := &sarama.ConsumerMessage{Topic: s.cfg.Kafka.JobsTopic, Offset: int64(i)}
				opts := starter.StartOptions(ceilingQueue, starter.Target{Host: "127.0.0.1"}, j, msg)
				if _, err := s.c.ExecuteWorkflow(gctx, opts, "BenchCeiling", j.ID, steps); err != nil {
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(ids)
		for i := range n {
			select {
			case ids <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return 0, nil, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		c.mu.Lock()
		got, last := len(c.done), t0
		for _, at := range c.done {
			if at.After(last) {
				last = at
			}
		}
		c.mu.Unlock()
		if got == n {
			if err := s.waitListed(ctx, prefix+"-", n); err != nil {
				return 0, nil, err
			}
			return float64(n) / last.Sub(t0).Seconds(), meter.perJob(before, meter.sample(), n), nil
		}
		if time.Now().After(deadline) {
			return 0, nil, fmt.Errorf("ceiling: %d of %d workflows done after 10 minutes", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// localActivities counts the local activities one workflow ran (its MarkerRecorded events).
func (s *stack) localActivities(ctx context.Context, workflowID string) (int, error) {
	it := s.c.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	n := 0
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return 0, err
		}
		if ev.GetEventType() == enumspb.EVENT_TYPE_MARKER_RECORDED {
			n++
		}
	}
	return n, nil
}
