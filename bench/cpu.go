package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on Linux).
const clockTicks = 100

// procTimes reads a process's parent and its CPU time: its own user and system time plus, with
// reaped set, that of the children it has waited for (so the connections a server forked and
// reaped still count).
func procTimes(pid int, reaped bool) (ppid int, cpu int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces; the fields after its closing parenthesis do not.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, _ = strconv.Atoi(f[1])
	fields := []int{11, 12} // utime, stime
	if reaped {
		fields = append(fields, 13, 14) // cutime, cstime
	}
	for _, i := range fields {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		cpu += v
	}
	return ppid, cpu, nil
}

// treeCPU is the CPU time of root and every live process below it.
func treeCPU(root int) time.Duration {
	parent, cpu := map[int]int{}, map[int]int64{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if pp, c, err := procTimes(pid, true); err == nil {
			parent[pid], cpu[pid] = pp, c
		}
	}
	var ticks int64
	for pid, c := range cpu {
		for p := pid; p > 1; p = parent[p] {
			if p == root {
				ticks += c
				break
			}
		}
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// ownCPU is the CPU time of pid alone: the bench process is the parent of every server it started,
// whose time is counted under their own names.
func ownCPU(pid int) time.Duration {
	_, ticks, _ := procTimes(pid, false)
	return time.Duration(ticks) * time.Second / clockTicks
}

// cpuMeter samples the CPU time of named processes.
type cpuMeter map[string]func() time.Duration

// serverMeter measures each server's process tree.
func serverMeter(pids map[string]int) cpuMeter {
	m := cpuMeter{}
	for name, pid := range pids {
		m[name] = func() time.Duration { return treeCPU(pid) }
	}
	return m
}

func (m cpuMeter) sample() map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, read := range m {
		out[name] = read()
	}
	return out
}

// perJob is the CPU seconds per job each process used between two samples.
func (m cpuMeter) perJob(before, after map[string]time.Duration, jobs int) cpuPerJob {
	out := cpuPerJob{}
	for n := range m {
		out[n] = (after[n] - before[n]).Seconds() / float64(jobs)
	}
	return out
}

// cpuPerJob is CPU seconds per job by process.
type cpuPerJob map[string]float64

func (c cpuPerJob) total() float64 {
	t := 0.0
	for _, v := range c {
		t += v
	}
	return t
}

// String lists the processes by name.
func (c cpuPerJob) String() string {
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.4f", n, c[n]))
	}
	return strings.Join(parts, ", ")
}

// over says where c spends more than base, largest first: which process stands in the way.
func (c cpuPerJob) over(base cpuPerJob) string {
	type d struct {
		name string
		v    float64
	}
	var ds []d
	for n, v := range c {
		ds = append(ds, d{n, v - base[n]})
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].v > ds[j].v || ds[i].v == ds[j].v && ds[i].name < ds[j].name })
	parts := make([]string, 0, len(ds))
	for _, x := range ds {
		parts = append(parts, fmt.Sprintf("%s %+.4f", x.name, x.v))
	}
	return fmt.Sprintf("%s; in all %.4f against %.4f", strings.Join(parts, ", "), c.total(), base.total())
}
