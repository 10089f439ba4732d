package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// machineInfo describes where a run happened, for the report.
type machineInfo struct {
	date      time.Time
	cpu       string
	nproc     int
	kernel    string
	os        string
	memory    string
	versions  map[string]string
	loadStart string
	loadEnd   string
	// loopbackGbps is iperf3 over the host's loopback (0: not measured).
	loopbackGbps float64
}

func describeMachine(ctx context.Context, impls map[string]*implementation) machineInfo {
	m := machineInfo{
		date:      time.Now().UTC(),
		nproc:     runtime.NumCPU(),
		cpu:       firstMatch("/proc/cpuinfo", "model name"),
		memory:    firstMatch("/proc/meminfo", "MemTotal"),
		os:        strings.Trim(firstMatch("/etc/os-release", "PRETTY_NAME"), `"`),
		loadStart: loadAverage(),
		versions:  map[string]string{},
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.kernel = unix.ByteSliceToString(u.Release[:])
	}
	m.versions[ours] = firstLine(ctx, impls[ours].binary, "--version")
	if rev := firstLine(ctx, "git", "describe", "--always", "--dirty"); rev != "unknown" {
		m.versions[ours] += " (source " + rev + ", " + linkage(impls[ours].binary) + ")"
	}
	m.versions[slirp4netns] = firstLine(ctx, impls[slirp4netns].binary, "--version") +
		" (Debian " + firstLine(ctx, "dpkg-query", "-W", "-f=${Version}", "slirp4netns") + ")"
	// pasta of this era prints "pasta unknown version"; the package knows.
	m.versions[pasta] = "passt " + firstLine(ctx, "dpkg-query", "-W", "-f=${Version}", "passt")
	m.versions["iperf3"] = firstLine(ctx, "iperf3", "--version")
	m.versions["go"] = runtime.Version()
	return m
}

// linkage says whether the binary at path loads shared libraries: a
// statically linked daemon maps no dynamic loader and no shared libc, which
// shows in its RSS.
func linkage(path string) string {
	f, err := elf.Open(path)
	if err != nil {
		return "linkage unknown"
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "dynamically linked"
		}
	}
	return "statically linked"
}

// firstMatch returns the value of the first "key: value" or "key=value"
// line of a file, or "".
func firstMatch(path, key string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, key) {
			continue
		}
		rest := strings.TrimSpace(line[len(key):])
		if r, ok := strings.CutPrefix(rest, ":"); ok {
			return strings.TrimSpace(r)
		}
		if r, ok := strings.CutPrefix(rest, "="); ok {
			return strings.TrimSpace(r)
		}
	}
	return ""
}

// firstLine runs a command and returns the first line of its output, or
// "unknown".
func firstLine(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil || line == "" {
		return "unknown"
	}
	return line
}

// loadAverage is the first three fields of /proc/loadavg: other work on
// the machine during a run shows up here.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
