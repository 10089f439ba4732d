package main

import (
	"fmt"
	"strconv"
	"strings"
)

// report renders the whole run as Markdown: the machine, the tables, how
// each number was measured and how to reproduce them.
func (b *bench) report() string {
	var s strings.Builder
	m := b.machine
	o := b.opts
	p := func(format string, args ...any) { fmt.Fprintf(&s, format, args...) }

	p("# Benchmarks: slirp, slirp4netns and pasta side by side\n\n")
	p("Written by `make bench` (`go run ./bench`) on %s. Every number comes from one run on one machine; the targets of issue 6 are checked as ratios between the daemons in this same run, never as absolute numbers.\n\n",
		m.date.Format("2006-01-02 15:04 MST"))

	p("## Machine\n\n")
	p("- CPU: %s, %d CPUs (nproc)\n", orUnknown(m.cpu), m.nproc)
	p("- Kernel: %s; OS: %s; memory: %s\n", orUnknown(m.kernel), orUnknown(m.os), orUnknown(m.memory))
	p("- slirp: %s\n", m.versions[ours])
	p("- slirp4netns: %s\n", m.versions[slirp4netns])
	p("- pasta: %s\n", m.versions[pasta])
	p("- %s; %s\n", m.versions["iperf3"], m.versions["go"])
	if m.loopbackGbps > 0 {
		p("- The machine's own limit, iperf3 over the host's loopback (one stream, %v): %.2f Gbit/s\n", o.iperfTime, m.loopbackGbps)
	}
	p("- Load average at start: %s; after the measurements: %s. Other work on the machine lowers absolute numbers; the daemons run interleaved so that it affects the ratios less.\n",
		m.loadStart, orUnknown(m.loadEnd))
	if busy(m.loadStart, m.nproc) || busy(m.loadEnd, m.nproc) {
		p("- **The machine was busy during this run** (1-minute load above half the CPUs): the numbers are noisy; run again on a quiet machine, or with `-rounds 3`.\n")
	}
	p("\n")

	p("## Results\n\n")
	passed, failed, missing := b.res.tally()
	p("%d of %d targets met", passed, passed+failed+missing)
	if failed > 0 || missing > 0 {
		p(" (%d missed, %d not measured)", failed, missing)
	}
	p(". Ratios are slirp ÷ the other daemon; for latency, memory, start-up and CPU lower is better, so a good ratio is below 1. ")
	if o.rounds > 1 {
		p("Each number is the median of %d rounds.", o.rounds)
	}
	p("\n\n")
	for _, mtu := range b.res.mtus() {
		_ = writeTable(&s, b.res, mtu)
		p("\n")
	}
	p("Rows without a target are reported alongside. \"n/a (API missing)\" means the daemon's add_hostfwd request failed; \"n/a (failed)\" means the workload failed (the harness's log says why).\n\n")

	p("## How it was measured\n\n")
	p("Settings: `-time %v -conn-time %v -latency-count %d -settle %v -idle %d -rounds %d -mtu %s`.\n\n",
		o.iperfTime, o.connTime, o.latencyCount, o.settle, o.idleConns, o.rounds, joinInts(o.mtus))
	p("- **Namespace.** For each daemon and MTU the harness, as root, creates a fresh user namespace (root mapped to root) with a network namespace in it, held by `sleep infinity` — what `unshare -Urn` makes and what rootless containers have. All three daemons run as root on the host and join that namespace by the holder's PID, so each takes the path it takes under podman or rootlesskit (join the user namespace, create `tap0`, configure 10.0.2.100/24 with gateway 10.0.2.2).\n")
	p("- **Daemons** (`$PID` is the holder, `$DIR` a scratch directory, `$FWD_PORT` a free host port; the MTU varies per pass):\n\n")
	for _, c := range b.commands {
		p("  ```\n  %s\n  ```\n", c)
	}
	p("\n  slirp takes slirp4netns' command line unchanged. pasta maps the gateway address to the host's loopback by default (no `--no-map-gw`), so in all three `10.0.2.2:PORT` in the guest reaches `127.0.0.1:PORT` on the host; `--runas 0` keeps pasta root like the others (as root it would otherwise switch to nobody before opening the namespaces and fail); automatic port scanning (`-t/-u/-T/-U auto`) is turned off. The binaries are /usr/bin/slirp4netns and /usr/bin/pasta from Debian, and slirp is %s of the tree being measured.\n", oursBuild(o.slirpBinary))
	p("- **Throughput** (iperf3 3.12, `--json`, the receiver's `end.sum_received`): the host runs `iperf3 --server --bind 127.0.0.1`; the guest runs `iperf3 --client 10.0.2.2 --time %d` (guest → host), with `--parallel 4` (4 streams) or `--reverse` (host → guest on a connection the guest opened). For the port forward the guest runs `iperf3 --server --port %d` and the host runs `iperf3 --client 127.0.0.1 --port $FWD_PORT`; slirp and slirp4netns get the forward through their API socket (`{\"execute\":\"add_hostfwd\",\"arguments\":{\"proto\":\"tcp\",\"host_addr\":\"127.0.0.1\",\"host_port\":$FWD_PORT,\"guest_addr\":\"\",\"guest_port\":%d}}`), pasta from `--tcp-ports` at start.\n",
		int(o.iperfTime.Seconds()), guestIperfPort, guestIperfPort)
	p("- **Latency**: `bench peer latency` runs in the guest (nsenter), opens one TCP connection to a 1-byte echo server on the host's 127.0.0.1 through 10.0.2.2, and times %d round trips of one byte each way after %d untimed ones; p50 and p99 by nearest rank.\n",
		o.latencyCount, latencyWarmup)
	p("- **New connections per second**: `bench peer connrate` in the guest connects, sends one byte, reads one byte back and closes, one connection after another for %v, cycling through %d server ports on the host (a single destination would run out of guest source ports to TIME_WAIT).\n",
		o.connTime, echoPorts)
	p("- **Memory**: VmRSS from /proc/PID/status summed over the daemon process and its descendants (slirp keeps a helper process in the namespace for port forwards; slirp4netns' helper exits after handing over the tap; pasta is one process), read %v after the last workload above, with no traffic meanwhile (what the daemon holds sitting idle next to its container: a Go daemon's heap right after a burst is partly garbage not yet collected, and slirp hands freed memory back to the kernel once the network goes quiet); the reading right after the last workload is reported too. **Idle connections**: `bench peer idle` opens %d connections from the guest to the host, each sends one byte and stays open; once the host has received all of them the daemon's RSS is read again; per connection = the growth divided by %d.\n",
		o.settle, o.idleConns, o.idleConns)
	p("- **CPU per GB**: utime + stime from /proc/PID/stat of the daemon's processes, read before and after each iperf3 run, divided by the gigabytes (10⁹ bytes) received.\n")
	p("- **Start to ready**: from just before fork/exec to the daemon saying it is ready. slirp and slirp4netns: the `1` on `--ready-fd` (written after the tap is configured and the API socket listens). pasta: the exit of the launching process, which daemonizes once the tap is up and configured (its PID goes to `--pid`); that exit is what podman waits for.\n\n")

	p("## Reproducing\n\n")
	p("On a Debian 12 machine with Go 1.26, as root, from the source tree:\n\n")
	p("```sh\nmake bench        # installs iperf3, slirp4netns and passt when missing, runs everything, writes docs/benchmarks.md\nmake bench BENCHFLAGS='-only slirp,pasta,g2h -mtu 65520 -time 5s'   # a subset, printed only\nmake bench BENCHFLAGS='-rounds 3 -out docs/benchmarks.md'          # medians of three rounds, written\nmake bench BENCHFLAGS='-perf /tmp/prof -only g2h'                  # plus perf profiles of each daemon\n```\n\n")
	p("`go run ./bench -h` lists the flags. A full run takes about %s.\n", estimate(o))

	if len(b.profiles) > 0 {
		p("\n## Profiles (perf record during one more guest → host run)\n\n")
		p("`perf record --freq 999 --call-graph fp --pid <daemon and its children>` during `iperf3 --client 10.0.2.2`, then `perf report --no-children --sort comm,dso,symbol`; self time, top %d lines. perf itself slows the daemon, so these runs are not in the table.\n\n", profileTop)
		for _, pr := range b.profiles {
			p("### %s, MTU %d (%.2f Gbit/s under perf; full report %s)\n\n```\n%s\n```\n\n", pr.impl, pr.mtu, pr.gbps, pr.report, strings.Join(pr.top, "\n"))
		}
	}
	return s.String()
}

// busy says whether a load average ("1.0 0.5 0.2") has its 1-minute value
// above half the CPUs.
func busy(load string, nproc int) bool {
	f := strings.Fields(load)
	if len(f) == 0 || nproc <= 0 {
		return false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return err == nil && v > float64(nproc)/2
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func joinInts(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ",")
}

// estimate is the rough length of a run with these options: per pass four
// iperf3 runs, the latency and connection-rate runs, and about 10 s of
// set-up, idle connections and tear-down.
func estimate(o options) string {
	perPass := 4*(o.iperfTime.Seconds()+1) + o.connTime.Seconds() + 3 + 10
	total := perPass * float64(len(o.impls)*len(o.mtus)*o.rounds)
	return fmt.Sprintf("%.0f minutes with these settings", total/60)
}

// oursBuild says how the measured slirp binary was built.
func oursBuild(given string) string {
	if given == "" {
		return "`go build ./cmd/slirp`"
	}
	return "`" + given + "` (`make bench` measures bin/slirp as `make build` writes it: linked statically against libc when the C toolchain can, see the Makefile)"
}
