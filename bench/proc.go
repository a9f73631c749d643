package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procSample is what /proc says of a process at one moment.
type procSample struct {
	RSS  int64         // bytes resident now (VmRSS)
	Peak int64         // the most ever resident (VmHWM)
	CPU  time.Duration // user + system time so far
}

// readProc reads /proc/<pid>/status and /proc/<pid>/stat (Linux only).
func readProc(pid int) (procSample, error) {
	var s procSample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	for line := range strings.Lines(string(status)) {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch name {
		case "VmRSS":
			s.RSS, err = kilobytes(value)
		case "VmHWM":
			s.Peak, err = kilobytes(value)
		}
		if err != nil {
			return s, fmt.Errorf("pid %d: %s: %w", pid, name, err)
		}
	}
	s.CPU, err = procCPU(pid)
	return s, err
}

// kilobytes parses a /proc/<pid>/status size such as "  12345 kB".
func kilobytes(v string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
	return n * 1024, err
}

// cpuTime is utime + stime (fields 14 and 15) of /proc/<pid>/stat. The
// command name, field 2, may hold spaces and parentheses, so fields are
// counted after its closing parenthesis.
func cpuTime(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc stat %q", stat)
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc stat %q", stat)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc stat %q", stat)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// openFileLimit is the soft "Max open files" of a process, from
// /proc/<pid>/limits; 0 if unknown.
func openFileLimit(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// procCPU is a process's user + system time so far.
func procCPU(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of pid %d: %w", pid, err)
	}
	d, err := cpuTime(stat)
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return d, nil
}

// commCPU is the CPU time so far of every process whose command name
// (/proc/<pid>/comm) is comm, such as "postgres" (every backend) or
// "redis-server". Processes that end while being read are left out.
func commCPU(comm string) map[int]time.Duration {
	out := map[int]time.Duration{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(b)) != comm {
			continue
		}
		if d, err := procCPU(pid); err == nil {
			out[pid] = d
		}
	}
	return out
}

// cpuDelta is the CPU spent between two commCPU readings. A process seen
// only at the end started in between and counts in full; one seen only at
// the start ended in between and its last share is lost.
func cpuDelta(start, end map[int]time.Duration) time.Duration {
	var d time.Duration
	for pid, e := range end {
		if s, ok := start[pid]; ok && s <= e {
			d += e - s
		} else if !ok {
			d += e
		}
	}
	return d
}

// cpuStat parses the machine's "cpu" line of /proc/stat into idle
// (idle + iowait) and total ticks.
func cpuStat(b []byte) (idle, total uint64, err error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	// guest and guest_nice (fields 9 and 10) are already in user and nice.
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("unexpected /proc/stat line %q", line)
		}
		total += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return idle, total, nil
}

// idlePercent measures how idle the whole machine is over d, from
// /proc/stat: 100 is every core idle.
func idlePercent(ctx context.Context, d time.Duration) (float64, error) {
	from, err := readMachineCPU()
	if err != nil {
		return 0, err
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	to, err := readMachineCPU()
	if err != nil {
		return 0, err
	}
	return from.idleUntil(to)
}

// machineCPU is a reading of the machine's CPU ticks.
type machineCPU struct{ idle, total uint64 }

func readMachineCPU() (machineCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}, fmt.Errorf("read /proc/stat: %w", err)
	}
	idle, total, err := cpuStat(b)
	return machineCPU{idle, total}, err
}

// idleUntil is the idle share, in %, between m and a later reading.
func (m machineCPU) idleUntil(later machineCPU) (float64, error) {
	if later.total <= m.total {
		return 0, errors.New("/proc/stat did not advance")
	}
	return 100 * float64(later.idle-m.idle) / float64(later.total-m.total), nil
}
