package metrics

import (
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
)

var (
	temporalOnce    sync.Once
	temporalHandler client.MetricsHandler
	temporalCloser  io.Closer
)

// Temporal returns the Temporal SDK's metrics handler, reporting into Registry with Prometheus
// names (temporal_request_total, temporal_activity_execution_latency_seconds, ...). Every client of
// the process shares it.
func Temporal(log *slog.Logger) client.MetricsHandler {
	temporalOnce.Do(func() {
		r := tallyprom.NewReporter(tallyprom.Options{
			Registerer:       Registry,
			DefaultTimerType: tallyprom.HistogramTimerType,
			OnRegisterError: func(err error) {
				log.Debug("temporal metric not registered", "err", err)
			},
		})
		scope, closer := tally.NewRootScope(tally.ScopeOptions{
			CachedReporter:         r,
			Separator:              tallyprom.DefaultSeparator,
			SanitizeOptions:        &sdktally.PrometheusSanitizeOptions,
			OmitCardinalityMetrics: true,
		}, time.Second)
		temporalHandler, temporalCloser = sdktally.NewMetricsHandler(sdktally.NewPrometheusNamingScope(scope)), closer
	})
	return temporalHandler
}
