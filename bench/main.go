// Command bench measures kafkasync against the tools people use to fetch large files over SFTP —
// OpenSSH's sftp, lftp's pget and rclone — on the same OpenSSH server, in the same run, alternating
// contenders, and prints medians and ratios. `make bench` runs it and writes bench/RESULTS.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"github.com/kafkasync/kafkasync/internal/faultproxy"
	"github.com/kafkasync/kafkasync/internal/samplefile"
	"github.com/kafkasync/kafkasync/internal/testproc"
)

type options struct {
	size      int64
	reps      int
	rtts      []time.Duration
	scenarios map[int]bool
	only      map[string]bool
	out       string
	dir       string
	k         kafkasyncSettings
	jobs      int
	smallReps int
	warmup    int
	shards    int
	temporal  string
}

func main() {
	if code, ok := testproc.Child(); ok { // a worker process of scenarios 5 and 6
		os.Exit(code)
	}
	var (
		o         options
		size      = flag.String("size", "1GiB", "file size for the download scenarios")
		rtts      = flag.String("rtt", "50ms,100ms", "round-trip times for scenario 2")
		scenarios = flag.String("scenarios", "1,2,3,4,5,6", "which scenarios to run")
		only      = flag.String("only", "", "comma-separated contenders to run (default: all)")
	)
	flag.IntVar(&o.jobs, "jobs", 1000, "scenario 4: how many small jobs")
	flag.IntVar(&o.smallReps, "small-reps", 5, "scenario 4: repetitions of kafkasync's jobs, the engine ceiling and rclone, one after the other; medians")
	flag.IntVar(&o.warmup, "warmup", 1000, "scenario 4: small jobs run first and not counted, so kafkasync is measured warm, as the engine ceiling after it is")
	flag.IntVar(&o.shards, "shards", 0, "pipeline scenarios: the Temporal server's history shards (0: devstack's default)")
	cpuProfile := flag.String("cpuprofile", "", "write the bench process's CPU profile (worker, bridge, publisher) to this file")
	flag.StringVar(&o.temporal, "temporal", "server", "pipeline scenarios: the Temporal server on PostgreSQL (server) or the in-memory dev server (dev)")
	flag.IntVar(&o.reps, "reps", 3, "repetitions of each contender (alternating)")
	flag.StringVar(&o.out, "out", "", "write the results as Markdown to this file (e.g. bench/RESULTS.md)")
	flag.StringVar(&o.dir, "dir", "", "working folder (default: a temporary one, removed at the end)")
	flag.IntVar(&o.k.Connections, "connections", 8, "kafkasync: SFTP connections per download (transfer.connections)")
	flag.Int64Var(&o.k.RangeSize, "range-size", 8<<20, "kafkasync: range size in bytes")
	flag.IntVar(&o.k.Readers, "readers", 2, "kafkasync: ranges read at once per connection")
	flag.DurationVar(&o.k.SyncEvery, "sync", 250*time.Millisecond, "kafkasync: staging fsync and journal interval")
	flag.IntVar(&o.k.ChunkSize, "chunk", 1<<20, "kafkasync: bytes per read call (split into 32 KiB SFTP requests)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), `bench runs kafkasync and its peers on loopback and reports medians and ratios.

Scenarios: 1 one file on loopback; 2 the same through a delay line at each --rtt; 3 one file end to end
(Kafka message to S3 object and audit row) against lftp + aws s3 cp; 4 1,000 small jobs end to end
against rclone copy; 5 the worker's peak memory for a small and a large file; 6 bytes fetched again
after a worker is killed at half of a download.

Needs OpenSSH's sshd, lftp, rclone and the aws CLI (make bench-deps), and bin/ (make tools).

`)
		flag.PrintDefaults()
	}
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	var err error
	if o.size, err = parseSize(*size); err != nil {
		fatal(err)
	}
	for _, r := range strings.Split(*rtts, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(r))
		if err != nil {
			fatal(err)
		}
		o.rtts = append(o.rtts, d)
	}
	o.scenarios = map[int]bool{}
	for _, s := range strings.Split(*scenarios, ",") {
		var n int
		fmt.Sscan(strings.TrimSpace(s), &n)
		o.scenarios[n] = true
	}
	o.only = map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.only[s] = true
		}
	}
	if f := os.Getenv("KAFKASYNC_BENCH_CPUPROFILE"); f != "" { // for tuning: go tool pprof
		out, err := os.Create(f)
		if err != nil {
			fatal(err)
		}
		pprof.StartCPUProfile(out)
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := run(ctx, o, os.Stdout)
	if err != nil {
		fatal(err)
	}
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(rep.markdown()), 0o644); err != nil {
			fatal(err)
		}
		fmt.Println("wrote", o.out)
	}
	for _, l := range rep.machine {
		fmt.Println(l)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// report collects what a run measured.
type report struct {
	started  time.Time
	header   []string
	sections []section
	machine  []string // one line per scenario that has one, printed last for scripts
}

type section struct {
	title string
	notes []string
	table [][]string
}

func (r *report) add(s section, w io.Writer) {
	r.sections = append(r.sections, s)
	fmt.Fprintf(w, "\n== %s\n", s.title)
	widths := make([]int, len(s.table[0]))
	for _, row := range s.table {
		for i, c := range row {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	for _, row := range s.table {
		for i, c := range row {
			fmt.Fprintf(w, "%-*s  ", widths[i], c)
		}
		fmt.Fprintln(w)
	}
	for _, n := range s.notes {
		fmt.Fprintln(w, n)
	}
}

func (r *report) markdown() string {
	var b strings.Builder
	b.WriteString("# Benchmark results\n\nWritten by `make bench` (`go run ./bench`); every figure below comes from the run described here.\n\n")
	for _, h := range r.header {
		b.WriteString("- " + h + "\n")
	}
	for _, s := range r.sections {
		fmt.Fprintf(&b, "\n## %s\n\n", s.title)
		for i, row := range s.table {
			b.WriteString("| " + strings.Join(row, " | ") + " |\n")
			if i == 0 {
				b.WriteString("|" + strings.Repeat(" --- |", len(row)) + "\n")
			}
		}
		if len(s.notes) > 0 {
			b.WriteString("\n")
		}
		for _, n := range s.notes {
			b.WriteString(n + "\n")
		}
	}
	if len(r.machine) > 0 {
		b.WriteString("\n## Machine-readable\n\n```\n" + strings.Join(r.machine, "\n") + "\n```\n")
	}
	return b.String()
}

func run(ctx context.Context, o options, w io.Writer) (*report, error) {
	dir := o.dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "kafkasync-bench-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	}
	r := &report{started: time.Now()}
	cpu := cpuModel()
	r.header = append(r.header, fmt.Sprintf("%s, %d cores (%s), %s/%s, %s", r.started.UTC().Format("2006-01-02 15:04 UTC"),
		runtime.NumCPU(), cpu, runtime.GOOS, runtime.GOARCH, runtime.Version()),
		fmt.Sprintf("%d repetitions per contender, alternating; medians", o.reps),
		"Command: `go run ./bench "+shellQuote(os.Args[1:])+"` (kafkasync's contender is its Download activity, the code a worker runs, called in-process)",
		"SFTP server for every contender: OpenSSH's sshd (a second instance on loopback, its own host key, key authentication, internal-sftp)")
	fmt.Fprintln(w, strings.Join(r.header, "\n"))
	sshd, err := StartSSHD(ctx, filepath.Join(dir, "sshd"))
	if err != nil {
		return nil, err
	}
	defer sshd.Stop()
	r.header = append(r.header, "Versions: "+versions())

	if o.scenarios[1] || o.scenarios[2] {
		src := filepath.Join(dir, "src", "file.bin")
		sum, err := samplefile.Write(src, o.size, 1)
		if err != nil {
			return nil, err
		}
		cs := contenders(sshd, o.k, o.only)
		if o.scenarios[1] {
			s, err := downloads(ctx, o, cs, sshd.Addr, src, sum, dir, 0)
			if err != nil {
				return nil, err
			}
			s.title = fmt.Sprintf("1. One %s file on loopback", human(o.size))
			r.add(s, w)
		}
		if o.scenarios[2] {
			for _, rtt := range o.rtts {
				px, err := faultproxy.New(sshd.Addr)
				if err != nil {
					return nil, err
				}
				px.Delay(rtt / 2)
				if err := sshd.Trust(px.Addr); err != nil {
					return nil, err
				}
				cs2 := cs
				if o.k.Connections < 16 && (len(o.only) == 0 || o.only["kafkasync"]) {
					k16 := o.k
					k16.Connections = 16
					c := contenders(sshd, k16, map[string]bool{"kafkasync": true})[0]
					c.name = "kafkasync ×16"
					cs2 = append([]contender{cs[0], c}, cs[1:]...)
				}
				s, err := downloads(ctx, o, cs2, px.Addr, src, sum, dir, rtt)
				px.Close()
				if err != nil {
					return nil, err
				}
				s.title = fmt.Sprintf("2. One %s file at %s round-trip time", human(o.size), rtt)
				s.notes = append(s.notes, fmt.Sprintf("Every contender goes through the same in-process delay line (each direction held back %s; "+
					"bytes are queued, not throttled). Window limit: 2 MiB per round trip per SSH channel (the SFTP clients' channel window).", rtt/2))
				r.add(s, w)
			}
		}
		os.Remove(src)
	}
	if o.scenarios[3] || o.scenarios[4] || o.scenarios[5] || o.scenarios[6] {
		if err := pipelineScenarios(ctx, o, sshd, dir, r, w); err != nil {
			return r, err
		}
	}
	return r, nil
}

// downloads runs every contender reps times, alternating, and returns the table.
func downloads(ctx context.Context, o options, cs []contender, addr, src, sum, dir string, rtt time.Duration) (section, error) {
	times := map[string][]time.Duration{}
	exact := map[string]string{}
	for rep := 0; rep < o.reps; rep++ {
		for _, c := range cs {
			dest := filepath.Join(dir, "dest", c.name+".part")
			os.RemoveAll(filepath.Dir(dest))
			if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
				return section{}, err
			}
			dropCaches()
			t0 := time.Now()
			if err := c.run(ctx, addr, src, dest, o.size); err != nil {
				return section{}, fmt.Errorf("%s: %w", c.name, err)
			}
			el := time.Since(t0)
			if rep == 0 && !strings.HasPrefix(c.name, "kafkasync") {
				exact[c.name] = lastCommand
			}
			if rep == 0 {
				got, _, err := samplefile.MD5(dest)
				if err != nil || got != sum {
					return section{}, fmt.Errorf("%s: wrote md5 %s (%v), want %s", c.name, got, err, sum)
				}
			}
			times[c.name] = append(times[c.name], el)
			fmt.Printf("  %-10s rep %d: %6.1f MB/s\n", c.name, rep+1, mbps(o.size, el))
		}
	}
	med := map[string]time.Duration{}
	for n, ts := range times {
		med[n] = median(ts)
	}
	head := []string{"contender", "median", "MB/s", "runs (MB/s)"}
	if rtt > 0 {
		head = append(head, "window limit (MB/s)", "share of limit")
	}
	var peers []string
	for _, c := range cs {
		if !strings.HasPrefix(c.name, "kafkasync") {
			peers = append(peers, c.name)
			head = append(head, "kafkasync ÷ "+c.name)
		}
	}
	head = append(head, "how")
	table := [][]string{head}
	for _, c := range cs {
		var runs []string
		for _, t := range times[c.name] {
			runs = append(runs, fmt.Sprintf("%.0f", mbps(o.size, t)))
		}
		row := []string{c.name, med[c.name].Round(time.Millisecond).String(), fmt.Sprintf("%.1f", mbps(o.size, med[c.name])), strings.Join(runs, ", ")}
		if rtt > 0 {
			limit := float64(c.channels) * float64(2<<20) / rtt.Seconds() / 1e6
			row = append(row, fmt.Sprintf("%.0f", limit), fmt.Sprintf("%.0f %%", 100*mbps(o.size, med[c.name])/limit))
		}
		for _, p := range peers {
			if strings.HasPrefix(c.name, "kafkasync") {
				row = append(row, fmt.Sprintf("**%.2f×**", med[p].Seconds()/med[c.name].Seconds()))
			} else {
				row = append(row, "")
			}
		}
		row = append(row, c.cmdline)
		table = append(table, row)
	}
	var notes []string
	for _, c := range cs {
		if cmd, ok := exact[c.name]; ok {
			notes = append(notes, fmt.Sprintf("- %s: `%s`", c.name, cmd))
		}
	}
	if len(notes) > 0 {
		notes = append([]string{"Exact commands (first repetition):", ""}, notes...)
		notes = append(notes, "")
	}
	return section{table: table, notes: notes}, nil
}

func median[T ~int64 | ~float64](ts []T) T {
	s := append([]T(nil), ts...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() / 1e6 }

func human(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		s string
		m int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if strings.HasSuffix(s, u.s) {
			s, mult = strings.TrimSuffix(s, u.s), u.m
			break
		}
	}
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil {
		return 0, fmt.Errorf("size %q", s)
	}
	return n * mult, nil
}

// dropCaches asks the kernel to drop clean page cache, so no contender reads what the previous one
// left warm (best effort: needs root).
func dropCaches() {
	_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("1\n"), 0o200)
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if _, v, ok := strings.Cut(l, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown CPU"
}

func versions() string {
	var out []string
	for _, c := range [][]string{{"ssh", "-V"}, {"lftp", "--version"}, {"rclone", "version"}} {
		b, _ := execOutput(c[0], c[1:]...)
		line := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
		if line != "" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "; ")
}
