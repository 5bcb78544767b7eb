package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/kafkasync/kafkasync/activities"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/sftpdial"
)

// A contender downloads remote (an absolute path on the SFTP server at addr) into dest.
type contender struct {
	name string
	// channels is how many SSH channels it opens at once: the window limit grows with them.
	channels int
	// cmdline shows how it is run, for RESULTS.md.
	cmdline string
	run     func(ctx context.Context, addr, remote, dest string, size int64) error
}

// Settings of kafkasync's download for the benchmark (the same as transfer.* in the config).
type kafkasyncSettings struct {
	Connections int
	RangeSize   int64
	ChunkSize   int
	Readers     int           // ranges read at once per connection
	SyncEvery   time.Duration // staging fsync and journal interval
}

func contenders(s *SSHD, k kafkasyncSettings, only map[string]bool) []contender {
	all := []contender{
		{name: "kafkasync", channels: k.Connections,
			cmdline: fmt.Sprintf("Download activity: %d SFTP connections × %d readers, %d MiB ranges, %d KiB reads of 32 KiB packets, journal every 50ms, fsync every %s",
				k.Connections, max(k.Readers, 1), k.RangeSize>>20, k.ChunkSize>>10, k.SyncEvery),
			run: func(ctx context.Context, addr, remote, dest string, size int64) error {
				return kafkasyncDownload(ctx, s, k, addr, remote, dest, size)
			}},
		{name: "sftp", channels: 1, cmdline: "sftp -b - (get), OpenSSH's default cipher",
			run: func(ctx context.Context, addr, remote, dest string, size int64) error {
				host, port, _ := net.SplitHostPort(addr)
				args := append([]string{"-q", "-P", port}, s.SSHOptions()...)
				args = append(args, "-b", "-", s.User+"@"+host)
				cmd := exec.CommandContext(ctx, "sftp", args...)
				cmd.Stdin = strings.NewReader(fmt.Sprintf("get %s %s\n", remote, dest))
				return runCmd(cmd)
			}},
		{name: "lftp", channels: 8, cmdline: "lftp -c 'open sftp://…; pget -n 8 …'",
			run: func(ctx context.Context, addr, remote, dest string, size int64) error {
				host, port, _ := net.SplitHostPort(addr)
				prog := "ssh -a -x " + strings.Join(s.SSHOptions(), " ")
				script := fmt.Sprintf(`set sftp:connect-program "%s"; set net:max-retries 1; set cmd:fail-exit yes; open -u %s, -p %s sftp://%s; pget -n 8 %s -o %s`,
					prog, s.User, port, host, remote, dest)
				return runCmd(exec.CommandContext(ctx, "lftp", "-c", script))
			}},
		{name: "rclone", channels: 8, cmdline: "rclone copyto --multi-thread-streams 8 :sftp:… (hash check off)",
			run: func(ctx context.Context, addr, remote, dest string, size int64) error {
				host, port, _ := net.SplitHostPort(addr)
				conf := filepath.Join(filepath.Dir(dest), "rclone.conf")
				_ = os.WriteFile(conf, nil, 0o600)
				return runCmd(exec.CommandContext(ctx, "rclone", "--config", conf, "copyto", ":sftp:"+remote, dest,
					"--sftp-host", host, "--sftp-port", port, "--sftp-user", s.User, "--sftp-key-file", s.KeyFile,
					"--sftp-known-hosts-file", s.KnownHosts, "--sftp-disable-hashcheck", "--multi-thread-streams", "8",
					"--multi-thread-cutoff", "1M", "--retries", "1", "--low-level-retries", "1"))
			}},
	}
	var out []contender
	for _, c := range all {
		if len(only) == 0 || only[c.name] {
			out = append(out, c)
		}
	}
	return out
}

// lastCommand is the command line runCmd ran last, for RESULTS.md.
var lastCommand string

func shellQuote(args []string) string {
	var out []string
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " '\"$;|&*?<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}

func runCmd(cmd *exec.Cmd) error {
	lastCommand = shellQuote(cmd.Args)
	if cmd.Stdin != nil {
		if sr, ok := cmd.Stdin.(*strings.Reader); ok {
			b := make([]byte, sr.Len())
			sr.Read(b)
			cmd.Stdin = strings.NewReader(string(b))
			lastCommand = "echo " + shellQuote([]string{strings.TrimSpace(string(b))}) + " | " + lastCommand
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", filepath.Base(cmd.Path), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// kafkasyncDownload runs the Download activity (the code the worker runs) in the SDK's activity
// test environment, against addr, into dest.
func kafkasyncDownload(ctx context.Context, s *SSHD, k kafkasyncSettings, addr, remote, dest string, size int64) error {
	d, err := sftpdial.New(config.Source{Addr: addr, User: s.User, KeyFile: s.KeyFile, KnownHosts: s.KnownHosts,
		DialTimeout: config.Duration(10 * time.Second)})
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(filepath.Dir(dest))
	if err != nil {
		return err
	}
	defer root.Close()
	quiet := slog.New(slog.DiscardHandler)
	tr := &activities.Transfer{Sources: map[string]*activities.Source{"default": {Name: "default", SFTP: d}}, Staging: root, Connections: k.Connections, ChunkSize: k.ChunkSize,
		Heartbeat: time.Second, HostID: "bench", Logger: quiet, ReadersPerConnection: k.Readers, SyncEvery: k.SyncEvery}
	var ts testsuite.WorkflowTestSuite
	ts.SetLogger(sdklog.NewStructuredLogger(quiet))
	env := ts.NewTestActivityEnvironment()
	env.SetTestTimeout(30 * time.Minute)
	env.RegisterActivity(tr)
	id := strings.TrimSuffix(filepath.Base(dest), ".part")
	v, err := env.ExecuteActivity(tr.Download, activities.DownloadInput{JobID: id, RemotePath: remote, Size: size,
		RangeSize: k.RangeSize, Connections: k.Connections})
	if err != nil {
		return err
	}
	var res activities.DownloadResult
	if err := v.Get(&res); err != nil {
		return err
	}
	if res.Fetched != size {
		return fmt.Errorf("fetched %d of %d bytes", res.Fetched, size)
	}
	return nil
}

func execOutput(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
