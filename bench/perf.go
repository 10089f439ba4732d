package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// perfAttach is how long perf record gets to attach before the load
// starts; perf has no "attached" signal, and a late attach only loses the
// first samples.
const perfAttach = 500 * time.Millisecond

// profileTop is how many lines of the perf report go into the summary.
const profileTop = 25

// profileSummary is the top of one perf profile.
type profileSummary struct {
	impl string
	mtu  int
	gbps float64
	// report is the full perf report text file.
	report string
	top    []string
}

// profilePass starts the daemon once more on a fresh namespace and records
// a CPU profile of its processes during a guest → host iperf3 run. It is
// separate from the measured passes because perf slows what it watches.
func (b *bench) profilePass(ctx context.Context, im *implementation, mtu int) error {
	if err := os.MkdirAll(b.opts.perfDir, 0o755); err != nil {
		return fmt.Errorf("create the profile directory: %w", err)
	}
	ns, err := newGuestNetns()
	if err != nil {
		return err
	}
	defer ns.close()
	dir, err := os.MkdirTemp("", "slirp-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, port, err := startIperfServer(ctx, nil)
	if err != nil {
		return err
	}
	defer stopProcess(srv)
	fwd, err := freePort()
	if err != nil {
		return err
	}
	d, err := im.start(ctx, im, startRequest{target: strconv.Itoa(ns.pid), mtu: mtu, dir: dir,
		fwdHostPort: strconv.Itoa(fwd), fwdGuestPort: strconv.Itoa(guestIperfPort)})
	if err != nil {
		return err
	}
	defer d.stop()
	tree, err := processTree(d.pid)
	if err != nil {
		return err
	}
	pids := make([]string, len(tree))
	for i, p := range tree {
		pids[i] = strconv.Itoa(p)
	}

	base := filepath.Join(b.opts.perfDir, fmt.Sprintf("perf-%s-mtu%d", im.name, mtu))
	rctx, cancel := context.WithTimeout(ctx, b.opts.iperfTime+time.Minute)
	defer cancel()
	rec := exec.CommandContext(rctx, "perf", "record", "--freq", "999", "--call-graph", "fp",
		"--no-buildid-cache", "--pid", strings.Join(pids, ","), "--output", base+".data")
	var recErr limitedBuffer
	rec.Stdout, rec.Stderr = &recErr, &recErr
	rec.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := rec.Start(); err != nil {
		return fmt.Errorf("start perf record: %w", err)
	}
	time.Sleep(perfAttach)
	r, iperfErr := runIperf(ctx, ns.argv(iperfClientArgs(gateway, port, b.opts.iperfTime, 1, false)...), b.opts.iperfTime)
	_ = rec.Process.Signal(syscall.SIGINT)
	// perf writes its data on SIGINT and then dies of it.
	if err := rec.Wait(); err != nil && !diedOf(rec.ProcessState, syscall.SIGINT) {
		return fmt.Errorf("perf record: %w: %s", err, recErr.String())
	}
	if iperfErr != nil {
		return iperfErr
	}
	// The binaries must still exist here: our daemon's is deleted with the
	// harness's temporary directory. Self time shows where the cycles go;
	// the inclusive report shows which code paths lead there.
	self, err := perfReport(ctx, base+".data", base+".txt", "--no-children", "--percent-limit", "0.5")
	if err != nil {
		return err
	}
	if _, err := perfReport(ctx, base+".data", base+"-children.txt", "--children", "--percent-limit", "2"); err != nil {
		return err
	}
	b.profiles = append(b.profiles, profileSummary{impl: im.name, mtu: mtu, gbps: r.gbps(),
		report: base + ".txt", top: perfTop(self, profileTop)})
	b.log.Info("profile written", "impl", im.name, "mtu", mtu, "report", base+".txt")
	return nil
}

// perfReport runs perf report on data with extra flags, writes the text to
// out and returns it.
func perfReport(ctx context.Context, data, out string, flags ...string) ([]byte, error) {
	args := append([]string{"report", "--input", data, "--stdio", "--sort", "comm,dso,symbol", "-g", "none"}, flags...)
	text, err := exec.CommandContext(ctx, "perf", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("perf %s: %w", strings.Join(args, " "), err)
	}
	if err := os.WriteFile(out, text, 0o644); err != nil {
		return nil, err
	}
	return text, nil
}

// perfTop returns the first n sample lines of a perf report (comments and
// blank lines skipped).
func perfTop(report []byte, n int) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(report))
	for sc.Scan() && len(out) < n {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// perf pads every line to the terminal width and, with -g none,
		// ends it with empty columns shown as "-".
		f := strings.Fields(line)
		for len(f) > 0 && f[len(f)-1] == "-" {
			f = f[:len(f)-1]
		}
		out = append(out, strings.Join(f, " "))
	}
	return out
}

// diedOf says whether a process ended by a signal.
func diedOf(ps *os.ProcessState, sig syscall.Signal) bool {
	if ps == nil {
		return false
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}
