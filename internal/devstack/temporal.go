package devstack

import (
	"github.com/kafkasync/kafkasync/internal/searchattr"

	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"syscall"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
)

// Temporal is a Temporal server run as a child process: the Temporal server on PostgreSQL
// (StartTemporalServer) or the dev server (StartTemporal).
type Temporal struct {
	Kind    string // TemporalServer or TemporalDev
	Version string // the server's version (TemporalServer)
	Address string // host:port of the frontend
	UIURL   string // empty when headless
	proc    *proc
	ui      *proc // the Web UI server (the dev server serves its own)
}

// TemporalOptions configures StartTemporal.
type TemporalOptions struct {
	Bin      string // path to the temporal CLI
	DBFile   string // SQLite file; empty keeps everything in memory
	Port     int    // frontend port, 0: free
	UIPort   int    // Web UI port, 0: free
	Headless bool   // no Web UI
	Log      io.Writer
	// NoSearchAttributes leaves kafkasync's search attributes unregistered, so every start the
	// bridge asks for is refused as invalid.
	NoSearchAttributes bool
}

// StartTemporal starts the dev server and waits until its frontend answers. The dev server picks
// some of its internal ports itself, and a port free a moment ago can be taken before it binds it:
// when the server exits before it answers, it is started again on fresh ports (ports the caller
// chose are kept).
func StartTemporal(ctx context.Context, o TemporalOptions) (*Temporal, error) {
	return startAgain(ctx, o.Log, "temporal", func() (*Temporal, error) { return startTemporalOnce(ctx, o) })
}

func startTemporalOnce(ctx context.Context, o TemporalOptions) (*Temporal, error) {
	var err error
	if o.Port, err = portOrFree(o.Port); err != nil {
		return nil, err
	}
	httpPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	metricsPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{"server", "start-dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(o.Port),
		"--http-port", strconv.Itoa(httpPort), "--metrics-port", strconv.Itoa(metricsPort), "--log-level", "warn"}
	if !o.NoSearchAttributes {
		args = append(args, searchattr.DevServerFlags()...)
	}
	t := &Temporal{Address: fmt.Sprintf("127.0.0.1:%d", o.Port), Kind: TemporalDev}
	if o.DBFile != "" {
		args = append(args, "--db-filename", o.DBFile)
	}
	if o.Headless {
		args = append(args, "--headless")
	} else {
		if o.UIPort, err = portOrFree(o.UIPort); err != nil {
			return nil, err
		}
		args = append(args, "--ui-port", strconv.Itoa(o.UIPort))
		t.UIURL = fmt.Sprintf("http://127.0.0.1:%d", o.UIPort)
	}
	if t.proc, err = startProc("temporal", o.Log, nil, o.Bin, args...); err != nil {
		return nil, err
	}
	quiet := sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	err = waitFor(ctx, t.proc, 60*time.Second, func(ctx context.Context) error {
		c, err := client.DialContext(ctx, client.Options{HostPort: t.Address, Logger: quiet})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
		if err != nil {
			return err
		}
		// The default namespace is registered shortly after the frontend answers.
		_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
		return err
	})
	if err != nil {
		t.Stop()
		return nil, err
	}
	return t, nil
}

// Stop ends the server (and its Web UI server).
func (t *Temporal) Stop() {
	if t != nil {
		t.ui.stop(syscall.SIGTERM, 5*time.Second)
		t.proc.stop(syscall.SIGTERM, 15*time.Second)
	}
}

// Pid is the server's process id.
func (t *Temporal) Pid() int { return t.proc.cmd.Process.Pid }
