package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat is what the harness needs from /proc/PID/stat.
type procStat struct {
	pid          int
	comm         string
	ppid         int
	utime, stime uint64 // clock ticks
}

// parseStat parses one /proc/PID/stat line. The command name is in
// parentheses and may itself contain spaces and parentheses, so the fields
// are counted from the last ')'.
func parseStat(data []byte) (procStat, error) {
	s := string(bytes.TrimSpace(data))
	open := strings.IndexByte(s, '(')
	end := strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, errors.New("parse /proc stat: no command name in parentheses")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(s[:open]))
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc stat: pid: %w", err)
	}
	// After the name: state(3) ppid(4) pgrp session tty tpgid flags minflt
	// cminflt majflt cmajflt utime(14) stime(15) ...
	f := strings.Fields(s[end+1:])
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("parse /proc stat: %d fields after the name, want at least 13", len(f))
	}
	st := procStat{pid: pid, comm: s[open+1 : end]}
	if st.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, fmt.Errorf("parse /proc stat: ppid: %w", err)
	}
	if st.utime, err = strconv.ParseUint(f[11], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("parse /proc stat: utime: %w", err)
	}
	if st.stime, err = strconv.ParseUint(f[12], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("parse /proc stat: stime: %w", err)
	}
	return st, nil
}

// parseVmRSS returns the VmRSS line of /proc/PID/status in bytes.
func parseVmRSS(data []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != "VmRSS" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse VmRSS: unexpected value %q", strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("parse VmRSS %q: not a size", f[0])
		}
		return kb * 1024, nil
	}
	return 0, errors.New("parse VmRSS: no VmRSS line (is it a kernel thread or a zombie?)")
}

// processTree returns pid and all its descendants, read from /proc. Our
// daemon keeps a helper process inside the namespace for its whole life,
// so its cost is counted with the daemon's; slirp4netns' helper exits
// after handing over the tap, and pasta is a single process.
func processTree(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // it exited meanwhile
		}
		st, err := parseStat(data)
		if err != nil {
			continue
		}
		children[st.ppid] = append(children[st.ppid], p)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return nil, fmt.Errorf("daemon process %d: %w", pid, err)
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree, nil
}

// treeRSS is the sum of VmRSS over a process and its descendants, in
// bytes.
func treeRSS(pid int) (int64, error) {
	tree, err := processTree(pid)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, p := range tree {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			if p == pid {
				return 0, fmt.Errorf("read daemon status: %w", err)
			}
			continue
		}
		rss, err := parseVmRSS(data)
		if err != nil {
			if p == pid {
				return 0, err
			}
			continue
		}
		sum += rss
	}
	return sum, nil
}

// treeCPU is the user plus system CPU time used so far by a process and its
// live descendants.
func treeCPU(pid int) (time.Duration, error) {
	tree, err := processTree(pid)
	if err != nil {
		return 0, err
	}
	var ticks uint64
	for _, p := range tree {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			if p == pid {
				return 0, fmt.Errorf("read daemon stat: %w", err)
			}
			continue
		}
		st, err := parseStat(data)
		if err != nil {
			return 0, err
		}
		ticks += st.utime + st.stime
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// tcpListenState is the kernel's TCP_LISTEN in /proc/net/tcp's st column.
const tcpListenState = "0A"

// hasListener says whether a /proc/net/tcp or tcp6 table shows a listening
// socket on port (any local address).
func hasListener(table []byte, port int) bool {
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// sl local_address rem_address st ...
		if len(f) < 4 {
			continue
		}
		if strings.HasSuffix(f[1], want) && f[3] == tcpListenState {
			return true
		}
	}
	return false
}

// listening says whether anything listens on a TCP port in the network
// namespace of process pid (0: this process).
func listening(pid, port int) bool {
	dir := "/proc/self/net"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/net", pid)
	}
	for _, name := range []string{"tcp", "tcp6"} {
		if data, err := os.ReadFile(filepath.Join(dir, name)); err == nil && hasListener(data, port) {
			return true
		}
	}
	return false
}

// waitListening waits, for at most limit, until something listens on
// port in process pid's network namespace.
func waitListening(pid, port int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for !listening(pid, port) {
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on TCP port %d after %v", port, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
