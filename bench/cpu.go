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

// perJob formats the CPU seconds per job each process used between two samples.
func (m cpuMeter) perJob(before, after map[string]time.Duration, jobs int) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.4f", n, (after[n]-before[n]).Seconds()/float64(jobs)))
	}
	return strings.Join(parts, ", ")
}
