package bench

import (
	"bytes"
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
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read CPU time of pid %d: %w", pid, err)
	}
	s.CPU, err = cpuTime(stat)
	if err != nil {
		return s, fmt.Errorf("pid %d: %w", pid, err)
	}
	return s, nil
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
