// Package startreport tells a caller of client.ExecuteWorkflow whether the start made a new run.
// With WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING, a start for a workflow that is already running
// succeeds without starting anything; the server says so in StartWorkflowExecutionResponse.Started,
// which the SDK does not pass on. A gRPC interceptor on the client's connection reads it into a
// value the caller put in the context.
package startreport

import (
	"context"
	"sync"

	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
)

type key struct{}

type report struct {
	mu      sync.Mutex
	seen    bool
	started bool
}

// Watch returns a context for one ExecuteWorkflow call and a function that reports, after the
// call, whether it started a new run; known is false when the client has no Interceptor.
func Watch(ctx context.Context) (context.Context, func() (started, known bool)) {
	r := &report{}
	return context.WithValue(ctx, key{}, r), func() (bool, bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.started, r.seen
	}
}

// Interceptor records the Started flag of every StartWorkflowExecution answer whose context came
// from Watch. Add it to client.Options.ConnectionOptions.DialOptions.
func Interceptor() grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any,
		cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if resp, ok := reply.(*workflowservice.StartWorkflowExecutionResponse); ok && err == nil {
			if r, ok := ctx.Value(key{}).(*report); ok {
				r.mu.Lock()
				r.seen, r.started = true, resp.GetStarted()
				r.mu.Unlock()
			}
		}
		return err
	})
}
