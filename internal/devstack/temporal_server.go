package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kafkasync/kafkasync/internal/searchattr"
)

// Kinds of Temporal the stack runs.
const (
	// TemporalServer is the Temporal server (go.temporal.io/server) on the stack's PostgreSQL, with
	// SQL visibility and the Temporal Web UI server: what users run.
	TemporalServer = "server"
	// TemporalDev is the Temporal CLI's dev server (SQLite, one history shard).
	TemporalDev = "dev"
)

// TemporalServerOptions configures StartTemporalServer.
type TemporalServerOptions struct {
	// BinDir holds temporal-server, temporal-sql-tool, temporal-ui-server and temporal-schema/
	// ("" searches, see FindBin).
	BinDir string
	// Dir keeps the server's configuration files.
	Dir string
	// PGPort is the stack's PostgreSQL; the server keeps its state in databases temporal and
	// temporal_visibility there, as user postgres.
	PGPort   int
	Port     int  // frontend port, 0: free
	UIPort   int  // Web UI port, 0: free
	Headless bool // no Web UI
	// Shards is the number of history shards (0: 4). It is fixed when the databases are made.
	Shards int
	Log    io.Writer
	// NoSearchAttributes leaves kafkasync's search attributes unregistered.
	NoSearchAttributes bool
}

// StartTemporalServer sets up the server's databases (once), starts the server and, unless
// headless, the Web UI server, and registers namespace default and kafkasync's search attributes.
func StartTemporalServer(ctx context.Context, o TemporalServerOptions) (*Temporal, error) {
	bins := map[string]string{}
	for _, name := range []string{"temporal-server", "temporal-sql-tool", "temporal-ui-server"} {
		if name == "temporal-ui-server" && o.Headless {
			continue
		}
		p, err := FindBin(o.BinDir, name)
		if err != nil {
			return nil, err
		}
		bins[name] = p
	}
	schema := filepath.Join(filepath.Dir(bins["temporal-server"]), "temporal-schema")
	if o.Shards <= 0 {
		o.Shards = 4
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := setupTemporalSchema(ctx, bins["temporal-sql-tool"], schema, o.PGPort, o.Log); err != nil {
		return nil, err
	}
	return startAgain(ctx, o.Log, "temporal server", func() (*Temporal, error) { return startTemporalServerOnce(ctx, o, bins) })
}

// setupTemporalSchema creates the two databases and their schema with the server's own SQL tool and
// schema files, and brings an existing schema up to the tool's version.
func setupTemporalSchema(ctx context.Context, tool, schema string, pgPort int, log io.Writer) error {
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pgPort))
	if err != nil {
		return fmt.Errorf("temporal schema: %w", err)
	}
	defer conn.Close(ctx)
	for db, dir := range map[string]string{"temporal": "temporal", "temporal_visibility": "visibility"} {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, db).Scan(&exists); err != nil {
			return fmt.Errorf("temporal schema: %w", err)
		}
		run := func(args ...string) error {
			base := []string{"--ep", "127.0.0.1", "-p", strconv.Itoa(pgPort), "-u", "postgres", "--pl", "postgres12", "--db", db}
			cmd := exec.CommandContext(ctx, tool, append(base, args...)...)
			out, err := cmd.CombinedOutput()
			if log != nil {
				log.Write(out)
			}
			if err != nil {
				return fmt.Errorf("temporal-sql-tool %s on %s: %w: %s", args[0], db, err, strings.TrimSpace(lastLine(out)))
			}
			return nil
		}
		if !exists {
			if err := run("create-database"); err != nil {
				return err
			}
			if err := run("setup-schema", "-v", "0.0"); err != nil {
				return err
			}
		}
		if err := run("update-schema", "-d", filepath.Join(schema, dir, "versioned")); err != nil {
			return err
		}
	}
	return nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// temporalPorts are the ports one server process listens on.
type temporalPorts struct {
	Frontend, FrontendHTTP, FrontendMembership    int
	History, HistoryMembership                    int
	Matching, MatchingMembership                  int
	Worker, WorkerMembership, Metrics, PG, Shards int
	DynamicConfig                                 string
}

func startTemporalServerOnce(ctx context.Context, o TemporalServerOptions, bins map[string]string) (*Temporal, error) {
	p := temporalPorts{PG: o.PGPort, Shards: o.Shards, DynamicConfig: filepath.Join(o.Dir, "dynamicconfig.yaml")}
	var err error
	if p.Frontend, err = portOrFree(o.Port); err != nil {
		return nil, err
	}
	for _, port := range []*int{&p.FrontendHTTP, &p.History, &p.Matching, &p.Worker, &p.Metrics} {
		if *port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	for _, port := range []*int{&p.FrontendMembership, &p.HistoryMembership, &p.MatchingMembership, &p.WorkerMembership} {
		if *port, err = freeMembershipPort(); err != nil {
			return nil, err
		}
	}
	conf := filepath.Join(o.Dir, "temporal.yaml")
	if err := writeTemplate(conf, temporalConfig, p); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.DynamicConfig, []byte(temporalDynamicConfig), 0o644); err != nil {
		return nil, err
	}
	t := &Temporal{Address: fmt.Sprintf("127.0.0.1:%d", p.Frontend), Kind: TemporalServer}
	if out, err := exec.CommandContext(ctx, bins["temporal-server"], "--version").Output(); err == nil {
		t.Version = strings.TrimPrefix(strings.TrimSpace(string(out)), "temporal version ")
	}
	if t.proc, err = startProc("temporal-server", o.Log, nil, bins["temporal-server"], "--config-file", conf, "--allow-no-auth", "start"); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, t.proc, 90*time.Second, func(ctx context.Context) error { return setupNamespace(ctx, t.Address, o.NoSearchAttributes) }); err != nil {
		t.Stop()
		return nil, err
	}
	if !o.Headless {
		if err := t.startUI(ctx, o, bins["temporal-ui-server"]); err != nil {
			t.Stop()
			return nil, err
		}
	}
	return t, nil
}

// setupNamespace registers namespace default and the search attributes, once the frontend answers,
// and returns nil only when both are visible to clients.
func setupNamespace(ctx context.Context, addr string, noSearchAttributes bool) error {
	c, err := client.DialContext(ctx, client.Options{HostPort: addr, Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		return err
	}
	defer c.Close()
	ws := c.WorkflowService()
	if _, err := ws.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"}); err != nil {
		var nf *serviceerror.NamespaceNotFound
		if !errors.As(err, &nf) {
			return err
		}
		_, err := ws.RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{Namespace: "default",
			WorkflowExecutionRetentionPeriod: durationpb.New(72 * time.Hour)})
		var exists *serviceerror.NamespaceAlreadyExists
		if err != nil && !errors.As(err, &exists) {
			return err
		}
		return errors.New("namespace default registered, not yet visible")
	}
	if noSearchAttributes {
		return nil
	}
	if err := searchattr.Register(ctx, c, "default"); err != nil {
		return err
	}
	// The frontend maps the names through its namespace cache, refreshed every few seconds: a
	// query that names them all succeeds only once the mapping is there.
	names := make([]string, 0, len(searchattr.All))
	for name := range searchattr.All {
		names = append(names, fmt.Sprintf("%s IS NULL", name))
	}
	_, err = ws.CountWorkflowExecutions(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: "default",
		Query: strings.Join(names, " AND ")})
	return err
}

// startUI starts the Temporal Web UI server pointed at the frontend.
func (t *Temporal) startUI(ctx context.Context, o TemporalServerOptions, bin string) error {
	port, err := portOrFree(o.UIPort)
	if err != nil {
		return err
	}
	confDir := filepath.Join(o.Dir, "ui")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return err
	}
	if err := writeTemplate(filepath.Join(confDir, "development.yaml"), uiConfig, map[string]any{"Frontend": t.Address, "Port": port}); err != nil {
		return err
	}
	if t.ui, err = startProc("temporal-ui-server", o.Log, nil, bin, "--root", o.Dir, "--config", "ui", "--env", "development", "start"); err != nil {
		return err
	}
	t.UIURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	return waitFor(ctx, t.ui, 30*time.Second, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.UIURL+"/", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("web ui: %s", resp.Status)
		}
		return nil
	})
}

// freeMembershipPort is a free loopback port below 32768: the server stores membership ports in a
// smallint column, and the kernel's free ports are above it.
func freeMembershipPort() (int, error) {
	for range 100 {
		port := 20000 + rand.IntN(12000)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			l.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port between 20000 and 32000")
}

func writeTemplate(file, text string, data any) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := template.Must(template.New(filepath.Base(file)).Parse(text)).Execute(f, data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// The server's configuration: one process runs every service on loopback; PostgreSQL holds the
// history and the visibility records. The pgx driver prepares each statement once per connection,
// where lib/pq (plugin postgres12) has PostgreSQL parse and plan every query again: with it the
// engine spent about twice the PostgreSQL CPU per workflow.
const temporalConfig = `log:
  stdout: true
  level: warn
persistence:
  defaultStore: default
  visibilityStore: visibility
  numHistoryShards: {{.Shards}}
  datastores:
    default:
      sql:
        pluginName: postgres12_pgx
        databaseName: temporal
        connectAddr: "127.0.0.1:{{.PG}}"
        connectProtocol: tcp
        user: postgres
        maxConns: 20
        maxIdleConns: 20
        maxConnLifetime: 1h
    visibility:
      sql:
        pluginName: postgres12_pgx
        databaseName: temporal_visibility
        connectAddr: "127.0.0.1:{{.PG}}"
        connectProtocol: tcp
        user: postgres
        maxConns: 10
        maxIdleConns: 10
        maxConnLifetime: 1h
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: 127.0.0.1
  metrics:
    prometheus:
      framework: tally
      timerType: histogram
      listenAddress: "127.0.0.1:{{.Metrics}}"
services:
  frontend:
    rpc: {grpcPort: {{.Frontend}}, membershipPort: {{.FrontendMembership}}, httpPort: {{.FrontendHTTP}}, bindOnLocalHost: true}
  history:
    rpc: {grpcPort: {{.History}}, membershipPort: {{.HistoryMembership}}, bindOnLocalHost: true}
  matching:
    rpc: {grpcPort: {{.Matching}}, membershipPort: {{.MatchingMembership}}, bindOnLocalHost: true}
  worker:
    rpc: {grpcPort: {{.Worker}}, membershipPort: {{.WorkerMembership}}, bindOnLocalHost: true}
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: "127.0.0.1:{{.Frontend}}"
dcRedirectionPolicy:
  policy: noop
dynamicConfigClient:
  filepath: "{{.DynamicConfig}}"
  pollInterval: 10s
`

// temporalDynamicConfig tunes the server for one host: one task queue partition (a few workers
// poll it; partitions would forward polls between themselves), and the frontend's own worker
// services kept, as the defaults are. The visibility queues of all shards together are read once
// a second, not up to twenty times a second each: a workflow that has closed by the time its start
// is read gets one visibility write, its close, instead of two (the visibility table carries 73
// indexes), and under load a small job lasts most of a second. The list of workflows lags by up
// to a second per shard. A read takes up to 1,000 tasks (100 by default), so the queues keep up
// with 1,000 tasks a second: about 500 jobs a second.
const temporalDynamicConfig = `matching.numTaskqueueReadPartitions:
  - value: 1
matching.numTaskqueueWritePartitions:
  - value: 1
history.visibilityProcessorMaxPollRPS:
  - value: 1
history.visibilityTaskBatchSize:
  - value: 1000
history.visibilityProcessorMaxPollHostRPS:
  - value: 1
`

const uiConfig = `temporalGrpcAddress: {{.Frontend}}
host: 127.0.0.1
port: {{.Port}}
enableUi: true
defaultNamespace: default
cors:
  cookieInsecure: true
`
